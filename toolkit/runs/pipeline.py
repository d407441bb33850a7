"""`tk run`: load → map labels → split → check → tokenize → train → evaluate → save."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.runs import artifacts
from toolkit.training import distributed
from toolkit.data.checks import check_splits
from toolkit.config import TaskConfig
from toolkit.data.loading import load_labelled
from toolkit.training.device import start_gpu_warm_up, use_bf16
from toolkit.evaluation.diagnosis import diagnose_overfitting, explain
from toolkit.errors import TkError
from toolkit.evaluation.inference import predict_probabilities
from toolkit.training.interrupt import RunInterrupted, graceful_interrupts
from toolkit.models import model_limit
from toolkit.training.progress import Progress
from toolkit.records import DatasetInfo, DataSource
from toolkit.runs.model_card import write_model_card
from toolkit.runs.report_page import write_report
from toolkit.runs.folders import new_run_dir, read_json, set_status, write_json
from toolkit.evaluation.scoring import score
from toolkit.data.sources import resolve_source
from toolkit.data.splits import make_splits
from toolkit.data.tokens import tokenize_splits


@dataclass
class RunOutcome:
    run_dir: Path
    status: str  # "complete" or "interrupted"
    metrics: dict[str, Any]


@dataclass
class Prepared:
    """Everything a run needs before training starts."""

    task: TaskConfig
    dataset: DatasetInfo
    source: DataSource
    splits: Any  # DatasetDict: train / validation / test with text and label ids
    tokenized: Any  # the same splits, tokenized
    tokenizer: Any
    model: Any
    notes: list[str]


def report_checks(report, strict: bool, progress: Progress) -> None:
    for finding in report.warnings:
        progress.note(f"Data check: {finding.message}")
    if report.warnings and strict:
        raise TkError(f"{len(report.warnings)} data check warnings and --strict is on. "
                      f"See them with examples: tk check {report.dataset}")


def registered(pm, task: TaskConfig, where: str | None = None):
    """The task's dataset and model records; an unknown name names the file, the task and the key."""
    where = where or f"task '{task.name}'"
    try:
        dataset = pm.dataset(task.dataset)
    except TkError as error:
        raise TkError(f"{where}, key 'dataset': {error}") from None
    try:
        model = pm.model(task.model)
    except TkError as error:
        raise TkError(f"{where}, key 'model': {error}") from None
    return dataset, model


def prepare(pm, task: TaskConfig, data: str | None, base: Path | None, progress: Progress,
            strict: bool = False, where: str | None = None) -> Prepared:
    from transformers import set_seed

    dataset, model_info = registered(pm, task, where)
    start_gpu_warm_up()
    source = resolve_source(dataset.name, data, task.data, base)
    progress.note(f"Data: {dataset.name} from {source.describe()}")
    notes: list[str] = []
    splits = make_splits(load_labelled(pm, dataset, source, notes), task, notes)
    report_checks(check_splits(splits, dataset.name, dataset.labels), strict, progress)
    for note in notes:
        progress.note(note)
    progress.note("Rows: " + ", ".join(f"{name} {len(split)}" for name, split in splits.items()))
    tokenizer = pm.hook.tk_load_tokenizer(model=model_info)
    set_seed(task.seed)  # the new classification head starts the same every time
    model = pm.hook.tk_load_model(model=model_info, labels=dataset.labels)
    limit = model_limit(tokenizer, model.config)
    if task.max_length > limit:
        raise TkError(f"task '{task.name}': max_length = {task.max_length} is above the {limit} tokens "
                      f"model '{model_info.name}' can take. Use --set max_length={limit} or less.")
    tokenized = tokenize_splits(splits, tokenizer, task.max_length, task.truncation)
    return Prepared(task, dataset, source, splits, tokenized, tokenizer, model, notes)


def run_task(pm, task: TaskConfig, *, data: str | None = None, output: Path = Path("runs"),
             base: Path | None = None, progress: Progress | None = None,
             resume_dir: Path | None = None, strict: bool = False, where: str | None = None) -> RunOutcome:
    progress = progress or Progress()
    if not distributed.is_main():
        progress = Progress(echo=lambda text: None, bar=False)  # one process speaks for a data-parallel run
    prepared = prepare(pm, task, data, base, progress, strict, where)
    run_dir = resume_dir or distributed.shared(lambda: new_run_dir(output, task.name))
    if distributed.is_main():
        if resume_dir is None:
            write_json(run_dir / "config.json", {"task": task.describe(), "data": data, "base": str(base or "")})
        set_status(run_dir, "running")
        progress.note(f"Run folder: {run_dir}")
    try:
        return train_and_evaluate(pm, prepared, run_dir, progress, resume=resume_dir is not None)
    except BaseException as error:
        if distributed.is_main():
            mark_failed(run_dir, error)
        raise


def mark_failed(run_dir: Path, error: BaseException) -> None:
    """Best effort: on a full disk even status.json may not fit, and the first error is the one to report."""
    try:
        set_status(run_dir, "failed", error=str(error) or type(error).__name__)
    except (TkError, OSError):
        pass


def train_and_evaluate(pm, prepared: Prepared, run_dir: Path, progress: Progress, resume: bool) -> RunOutcome:
    task, dataset = prepared.task, prepared.dataset

    def per_epoch_scores(labels, probabilities):
        return score(pm, labels, probabilities, dataset.labels)

    try:
        with graceful_interrupts(progress.note):
            result = pm.hook.tk_train(model=prepared.model, tokenizer=prepared.tokenizer, splits=prepared.tokenized,
                                      task=task, run_dir=run_dir, progress=progress,
                                      compute_metrics=per_epoch_scores, resume=resume)
    except (RunInterrupted, KeyboardInterrupt):
        set_status(run_dir, "interrupted")
        progress.note(f"Interrupted. The last finished epoch is saved; resume with:\n  tk run --resume {run_dir}")
        return RunOutcome(run_dir, "interrupted", {})
    if result is None:
        raise TkError("No training plugin answered tk_train. Is the built-in 'trainer' plugin disabled?")
    if not distributed.is_main():
        return RunOutcome(run_dir, "complete", {})  # metrics are computed once, on the main process

    started = time.perf_counter()
    test = prepared.tokenized["test"]
    probabilities = predict_probabilities(result.model, test, task.eval_batch_size, use_bf16(task.bf16))
    labels = np.asarray(test["labels"])
    texts = prepared.splits["test"]["text"]
    metrics = score(pm, labels, probabilities, dataset.labels, confidence=True)
    diagnosis = diagnose_overfitting(result.history)
    metrics.update({
        "task": task.name,
        "split": "test",
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - started, 2),
        "history": [r.as_dict() for r in result.history],
        "diagnosis": diagnosis,
        "worst_mistakes": artifacts.worst_mistakes(texts, labels, probabilities, dataset.labels),
    })
    save_outcome(run_dir, prepared, result, metrics, texts, labels, probabilities)
    for line in explain(diagnosis, result.best_epoch):
        progress.note(line)
    return RunOutcome(run_dir, "complete", metrics)


def save_outcome(run_dir: Path, prepared: Prepared, result, metrics, texts, labels, probabilities) -> None:
    """Write every file, then mark the run complete: a crash in between leaves it marked failed."""
    task, label_names = prepared.task, prepared.dataset.labels
    artifacts.save_model(result.model, prepared.tokenizer, run_dir)
    write_json(run_dir / "history.json", metrics["history"])
    artifacts.write_predictions(run_dir / "predictions.csv", texts, labels, probabilities, label_names)
    artifacts.plot_losses(run_dir / "loss.png", result.history, result.best_epoch, task.name)
    write_json(run_dir / "manifest.json", {
        "task": task.describe(),
        "labels": list(label_names),
        "data_source": prepared.source.describe(),
        "model_source": getattr(result.model, "name_or_path", None),  # a Hub id or a local folder
        "dataset_hub_id": prepared.dataset.hub_id if prepared.source.path is None else None,
        "data_fingerprint": artifacts.fingerprint(prepared.splits),
        "seed": task.seed,
        "notes": prepared.notes,
        "training": result.extra,
        "versions": artifacts.versions(),
    })
    write_json(run_dir / "metrics.json", metrics)
    write_model_card(run_dir)
    write_report(run_dir)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    set_status(run_dir, "complete")


def resume_task(pm, run_dir: Path, progress: Progress | None = None) -> RunOutcome:
    """Finish an interrupted run from its last epoch checkpoint, with its saved config."""
    from toolkit.runs.saved import task_of

    saved = read_json(run_dir / "config.json")
    task = task_of(run_dir)
    if not any((run_dir / "checkpoints").glob("checkpoint-*")):
        raise TkError(f"{run_dir} has no epoch checkpoint to resume from (it stopped before the first epoch "
                      f"ended). Start it again: tk run {task.name}")
    return run_task(pm, task, data=saved.get("data"), base=Path(saved["base"]) if saved.get("base") else None,
                    progress=progress, resume_dir=run_dir)
