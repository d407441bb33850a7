"""Everything `tk run` does before training: the task's dataset and model looked up, the data loaded,
checked and split, the tokenizer and model loaded, the texts tokenized (or cut into windows), the
class weights said; collected in one ``Prepared``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig
from toolkit.data.checks import check_splits, class_checks
from toolkit.data.findings import plural
from toolkit.data.loading import load_with_labels
from toolkit.data.sources import resolve_source
from toolkit.data.splits import make_splits
from toolkit.data.tokens import tokenize_splits, window_stride
from toolkit.errors import TkError
from toolkit.evaluation import thresholds
from toolkit.evaluation.inference import MULTI_LABEL
from toolkit.evaluation.scoring import positive_class, require_metrics
from toolkit.models import model_limit
from toolkit.records import DatasetInfo, DataSource
from toolkit.runs import artifacts, tracking
from toolkit.training import policy
from toolkit.training.device import start_gpu_warm_up
from toolkit.training.engines import EngineChoice, resolve_engine
from toolkit.training.progress import Progress, quiet_library_progress


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


def report_checks(findings, strict: bool, progress: Progress, check_command: str) -> None:
    warnings = [finding for finding in findings if finding.level == "warning"]
    for finding in warnings:
        progress.note(f"Data check: {finding.message}")
    if warnings and strict:
        raise TkError(f"{len(warnings)} data check {plural(len(warnings), 'warning')} and --strict is on. "
                      f"See them with examples: {check_command}")


def registered(pm, task: TaskConfig, where: str | None = None, base: Path | None = None):
    """The task's dataset and model records; an unknown name names the file, the task and the key."""
    where = where or f"task '{task.name}'"
    try:
        dataset = pm.dataset(task.dataset)
    except TkError as error:
        raise TkError(f"{where}, key 'dataset'") from error
    try:
        model = pm.model(task.model, base)
    except TkError as error:
        raise TkError(f"{where}, key 'model'") from error
    return dataset, model


def prepare(pm, task: TaskConfig, data: str | None, base: Path | None, progress: Progress,
            strict: bool = False, where: str | None = None, recorded_engine: str | None = None) -> Prepared:
    from transformers import set_seed

    quiet_library_progress()
    dataset, model_info = registered(pm, task, where, base)
    engine = resolve_engine(pm, task, recorded_engine)
    progress.note(engine.describe())
    if dataset.labels:  # else they come from the data: checked once loaded
        positive_class(task, dataset.labels, where)  # a wrong positive_label stops the run before any work
    require_metrics(pm)  # before any work
    tracking.require(task, where)  # report_to's libraries, before any work
    start_gpu_warm_up()
    # The tokenizer before the data: a max_length or stride it cannot take stops the run before any loading.
    tokenizer = pm.first("tk_load_tokenizer", f"model '{model_info.name}'", model_info.plugin, model=model_info)
    warnings: list[str] = []
    stride = window_stride(task, tokenizer, model_info.name, warnings)
    for warning in warnings:
        progress.note(warning)
    source = resolve_source(dataset.name, data, task.data, base)
    progress.note(f"Data: {dataset.name} from {source.describe()}")
    notes: list[str] = []
    dataset, labelled = load_with_labels(pm, dataset, source, notes, task)
    positive_class(task, dataset.labels, where)
    # Before splitting, where leakage is still there to see; rare or absent classes after, split by split.
    check_command = (f"tk check --data {data}" if where and where.startswith("--data") else
                     f"tk check {task.name}" + (f" --data {data}" if data else ""))
    checks = check_splits(labelled, dataset.name, dataset.labels, classes=False)
    report_checks(checks.findings, strict, progress, check_command)
    advice: list[str] = []  # printed, not recorded: the model card states facts about the model
    splits = make_splits(labelled, task, notes, checks.left_out, advice)  # the rows left out: left_out.json
    for note in notes + advice:
        progress.note(note)
    progress.note("Rows: " + ", ".join(f"{name} {len(split):,}" for name, split in splits.items()))
    presence = class_checks(splits, dataset.labels)
    checks.findings += presence
    checks.split_rows = {name: len(split) for name, split in splits.items()}
    report_checks(presence, strict, progress, check_command)
    set_seed(task.seed)  # the new classification head starts the same every time
    model = pm.first("tk_load_model", f"model '{model_info.name}'", model_info.plugin, model=model_info,
                     labels=dataset.labels)
    set_problem(model, task)
    limit = model_limit(tokenizer, model.config)
    if task.max_length > limit:
        raise TkError(f"task '{task.name}': max_length = {task.max_length} is above the {limit} tokens "
                      f"model '{model_info.name}' can take. Use --set max_length={limit} or less.")
    tokenized = tokenize_splits(splits, tokenizer, task.max_length, task.truncation, stride)
    if task.multi_label:
        progress.note("Multi-label: a sigmoid per label; each epoch's accuracy is subset accuracy and its f1 micro "
                      "F1, at threshold 0.5. Each label's threshold is tuned on the validation split after training.")
    if stride is not None:
        progress.note(describe_windows(task, splits, tokenized))
    weights = class_weights(task, tokenized, dataset.labels)
    if weights:
        progress.note(f"Class weights ({task.class_weights if isinstance(task.class_weights, str) else 'given'}), "
                      "the loss weight of each row of a class: " + ", ".join(f"{n} {w:.3g}" for n, w in weights.items()))
    raw_weights = policy.class_weights(task, tokenized["train"]["labels"], dataset.labels)  # unrounded
    for warning in policy.range_warnings(task, raw_weights):
        progress.note(f"Warning: {warning}")
    return Prepared(task, dataset, source, engine, checks, splits, tokenized, tokenizer, model, warnings + notes,
                    artifacts.fingerprint(labelled) if source.path else None, weights, model_info)


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
                        for name, c in counts.items() if name != "train"))
