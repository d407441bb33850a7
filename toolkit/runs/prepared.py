"""What a run holds before training (``Prepared``: data checked and split, tokenized, the model loaded), and
the steps of ``pipeline.prepare`` that are not its flow: the task's dataset and model looked up, the data
checks said, the problem type set, the windows and class weights described. tk cv prepares its folds
with the same steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig, origin_of
from toolkit.data.findings import plural
from toolkit.errors import TkError
from toolkit.evaluation import thresholds
from toolkit.evaluation.inference import MULTI_LABEL
from toolkit.records import DatasetInfo, DataSource
from toolkit.training import policy
from toolkit.training.engines import EngineChoice
from toolkit.training.progress import Progress


@dataclass
class Prepared:
    """Everything a run needs before training starts."""

    task: TaskConfig
    dataset: DatasetInfo
    source: DataSource
    engine: EngineChoice
    checks: Any  # the data-check report, on the data as loaded
    splits: Any  # DatasetDict: train / validation / test with text and label ids
    tokenized: Any  # the same splits, tokenized
    tokenizer: Any
    model: Any
    notes: list[str]  # what tk run said before training: on the task's keys, then loading and splitting
    source_fingerprint: dict[str, Any] | None = None  # the data as loaded, before splitting: tk evaluate compares
    class_weights: dict[str, float] | None = None  # each label's loss weight, as metrics.json records it
    model_info: Any = None  # the ModelInfo the model came from: its Hub id, license and language for the card
    scored_as: str = "the test split"  # what the scored rows are, in tk's notes (a cv fold: "the held-out fold")
    spare: Any = None  # training rows train_size left unused (splits.MadeSplits.spare): the temperature's rows


def report_checks(findings, strict: bool, progress: Progress, check_command: str) -> None:
    warnings = [finding for finding in findings if finding.level == "warning"]
    for finding in warnings:
        progress.note(f"Data check: {finding.message}")
    if warnings and strict:
        raise TkError(f"{len(warnings)} data check {plural(len(warnings), 'warning')} and --strict is on. "
                      f"See them with examples: {check_command}")


def registered(pm, task: TaskConfig, where: str | None = None, base: Path | None = None):
    """The task's dataset and model records; an unknown name names the file (or the option that set it), the task
    and the key."""
    try:
        dataset = pm.dataset(task.dataset)
    except TkError as error:
        raise TkError(f"{origin_of(task, 'dataset', where)}, key 'dataset'") from error
    try:
        model = pm.model(task.model, base)
    except TkError as error:
        raise TkError(f"{origin_of(task, 'model', where)}, key 'model'") from error
    return dataset, model


def class_weights(task: TaskConfig, tokenized, label_names) -> dict[str, float] | None:
    """The loss weight of each class, as metrics.json records it; None when training is unweighted."""
    weights = policy.class_weights(task, tokenized["train"]["labels"], label_names)
    return None if weights is None else {name: round(float(w), 6) for name, w in zip(label_names, weights)}


def set_problem(model: Any, task: TaskConfig) -> None:
    """transformers' ``problem_type``: multi-label models score with a sigmoid per label (tk, pipeline) and
    train with BCE; a single-label task on a saved multi-label model goes back to softmax. Thresholds a
    saved model carried are dropped: a multi-label run tunes its own."""
    if task.multi_label:
        model.config.problem_type = MULTI_LABEL
    elif getattr(model.config, "problem_type", None) == MULTI_LABEL:
        model.config.problem_type = None
    thresholds.save_to_config(model.config, (), None)


def window_counts(splits, tokenized) -> dict[str, dict[str, int]]:
    return {name: {"texts": len(splits[name]), "windows": len(tokenized[name])} for name in tokenized}


def describe_windows(task: TaskConfig, splits, tokenized) -> str:
    """long_text = "chunks": how many windows each split became (training time grows with the train windows)."""
    counts = window_counts(splits, tokenized)
    train = counts["train"]
    return (f"Long texts: windows of {task.max_length} tokens sharing {task.window_stride}, pooled by "
            f"{task.pooling}: training sees {train['windows']:,} windows of {train['texts']:,} texts "
            f"({train['windows'] / max(1, train['texts']):.2f}x the rows, and the time, of truncation); "
            + ", ".join(f"{name} {c['windows']:,} windows of {c['texts']:,} texts"
                        for name, c in counts.items() if name != "train")
            + ". In the epoch table, train loss is per window and val loss per text (its windows pooled).")
