"""`tk run`: load → map labels → split → check → tokenize → train → evaluate → save."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import TaskConfig
from toolkit.data.checks import check_splits, class_checks
from toolkit.data.findings import plural
from toolkit.data.loading import load_with_labels
from toolkit.data.rows import column, row_numbers
from toolkit.data.sources import resolve_source
from toolkit.data.splits import make_splits
from toolkit.data.tokens import tokenize_splits, window_stride
from toolkit.errors import TkError
from toolkit.evaluation import classical, thresholds
from toolkit.evaluation.baseline import majority_class, majority_labels
from toolkit.evaluation.diagnosis import diagnose_overfitting, explain, explain_underfitting
from toolkit.evaluation.inference import MULTI_LABEL, predict_probabilities
from toolkit.evaluation.pooling import documents_of, pool_rows
from toolkit.evaluation.scoring import positive_class, require_metrics, score
from toolkit.models import model_limit
from toolkit.records import DatasetInfo, DataSource
from toolkit.runs import artifacts, calibrate, liveness, tracking
from toolkit.runs import resume as resuming
from toolkit.runs.folders import check_task_name, new_run_dir, run_status, set_status
from toolkit.runs.loader import record_checksums
from toolkit.runs.model_card import write_model_card
from toolkit.runs.report_page import write_report
from toolkit.saving import FULL, SAVING, os_error_in, saving_error, write_json
from toolkit.training import checkpoints, distributed, policy
from toolkit.training.device import start_gpu_warm_up, use_bf16
from toolkit.training.engines import EngineChoice, resolve_engine
from toolkit.training.interrupt import EndedEarly, RunInterrupted, graceful_interrupts, safe_points
from toolkit.training.progress import Progress, quiet_library_progress


@dataclass
class RunOutcome:
    run_dir: Path | None  # None: interrupted before the run folder was made
    status: str  # "complete" or "interrupted"
    metrics: dict[str, Any]


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


def validation_scores(model: Any, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of the validation split, per text (windows pooled)."""
    task, validation = prepared.task, prepared.tokenized["validation"]
    probabilities = predict_probabilities(model, validation, task.eval_batch_size, use_bf16(task.bf16))
    return pool_rows(column(validation, "labels"), probabilities, documents_of(validation), task.pooling)


def tune_on_validation(model: Any, prepared: Prepared, progress: Progress,
                       scored: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> tuple[np.ndarray, list[str], str | None]:
    """Multi-label: each label's threshold tuned on the validation split (per text; ``scored``: its labels and
    probabilities, already predicted), saved in the model's config; returns them, the labels left at 0.5, and
    why none was tuned (None when they were).

    A model whose validation loss is not clearly below the base rates' keeps 0.5 everywhere: tuned on
    probabilities that carry no signal, each label's best-F1 cut-off falls near its base rate and tags
    nearly every text with nearly every label."""
    from toolkit.evaluation.diagnosis import PRIOR_MARGIN, beats_prior

    names = prepared.dataset.labels
    labels, probabilities = scored if scored is not None else validation_scores(model, prepared)
    loss, prior = policy.validation_loss(labels, probabilities), validation_prior(prepared)
    if not beats_prior(loss, prior):
        kept = np.full(len(names), thresholds.DEFAULT_THRESHOLD)
        thresholds.save_to_config(model.config, names, kept)
        why = (f"the model's validation loss {loss:.4f} is not clearly below the {prior:.4f} of predicting each "
               f"label's base rate (less than {PRIOR_MARGIN:.0%} lower): it has learned too little for tuned "
               "thresholds to mean anything, and tuning would put near-base-rate cut-offs that tag most texts with "
               "most labels")
        progress.note(f"Thresholds kept at {thresholds.DEFAULT_THRESHOLD} for every label: {why}.")
        return kept, list(names), why
    found, untuned = thresholds.tune_thresholds(labels, probabilities)
    thresholds.save_to_config(model.config, names, found)
    progress.note(thresholds.describe(found, untuned, names))
    return found, [names[j] for j in untuned], None


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


def run_task(pm, task: TaskConfig, *, data: str | None = None, output: Path = Path("runs"),
             base: Path | None = None, progress: Progress | None = None,
             resume_dir: Path | None = None, strict: bool = False, where: str | None = None,
             recorded_engine: str | None = None, inexact: bool = False, trial: Any = None) -> RunOutcome:
    """A run from start to end; a Ctrl-C or SIGTERM anywhere in it ends it as 'interrupted'.

    ``trial``: a tk tune trial (``toolkit.runs.tune_trial.TrialRun``): it watches each epoch and may end the
    run early (pruned), and it ends the run after training, scored on the validation split alone."""
    progress = progress or Progress()
    check_task_name(task.name)  # before any work: the name becomes the run folder's
    if not distributed.is_main():
        progress = Progress(echo=lambda text: None, bar=False)  # one process speaks for a data-parallel run
    main = distributed.is_main()
    run_dir, started = resume_dir, False
    tracker = tracking.Tracker([])  # report_to's trackers, once the run folder exists
    with graceful_interrupts(progress.note):
        try:
            if resume_dir is not None and main:
                liveness.acquire(resume_dir)  # before any work: a live run is refused
            prepared = prepare(pm, task, data, base, progress, strict, where, recorded_engine)
            fingerprint = artifacts.fingerprint(prepared.splits)
            if resume_dir is not None:
                missing = resuming.begin(resume_dir, prepared, fingerprint, inexact, progress.note)
            else:
                run_dir = distributed.shared(lambda: new_run_dir(output, task.name))
                if main:
                    liveness.acquire(run_dir)
                    write_json(run_dir / "config.json", {
                        "task": task.describe(), "engine": prepared.engine.name,
                        "data": str(prepared.source.path.resolve()) if prepared.source.path else None,
                        "data_as_given": data, "data_source": prepared.source.describe(),
                        "data_fingerprint": fingerprint, "base": str(base or ""),
                        "start_again": start_again(task, data, where),
                        "notes": prepared.notes})  # e.g. a stride this task does not use
                    write_json(run_dir / "left_out.json", prepared.checks.left_out)
            started = True
            if main:
                if resume_dir is not None:
                    resuming.record_inexact(run_dir, missing)
                set_status(run_dir, "running")
                progress.note(f"Run folder: {run_dir}")
                if prepared.checks.left_out:
                    progress.note(f"Every row left out of {' and '.join(prepared.checks.left_out)}: "
                                  f"{run_dir / 'left_out.json'}")
                tracker = tracking.start(task, run_dir, {**task.describe(), "resolved_engine": prepared.engine.name,
                                                         "data_source": prepared.source.describe()},
                                         resume_dir is not None, progress.note)
            return train_and_evaluate(pm, prepared, run_dir, progress, resume=resume_dir is not None, tracker=tracker,
                                      trial=trial)
        except EndedEarly as ended:
            tracker.end("KILLED")
            return trial.pruned(run_dir, ended)
        except (RunInterrupted, KeyboardInterrupt):
            tracker.end("KILLED")  # MLflow's word for a run stopped by its user; it can resume
            mark = main and run_dir is not None and (started or resume_dir is None)  # a refused resume: untouched
            return interrupted(run_dir, start_again(task, data, where), progress, mark)
        except BaseException as error:
            tracker.end("FAILED")
            if main and run_dir is not None and (started or resume_dir is None):  # a refused resume: untouched
                mark_failed(run_dir, error)
            full = os_error_in(error)
            if full is not None and full.errno in FULL:  # e.g. a checkpoint save that hit a full disk or ulimit -f
                said = str(error) if isinstance(error, TkError) and str(error).startswith(SAVING) else None
                raise TkError((said or str(saving_error(run_dir or output, full)))
                              + (resuming.where_next(run_dir, start_again(task, data, where)) if run_dir is not None
                                 else "")) from None
            raise
        finally:
            if run_dir is not None and main:
                liveness.release(run_dir)


def start_again(task: TaskConfig, data: str | None, where: str | None) -> str:
    """The command that starts this run again: a run of your file (tk run --data F) has no task to name."""
    if where and where.startswith("--data"):
        return f"tk run --data {data}"
    return f"tk run {task.name}" + (f" --data {data}" if data else "")


def interrupted(run_dir: Path | None, again: str, progress: Progress, mark: bool) -> RunOutcome:
    """Mark the run interrupted and say how to go on: resume from a checkpoint, or start again."""
    if mark and run_status(run_dir) != "complete":
        try:
            set_status(run_dir, "interrupted")
        except TkError as error:  # e.g. a full disk: the status says 'running' and tk list shows it stale
            progress.note(f"Could not mark the run interrupted: {error}")
    if run_dir is not None and run_status(run_dir) == "complete":
        progress.note(f"Interrupted after the run was complete; its results are saved in {run_dir}.")
    elif run_dir is not None and checkpoints.latest(run_dir / "checkpoints") is not None:
        progress.note(f"Interrupted. The last finished epoch is saved; resume with:\n  tk run --resume {run_dir}")
    elif run_dir is not None:
        progress.note(f"Interrupted before the first epoch ended: {run_dir} has nothing to resume from. "
                      f"Start again: {again}")
    else:
        progress.note(f"Interrupted before the run folder was made; nothing to resume. Start again: {again}")
    return RunOutcome(run_dir, "interrupted", {})


def mark_failed(run_dir: Path, error: BaseException) -> None:
    """Best effort: on a full disk even status.json may not fit, and the first error is the one to report.
    A complete run stays complete (an error while removing its checkpoints changes nothing saved)."""
    if run_status(run_dir) == "complete":
        return
    try:
        set_status(run_dir, "failed", error=str(error) or type(error).__name__)
    except (TkError, OSError):
        pass


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


def validation_prior(prepared: Prepared) -> float | None:
    """The validation loss of predicting the training split's base rates (weighted as the loss is)."""
    from toolkit.evaluation.diagnosis import prior_loss

    names = prepared.dataset.labels
    weights = (np.array([prepared.class_weights[name] for name in names]) if prepared.class_weights else None)
    return prior_loss(column(prepared.splits["train"], "label"), column(prepared.splits["validation"], "label"),
                      weights)


def underfitting(prepared: Prepared, result, labels, probabilities) -> dict[str, Any]:
    """metrics.json's ``underfitting``: the diagnosis, from the history, the prior and the test predictions."""
    from toolkit.evaluation.diagnosis import diagnose_underfitting

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


def resume_task(pm, run_dir: Path, progress: Progress | None = None, inexact: bool = False) -> RunOutcome:
    """Finish an interrupted run from its last epoch checkpoint, with its saved config and data."""
    from toolkit.runs.saved import read_run_config, task_of

    liveness.refuse_if_held(run_dir)
    resuming.check_resumable(run_dir)
    saved = read_run_config(run_dir)
    task = task_of(run_dir, pm)
    return run_task(pm, task, data=saved.get("data"), base=Path(saved["base"]) if saved.get("base") else None,
                    progress=progress, resume_dir=run_dir, recorded_engine=saved.get("engine", "trainer"),
                    inexact=inexact)
