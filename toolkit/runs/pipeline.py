"""`tk run`: load → map labels → split → check → tokenize → train → evaluate → save, in that order
here; each stage's own steps live beside it (prepared, validation, calibrate, diagnoses, endings)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import TaskConfig
from toolkit.data.checks import check_splits, class_checks
from toolkit.data.loading import load_with_labels
from toolkit.data.rows import column, row_numbers
from toolkit.data.settings_checks import check_label_settings
from toolkit.data.sources import task_source
from toolkit.data.splits import make_splits
from toolkit.data.tokens import check_max_length, count_windows, tokenize_splits, window_stride
from toolkit.errors import TkError
from toolkit.evaluation.baseline import majority_class, majority_labels, tied_with_majority
from toolkit.evaluation.diagnosis import diagnose_overfitting, explain, explain_underfitting
from toolkit.evaluation.inference import predict_probabilities
from toolkit.evaluation.pooling import documents_of, pool_rows
from toolkit.evaluation.scoring import positive_class, require_metrics, score
from toolkit.records import DatasetInfo, ModelInfo, WithNotes
from toolkit.runs import artifacts, calibrate, liveness, tracking
from toolkit.runs import resume as resuming
from toolkit.runs.diagnoses import linear_baseline, underfitting
from toolkit.runs.endings import TUNE_AGAIN, RunOutcome, interrupted, mark_failed, start_again
from toolkit.runs.folders import check_task_name, new_run_dir, run_status, set_status
from toolkit.runs.loader import record_checksums
from toolkit.runs.model_card import write_model_card
from toolkit.runs.prepared import (
    Prepared,
    class_weights,
    describe_windows,
    registered,
    report_checks,
    set_problem,
    window_counts,
)
from toolkit.runs.report_page import write_report
from toolkit.runs.saved import read_run_config, task_of
from toolkit.runs.validation import tune_on_validation
from toolkit.saving import FULL, SAVING, os_error_in, saving_error, write_json
from toolkit.training import distributed, policy
from toolkit.training.device import start_gpu_warm_up, use_bf16
from toolkit.training.engines import EngineChoice, resolve_engine
from toolkit.training.interrupt import EndedEarly, RunInterrupted, graceful_interrupts, safe_points
from toolkit.training.progress import Progress, quiet_library_progress

SHOWN_CLASSES = 6  # the training rows' class counts named one by one up to this many classes


def trained_classes(split, labels: tuple[str, ...]) -> str:
    """The classes of the rows trained on (after train_size drew them), in brief: the data checks count the
    data as loaded, which may be a far larger file."""
    counts = np.bincount(np.asarray(column(split, "label"), dtype=np.int64), minlength=len(labels))
    if len(labels) <= SHOWN_CLASSES:
        return ", ".join(f"{labels[i]} {counts[i]:,}" for i in range(len(labels)))
    smallest = int(np.argmin(counts))
    return f"{len(labels)} classes, the smallest '{labels[smallest]}' with {counts[smallest]:,}"


def run_task(pm, task: TaskConfig, *, data: str | None = None, output: Path = Path("runs"),
             base: Path | None = None, progress: Progress | None = None,
             resume_dir: Path | None = None, strict: bool = False, where: str | None = None,
             recorded_engine: str | None = None, trial: Any = None, data_origin: str = "--data",
             folder_name: str | None = None, go_on: str | None = None) -> RunOutcome:
    """A run from start to end; a Ctrl-C or SIGTERM anywhere in it ends it as 'interrupted'.

    ``trial``: a tk tune trial (``toolkit.runs.tune_trial.TrialRun``): it watches each epoch and may end the
    run early (pruned), and it ends the run after training, scored on the validation split alone. ``data_origin``:
    what gave ``data`` (a resume passes the path its run recorded, given first by --data or the task's key).
    ``folder_name``: the run folder's name in place of the task's (a sweep's run over one of its data files).
    ``go_on``: what to run to go on after an interruption, for a run another command started (tk tune's)."""
    progress = progress or Progress()
    # a resumed task is rebuilt from config.json without the record of which keys --set gave: the command
    # recorded when the run started repeats them
    again = resuming.again(resume_dir) if resume_dir is not None else start_again(task, data, where)
    folder_name = folder_name or task.name
    check_task_name(folder_name)  # before any work: the name becomes the run folder's
    if not distributed.is_main():
        progress = Progress(echo=lambda text: None, bar=False)  # one process speaks for a data-parallel run
    main = distributed.is_main()
    run_dir, started = resume_dir, False
    tracker = tracking.Tracker([])  # report_to's trackers, once the run folder exists
    with graceful_interrupts(progress.note):
        try:
            if resume_dir is not None and main:
                liveness.acquire(resume_dir)  # before any work: a live run is refused
            prepared = prepare(pm, task, data, base, progress, strict, where, recorded_engine, data_origin)
            fingerprint = artifacts.fingerprint(prepared.splits)
            if resume_dir is not None:  # checked, and damaged checkpoints set aside, by the main process alone
                distributed.shared(lambda: resuming.begin(resume_dir, prepared, fingerprint, progress.note))
            else:
                run_dir = distributed.shared(lambda: new_run_dir(output, folder_name))
                if main:
                    liveness.acquire(run_dir)
                    write_json(run_dir / "config.json", {
                        "task": task.describe(), "engine": prepared.engine.name,
                        "data": str(prepared.source.path.resolve()) if prepared.source.path else None,
                        "data_as_given": data, "data_source": prepared.source.describe(),
                        "data_fingerprint": fingerprint, "base": str(base or ""),
                        "start_again": again,
                        "notes": prepared.notes})  # e.g. a stride this task does not use
                    write_json(run_dir / "left_out.json", prepared.checks.left_out)
            started = True
            if main:
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
            return interrupted(run_dir, again, progress, mark, go_on=TUNE_AGAIN if trial is not None else go_on)
        except BaseException as error:
            tracker.end("FAILED")
            if main and run_dir is not None and (started or resume_dir is None):  # a refused resume: untouched
                mark_failed(run_dir, error)
            full = os_error_in(error)
            if full is not None and full.errno in FULL:  # e.g. a checkpoint save that hit a full disk or ulimit -f
                said = str(error) if isinstance(error, TkError) and str(error).startswith(SAVING) else None
                raise TkError((said or str(saving_error(run_dir or output, full)))
                              + (resuming.where_next(run_dir, again) if run_dir is not None
                                 else "")) from None
            raise
        finally:
            if run_dir is not None and main:
                liveness.release(run_dir)


def resume_task(pm, run_dir: Path, progress: Progress | None = None, go_on: str | None = None) -> RunOutcome:
    """Finish an interrupted run from its last epoch checkpoint, with its saved config and data."""
    if distributed.is_main():  # the main process holds the run's lock for every process of a data-parallel run
        liveness.refuse_if_held(run_dir)
    resuming.check_resumable(run_dir)
    saved = read_run_config(run_dir)
    task = task_of(run_dir, pm)
    return run_task(pm, task, data=saved.get("data"), base=Path(saved["base"]) if saved.get("base") else None,
                    progress=progress, resume_dir=run_dir, recorded_engine=saved.get("engine", "eager"),
                    data_origin=resuming.data_origin(saved), go_on=go_on)


@dataclass
class Ready:
    """What tk run's checks before loading any data found and loaded."""

    dataset: DatasetInfo
    model_info: ModelInfo
    engine: EngineChoice
    tokenizer: Any
    stride: WithNotes  # the chunks windows' stride (None: truncation), with its warnings


def check_before_loading(pm, task: TaskConfig, where: str | None = None, base: Path | None = None,
                         recorded_engine: str | None = None) -> Ready:
    """tk run's checks before it loads any data, so that a bad setting costs no loading: the dataset's and
    model's names, the engine (available here?), positive_label against a dataset's fixed labels, the metrics
    plugin, report_to's libraries, and max_length and stride against the model's tokenizer. tk sweep runs them
    on every run's settings before its first run trains."""
    dataset, model_info = registered(pm, task, where, base)
    engine = resolve_engine(pm, task, recorded_engine)
    if dataset.labels:  # else they come from the data: checked once loaded
        positive_class(task, dataset.labels, where)
    require_metrics(pm)
    tracking.require(task, where)  # report_to's libraries
    tokenizer = pm.first("tk_load_tokenizer", f"model '{model_info.name}'", model_info.plugin, model=model_info)
    return Ready(dataset, model_info, engine, tokenizer, window_stride(task, tokenizer, model_info.name))


def training_rows(pm, task: TaskConfig, data: str | None, base: Path | None, ready: Ready,
                  data_origin: str = "--data") -> TrainingRows:
    """The training split tk run would make for ``task`` (loaded, labelled and split as ``prepare`` does;
    nothing trained), for the checks that need its size before a run: tk sweep's, on every grid setting."""
    quiet_library_progress()
    source = task_source(ready.dataset.name, data, task, base, data_origin)
    train = make_splits(load_with_labels(pm, ready.dataset, source, task).splits, task).splits["train"]
    texts = column(train, "text")
    if ready.stride.value is None:
        return TrainingRows(len(texts), None)
    return TrainingRows(len(texts), lambda: count_windows(texts, ready.tokenizer, task.max_length, ready.stride.value))


@dataclass
class TrainingRows:
    """A training split's texts, and how to count its windows (long_text = "chunks"; None: truncation)."""

    texts: int
    count_windows: Callable[[], int] | None

    def check(self, task: TaskConfig) -> None:
        """tk run's batch_size check on these rows (their windows counted only where needed)."""
        policy.check_batch_size(task, self.texts, policy.windows_to_check(task, self.texts, self.count_windows))


def prepare(pm, task: TaskConfig, data: str | None, base: Path | None, progress: Progress,
            strict: bool = False, where: str | None = None, recorded_engine: str | None = None,
            data_origin: str = "--data") -> Prepared:
    from transformers import set_seed

    quiet_library_progress()
    ready = check_before_loading(pm, task, where, base, recorded_engine)
    dataset, model_info, engine, tokenizer, stride = (ready.dataset, ready.model_info, ready.engine, ready.tokenizer,
                                                      ready.stride)
    progress.note(engine.describe())
    if distributed.world_size() > 1:
        progress.note(f"Data-parallel: {distributed.world_size()} processes, global batch "
                      f"{task.batch_size * distributed.world_size()} ({task.batch_size} rows each)")
    start_gpu_warm_up()
    for warning in stride.notes:
        progress.note(warning)
    source = task_source(dataset.name, data, task, base, data_origin)
    progress.note(f"Data: {dataset.name} from {source.describe()}")
    loaded = load_with_labels(pm, dataset, source, task)
    dataset, labelled = loaded.dataset, loaded.splits
    check_label_settings(task, dataset.labels, where)
    # Before splitting, where leakage is still there to see; rare or absent classes after, split by split.
    check_command = (f"tk check --data {data}" if where and where.startswith("--data") else
                     f"tk check {task.name}" + (f" --data {data}" if data else ""))
    checks = check_splits(labelled, dataset.name, dataset.labels, classes=False)
    report_checks(checks.findings, strict, progress, check_command)
    made = make_splits(labelled, task)
    splits, notes = made.splits, [*loaded.notes, *made.notes]
    policy.check_batch_size(task, len(splits["train"]))  # long_text = "chunks": its windows, once tokenized
    checks.left_out = made.left_out  # the rows left out: left_out.json
    for note in notes + list(made.advice):  # advice is printed, not recorded: the model card states facts
        progress.note(note)
    progress.note("Rows: " + ", ".join(f"{name} {len(split):,}" + (f" ({trained_classes(split, dataset.labels)})"
                                                                     if name == "train" and not task.multi_label
                                                                     else "") for name, split in splits.items()))
    presence = class_checks(splits, dataset.labels)
    checks.findings += presence
    checks.split_rows = {name: len(split) for name, split in splits.items()}
    report_checks(presence, strict, progress, check_command)
    set_seed(task.seed)  # the new classification head starts the same every time
    model = pm.first("tk_load_model", f"model '{model_info.name}'", model_info.plugin, model=model_info,
                     labels=dataset.labels)
    set_problem(model, task)
    check_max_length(task, tokenizer, model_info.name, model.config)  # its position embeddings known now
    tokenized = tokenize_splits(splits, tokenizer, task.max_length, task.truncation, stride.value)
    if stride.value is not None:  # a batch holds windows, counted only now: still before any training
        policy.check_batch_size(task, len(splits["train"]), windows=len(tokenized["train"]))
    if task.multi_label:
        progress.note("Multi-label: a sigmoid per label; each epoch's accuracy is subset accuracy and its f1 micro "
                      "F1, at threshold 0.5. Each label's threshold is tuned on the validation split after training.")
    elif len(dataset.labels) > 2:
        progress.note(f"In the epoch table, val f1 is macro F1: the {len(dataset.labels)} classes' F1, averaged.")
    elif len(dataset.labels) == 2:  # the F1 of the positive class: tk compare may decide on macro F1 instead
        chosen = positive_class(task, dataset.labels)
        progress.note(f"In the epoch table, val f1 is the F1 of '{dataset.labels[1 if chosen is None else chosen]}', "
                      "the positive class (history.json also keeps macro F1 per epoch).")
    if stride.value is not None:
        progress.note(describe_windows(task, splits, tokenized))
    weights = class_weights(task, tokenized, dataset.labels)
    if weights:
        progress.note(f"Class weights ({task.class_weights if isinstance(task.class_weights, str) else 'given'}), "
                      "the loss weight of each row of a class: " + ", ".join(f"{n} {w:.3g}" for n, w in weights.items()))
    raw_weights = policy.class_weights(task, tokenized["train"]["labels"], dataset.labels)  # unrounded
    for warning in policy.range_warnings(task, raw_weights):
        progress.note(f"Warning: {warning}")
    return Prepared(task, dataset, source, engine, checks, splits, tokenized, tokenizer, model, [*stride.notes, *notes],
                    artifacts.fingerprint(labelled) if source.path else None, weights, model_info, spare=made.spare)


def train_and_evaluate(pm, prepared: Prepared, run_dir: Path, progress: Progress, resume: bool,
                       tracker: tracking.Tracker | None = None, trial: Any = None) -> RunOutcome:
    tracker = tracker or tracking.Tracker([])
    task, dataset = prepared.task, prepared.dataset
    positive = positive_class(task, dataset.labels)

    def per_epoch_scores(labels, probabilities):
        return score(pm, labels, probabilities, dataset.labels, positive_label=positive)

    from toolkit.training import loop  # torch: imported when a run trains, not at tk's start

    with safe_points():
        result = loop.train(prepared.model, prepared.tokenizer, prepared.tokenized, task, run_dir,
                            prepared.engine.strategy(task), [progress, tracker, trial],
                            compute_metrics=per_epoch_scores, resume=resume)
    distributed.leave()  # training was the last collective work: the test metrics are the main process's alone
    if not distributed.is_main():
        return RunOutcome(run_dir, "complete", {})
    if trial is not None:  # a search's trial: the test split is scored once, at the end of the search
        tracker.end("FINISHED")
        return trial.finish(run_dir, result)
    try:
        return score_and_save(pm, prepared, run_dir, progress, tracker, result)
    except (RunInterrupted, KeyboardInterrupt):
        if result.keep_for_resume is not None and run_status(run_dir) != "complete":
            progress.note("Keeping the trained model to resume from...")
            result.keep_for_resume()  # tk run --resume then scores and saves without training again
        raise


def score_and_save(pm, prepared: Prepared, run_dir: Path, progress: Progress, tracker: tracking.Tracker,
                   result) -> RunOutcome:
    """After training: calibration, the test split, the linear baseline, every file of the run folder."""
    task, dataset = prepared.task, prepared.dataset
    positive = positive_class(task, dataset.labels)
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
    if not task.multi_label and metrics.get("baseline"):
        metrics["baseline"]["tied_with"] = tied_with_majority(train_labels, dataset.labels)
    diagnosis = diagnose_overfitting(result.history, task.train_size)
    metrics["calibration"] = calibrate.on_test(fitted, labels, probabilities, task, progress,
                                              prepared.scored_as)
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
    linear_probabilities = None
    if task.linear_baseline:
        found, linear_probabilities = linear_baseline(pm, prepared, metrics, labels, probabilities, tuned, positive,
                                                      progress)
        metrics.update(found)
    save_outcome(run_dir, prepared, result, metrics, texts, labels, probabilities, tuned, linear_probabilities)
    tracker.finish(metrics, sum(record.steps for record in result.history), run_dir)
    for line in explain(diagnosis, result.best_epoch) + explain_underfitting(metrics["underfitting"]):
        progress.note(line)
    return RunOutcome(run_dir, "complete", metrics)


def save_outcome(run_dir: Path, prepared: Prepared, result, metrics, texts, labels, probabilities,
                 tuned: np.ndarray | None = None, linear_probabilities: np.ndarray | None = None) -> None:
    """Write every file, then mark the run complete: a crash in between leaves it marked failed."""
    task, label_names = prepared.task, prepared.dataset.labels
    artifacts.save_model(result.model, prepared.tokenizer, run_dir, task.max_length, task.truncation)
    write_json(run_dir / "history.json", [r.as_dict() for r in result.history])
    artifacts.write_predictions(run_dir / "predictions.csv", texts, labels, probabilities, label_names, tuned,
                                rows=row_numbers(prepared.splits["test"]), linear=linear_probabilities)
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
