"""Training, then everything after it: the engine called, then calibration, thresholds, the test
predictions and metrics, the diagnoses and the linear baseline, and every file of the run folder,
written before the run is marked complete."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.rows import column, row_numbers
from toolkit.evaluation import classical
from toolkit.evaluation.baseline import majority_class, majority_labels
from toolkit.evaluation.diagnosis import diagnose_overfitting, diagnose_underfitting, explain, explain_underfitting
from toolkit.evaluation.inference import predict_probabilities
from toolkit.evaluation.pooling import documents_of, pool_rows
from toolkit.evaluation.scoring import positive_class, score
from toolkit.runs import artifacts, calibrate, tracking
from toolkit.runs import resume as resuming
from toolkit.runs.folders import set_status
from toolkit.runs.loader import record_checksums
from toolkit.runs.model_card import write_model_card
from toolkit.runs.prepare import Prepared, window_counts
from toolkit.runs.report_page import write_report
from toolkit.runs.validation import tune_on_validation, validation_prior
from toolkit.saving import write_json
from toolkit.training import distributed, policy
from toolkit.training.device import use_bf16
from toolkit.training.interrupt import safe_points
from toolkit.training.progress import Progress


@dataclass
class RunOutcome:
    run_dir: Path | None  # None: interrupted before the run folder was made
    status: str  # "complete" or "interrupted"
    metrics: dict[str, Any]


def train_and_evaluate(pm, prepared: Prepared, run_dir: Path, progress: Progress, resume: bool,
                       tracker: tracking.Tracker | None = None, trial: Any = None) -> RunOutcome:
    tracker = tracker or tracking.Tracker([])
    task, dataset = prepared.task, prepared.dataset
    positive = positive_class(task, dataset.labels)

    def per_epoch_scores(labels, probabilities):
        return score(pm, labels, probabilities, dataset.labels, positive_label=positive)

    with safe_points():
        engine = prepared.engine.engine
        result = pm.first("tk_train", f"the engine '{engine.name}'", engine.plugin, model=prepared.model,
                          tokenizer=prepared.tokenizer, splits=prepared.tokenized, task=task, run_dir=run_dir,
                          progress=trial.watch(tracker.watch(progress)) if trial else tracker.watch(progress),
                          compute_metrics=per_epoch_scores, resume=resume, engine=engine.name)
    distributed.leave()  # training was the last collective work: the test metrics are the main process's alone
    if not distributed.is_main():
        return RunOutcome(run_dir, "complete", {})
    if trial is not None:  # a search's trial: the test split is scored once, at the end of the search
        tracker.end("FINISHED")
        return trial.finish(run_dir, result)

    started = time.perf_counter()
    fitted = calibrate.fit(result.model, prepared, progress)  # before the thresholds: they are tuned on its scale
    tuned, untuned, not_tuned = (tune_on_validation(result.model, prepared, progress, fitted.validation)
                                 if task.multi_label else (None, [], None))
    test = prepared.tokenized["test"]
    progress.count(len(test), "window" if task.reads_in_windows else "text")
    try:
        probabilities = predict_probabilities(result.model, test, task.eval_batch_size, use_bf16(task.bf16),
                                              on_batch=progress.advance)
    finally:
        progress.close()
    labels, probabilities = pool_rows(column(test, "labels"), probabilities, documents_of(test), task.pooling)  # per text
    texts = column(prepared.splits["test"], "text")
    train_labels = np.asarray(column(prepared.splits["train"], "label"))
    metrics = score(pm, labels, probabilities, dataset.labels, confidence=True, positive_label=positive,
                    baseline_label=majority_labels(train_labels) if task.multi_label else majority_class(train_labels),
                    thresholds=tuned)
    diagnosis = diagnose_overfitting(result.history, task.train_size)
    metrics["calibration"] = calibrate.on_test(fitted, labels, probabilities, task, progress)
    metrics.update({
        "task": task.name,
        "split": "test",
        "problem": task.problem,
        "select_metric": task.select_metric,
        "select_on": task.select_on,
        "class_weights": prepared.class_weights,
        **({"thresholds_tuned_on": "test" if task.select_on == "test" else "validation",
            "thresholds_untuned": untuned, "thresholds_not_tuned": not_tuned} if task.multi_label else {}),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - started, 2),
        "history": [{k: v for k, v in r.as_dict().items() if k != "step_losses"} for r in result.history],
        "step_loss": policy.step_curve(result.history),
        "long_text": {"mode": task.long_text, **({"stride": task.window_stride, "pooling": task.pooling,
                                                  "splits": window_counts(prepared.splits, prepared.tokenized)}
                                                 if task.reads_in_windows else {})},
        "diagnosis": diagnosis,
        "worst_mistakes": artifacts.worst_mistakes(texts, labels, probabilities, dataset.labels, thresholds=tuned,
                                                   rows=row_numbers(prepared.splits["test"])),
        **resuming.reproducibility(run_dir),
    })
    metrics["underfitting"] = underfitting(prepared, result, labels, probabilities)
    if task.linear_baseline:
        add_linear_baseline(pm, prepared, metrics, labels, probabilities, tuned, positive, progress)
    save_outcome(run_dir, prepared, result, metrics, texts, labels, probabilities, tuned)
    tracker.finish(metrics, sum(record.steps for record in result.history), run_dir)
    for line in explain(diagnosis, result.best_epoch) + explain_underfitting(metrics["underfitting"]):
        progress.note(line)
    return RunOutcome(run_dir, "complete", metrics)


def underfitting(prepared: Prepared, result, labels, probabilities) -> dict[str, Any]:
    """metrics.json's ``underfitting``: the diagnosis, from the history, the prior and the test predictions."""
    task = prepared.task
    labels = np.asarray(labels)
    predicted = present = None
    if labels.ndim == 1:
        predicted = len(np.unique(np.asarray(probabilities).argmax(axis=1)))
        present = len(np.unique(labels))
    cut = None
    if not task.reads_in_windows:
        lengths = [len(ids) for ids in column(prepared.tokenized["train"], "input_ids")]
        cut = sum(length >= task.max_length for length in lengths) / max(1, len(lengths))
    settings = {"epochs": task.epochs, "learning_rate": task.learning_rate, "max_length": task.max_length,
                "epochs_run": len(result.history), "unit": "label" if task.multi_label else "class"}
    return diagnose_underfitting(result.history, validation_prior(prepared), predicted, present, settings, cut)


def add_linear_baseline(pm, prepared: Prepared, metrics: dict[str, Any], labels, probabilities, tuned,
                        positive: int | None, progress: Progress) -> None:
    """metrics.json's ``linear_baseline``; when it is as good as the fine-tune or better, a warning says so."""
    task, names = prepared.task, prepared.dataset.labels

    def score_linear(found, cut):
        return score(pm, labels, found, names, confidence=True, positive_label=positive, thresholds=cut)

    found = classical.against_fine_tune(score_linear, prepared.splits, labels, probabilities, tuned, names, positive,
                                        metrics, task.select_metric, progress.note)
    if found is None:
        return
    metrics["linear_baseline"] = found
    if not (found["versus"]["real"] and found["versus"]["differences"][found["versus"]["metric"]]["difference"] > 0):
        metrics["warnings"] = [*metrics.get("warnings", []), found["verdict"]]


def save_outcome(run_dir: Path, prepared: Prepared, result, metrics, texts, labels, probabilities,
                 tuned: np.ndarray | None = None) -> None:
    """Write every file, then mark the run complete: a crash in between leaves it marked failed."""
    task, label_names = prepared.task, prepared.dataset.labels
    artifacts.save_model(result.model, prepared.tokenizer, run_dir, task.max_length, task.truncation)
    write_json(run_dir / "history.json", [r.as_dict() for r in result.history])
    artifacts.write_predictions(run_dir / "predictions.csv", texts, labels, probabilities, label_names, tuned,
                                rows=row_numbers(prepared.splits["test"]))
    artifacts.plot_losses(run_dir / "loss.png", result.history, result.best_epoch, task.name)
    write_json(run_dir / "manifest.json", {
        "task": task.describe(),
        "labels": list(label_names),
        "data_source": prepared.source.describe(),
        "data_path": str(prepared.source.path.resolve()) if prepared.source.path else None,
        "source_fingerprint": prepared.source_fingerprint,
        "model_source": getattr(result.model, "name_or_path", None),  # a Hub id or a local folder
        "base_model": base_model(prepared.model_info),
        "dataset_hub_id": prepared.dataset.hub_id if prepared.source.path is None else None,
        "data_fingerprint": artifacts.fingerprint(prepared.splits),
        "seed": task.seed,
        "notes": prepared.notes,
        "data_checks": prepared.checks.as_dict(),
        "engine": prepared.engine.name,
        "training": result.extra,
        **resuming.reproducibility(run_dir),
        "versions": artifacts.versions(),
    })
    write_json(run_dir / "metrics.json", metrics)
    write_model_card(run_dir)
    write_report(run_dir, writing=True)
    record_checksums(run_dir)  # last: tk predict, evaluate, compare and report check every file against them
    set_status(run_dir, "complete")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # after: a kill in between leaves a complete run


def base_model(info) -> dict[str, Any] | None:
    """What the model card says of the pretrained model: its tk name, Hub id, license and language."""
    if info is None:
        return None
    return {"name": info.name, "hub_id": info.hub_id, "license": info.license, "language": info.language}
