"""Long documents: a truncating run against a chunks run on the same test texts, and the chunks run's poolings.

    TK_DATA_DIR=../shared/data python benchmarks/long_documents.py --truncate RUN --chunks RUN [--rows N]

Both runs must be of the same dataset (the measurement in docs/long-documents.md
is imdb-minilm with tk's defaults, and with ``--set long_text=chunks``). Each
run scores the whole test split (or a seeded sample of N texts) as
``tk evaluate`` would, timed with tokenizing. The chunks run's windows are
scored once and pooled each way tk can (``mean``, ``max``, ``logits``).
Accuracies have Wilson intervals; differences between two
answers on the same texts get the exact McNemar test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def test_texts(run_dir: Path, rows: int | None):
    from toolkit.data.loading import load_named
    from toolkit.plugins import PluginManager
    from toolkit.runs.saved import task_of

    pm = PluginManager().load()
    data = load_named(pm, task_of(run_dir, pm).dataset, base=REPO)
    test = data.split("test")
    if rows is not None and rows < len(test):
        test = test.shuffle(seed=0).select(range(rows))
    return list(test["text"]), [data.dataset.labels[i] for i in test["label"]]


def score_truncating(run_dir: Path, texts: list[str], names: list[str]) -> dict:
    from toolkit.runs.saved import load_run

    saved = load_run(run_dir)
    started = time.perf_counter()
    probabilities = saved.probabilities(texts)
    seconds = time.perf_counter() - started
    truth = np.array([saved.labels.index(name) for name in names])
    return {"truncate": probabilities.argmax(axis=1) == truth, "seconds": seconds, "rows_scored": len(texts)}


def score_chunks(run_dir: Path, texts: list[str], names: list[str]) -> dict:
    from toolkit.data.tokens import encode_windows
    from toolkit.evaluation.inference import predict_probabilities
    from toolkit.evaluation.pooling import POOLINGS, pool
    from toolkit.runs.saved import load_run
    from toolkit.training.device import use_bf16

    saved = load_run(run_dir)
    task = saved.task
    if not task.reads_in_windows:
        sys.exit(f"{run_dir} is not a long_text = 'chunks' run")
    started = time.perf_counter()
    encoded = encode_windows(saved.tokenizer, texts, task.max_length, task.window_stride)
    windows = predict_probabilities(saved.model, encoded, task.eval_batch_size, use_bf16(task.bf16))
    seconds = time.perf_counter() - started
    documents = np.asarray(encoded["document"])
    truth = np.array([saved.labels.index(name) for name in names])
    pooled = {f"chunks, {method}": pool(windows, documents, method) for method in POOLINGS}
    return {**{name: p.argmax(axis=1) == truth for name, p in pooled.items()}, "seconds": seconds,
            "rows_scored": len(documents)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truncate", type=Path, required=True, help="a long_text = 'truncate' run")
    parser.add_argument("--chunks", type=Path, required=True, help="a long_text = 'chunks' run, same dataset")
    parser.add_argument("--rows", type=int, help="a seeded sample of the test split (default: all of it)")
    parser.add_argument("--output", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()

    from toolkit.cli.group import quiet_libraries

    quiet_libraries()
    from toolkit.evaluation.intervals import mcnemar_exact, wilson
    from toolkit.evaluation.pooling import POOLINGS

    texts, names = test_texts(args.chunks, args.rows)
    results = {"truncate": score_truncating(args.truncate, texts, names),
               "chunks": score_chunks(args.chunks, texts, names)}
    trained = {side: json.loads((run / "metrics.json").read_text())["train_seconds"]
               for side, run in (("truncate", args.truncate), ("chunks", args.chunks))}
    baseline = results["truncate"]["truncate"]
    rows = []
    print(f"{len(texts):,} test texts")
    print(f"{'answer':<24} {'accuracy':>8} {'95% interval':>17} {'vs truncate':>12}   {'train s':>8} "
          f"{'scoring s':>9} {'rows/s':>7}")
    for side, result in results.items():
        for answer in [key for key in result if key not in ("seconds", "rows_scored")]:
            correct = result[answer]
            interval = wilson(int(correct.sum()), len(correct))
            p = None if answer == "truncate" else mcnemar_exact(correct, baseline)
            rows.append({"answer": answer, "accuracy": float(correct.mean()), "interval": [interval.low, interval.high],
                         "mcnemar_p_vs_truncate": p, "train_seconds": trained[side],
                         "scoring_seconds": result["seconds"], "rows_scored": result["rows_scored"]})
            print(f"{answer:<24} {correct.mean():>8.4f} [{interval.low:.4f}, {interval.high:.4f}] "
                  f"{'' if p is None else f'p = {p:.2g}':>12}   {trained[side]:>8.0f} {result['seconds']:>9.0f} "
                  f"{result['rows_scored'] / result['seconds']:>7.0f}")
    mean = results["chunks"]["chunks, mean"]
    for answer in [f"chunks, {method}" for method in POOLINGS if method != "mean"]:
        print(f"{answer} vs chunks, mean: McNemar p = {mcnemar_exact(results['chunks'][answer], mean):.2g}")
    if args.output:
        args.output.write_text(json.dumps({"texts": len(texts), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
