"""`tk cv`: k-fold cross-validation over the training rows, each fold trained as `tk run` trains.

Folds: scikit-learn's ``StratifiedGroupKFold`` (shuffled, seeded by the task's seed) with the normalised text
as the group, so identical texts (and the same text with different labels) always share a fold and no fold
is scored on a text it trained on. Multi-label: stratified by each row's rarest label (``multilabel.strata``,
as the validation carve is), an approximation of iterative stratification. The data is loaded, checked and
tokenized once, and the model loaded once (each fold starts from a copy of it); each fold then goes through
``pipeline.train_and_evaluate``, its own validation split carved from its training rows.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import TaskConfig, origin_of
from toolkit.data.checks import check_splits, class_checks
from toolkit.data.hashes import text_hashes
from toolkit.data.loading import load_with_labels
from toolkit.data.multilabel import label_matrix, strata
from toolkit.data.rows import column, row_numbers
from toolkit.data.settings_checks import check_settings_on_data
from toolkit.data.sources import task_source
from toolkit.data.splits import make_splits, stratified_sample
from toolkit.data.tokens import tokenize_splits, window_stride
from toolkit.errors import TkError
from toolkit.evaluation.scoring import positive_class, require_metrics
from toolkit.runs import artifacts, liveness
from toolkit.runs import resume as resuming
from toolkit.runs.cv_summary import fold_class_warnings, summarise, write_cv_report
from toolkit.runs.folders import new_run_dir, run_status, set_status
from toolkit.runs.pipeline import train_and_evaluate
from toolkit.runs.prepared import Prepared, registered, report_checks, set_problem
from toolkit.runs.saved import task_of
from toolkit.saving import read_json, write_json
from toolkit.training import checkpoints
from toolkit.training.engines import resolve_engine
from toolkit.training.interrupt import RunInterrupted, graceful_interrupts
from toolkit.training.policy import check_batch_size
from toolkit.training.progress import Progress, quiet_library_progress

DEFAULT_FOLDS = 5
INDEX = "tk_cv_index"  # each training row's position, carried through the fold's splits to its tokenized row


@dataclass
class CvOutcome:
    cv_dir: Path | None
    status: str  # "complete" or "interrupted"
    summary: dict[str, Any]


def fold_of(train, folds: int, seed: int, task: TaskConfig) -> np.ndarray:
    """Each training row's fold (0 .. folds - 1): stratified by label, identical normalised texts together."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = text_hashes(column(train, "text"), normalised=True)
    distinct = len(np.unique(groups))
    if distinct < folds:
        raise TkError(f"task '{task.name}': {distinct} distinct texts cannot fill {folds} folds. Lower --folds "
                      f"to at most {distinct}, or add rows.")
    labels = strata(label_matrix(train)) if task.multi_label else np.asarray(column(train, "label"))
    assigned = np.full(len(train), -1)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    import warnings

    with warnings.catch_warnings():  # a class with fewer rows than folds: sklearn warns, tk says it below
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, held) in enumerate(splitter.split(np.zeros(len(train)), labels, groups)):
            assigned[held] = fold
    return assigned


class CvData:
    """What every fold shares: the task, the data as loaded, its tokens, the untouched model."""

    def __init__(self, pm, task: TaskConfig, data: str | None, base: Path | None, progress: Progress,
                 strict: bool, where: str | None, recorded_engine: str | None = None,
                 data_origin: str = "--data") -> None:
        import datasets
        from transformers import set_seed

        quiet_library_progress()
        where = where or f"task '{task.name}'"
        if task.select_on == "test":
            raise TkError(f"{origin_of(task, 'select_on', where)}: select_on = \"test\" picks epochs on the scored "
                          "rows; tk cv scores each fold on rows it never chose on. Leave select_on at \"validation\".")
        self.task = replace(task, eval_size=None)  # a fold's scored rows are the whole fold
        dataset, model_info = registered(pm, task, where, base)
        self.engine = resolve_engine(pm, task, recorded_engine)
        progress.note(self.engine.describe())
        require_metrics(pm)
        self.tokenizer = pm.first("tk_load_tokenizer", f"model '{model_info.name}'", model_info.plugin,
                                  model=model_info)
        self.stride = window_stride(task, self.tokenizer, model_info.name).value
        self.source = task_source(dataset.name, data, task, base, data_origin)
        progress.note(f"Data: {dataset.name} from {self.source.describe()}")
        loaded = load_with_labels(pm, dataset, self.source, task)
        self.dataset, labelled, self.notes = loaded.dataset, loaded.splits, list(loaded.notes)
        positive_class(task, self.dataset.labels, where)
        self.checks = check_splits(labelled, self.dataset.name, self.dataset.labels, classes=False)
        check_command = f"tk check --data {data}" if data else f"tk check {task.name}"
        report_checks(self.checks.findings, strict, progress, check_command)
        if "test" in labelled:
            self.notes.append(f"tk cv folds the training split ({len(labelled['train']):,} rows); the data's test "
                              f"split ({len(labelled['test']):,} rows) is not used.")
        train = self.sample(labelled["train"])
        for note in self.notes:
            progress.note(note)
        self.train = train.add_column(INDEX, np.arange(len(train)))
        self.fingerprint = artifacts.fingerprint({"train": train})
        set_seed(task.seed)  # every fold's head starts as a tk run's would
        self.model = pm.first("tk_load_model", f"model '{model_info.name}'", model_info.plugin, model=model_info,
                              labels=self.dataset.labels)
        set_problem(self.model, task)
        # Tokenized once for every fold (windows, long_text = "chunks", are cut per fold: their rows move).
        self.tokens = None if self.stride is not None else tokenize_splits(
            datasets.DatasetDict({"all": self.train}), self.tokenizer, task.max_length, task.truncation)["all"]

    def sample(self, train):
        """train_size = N: the folds are cut from N rows of the training split, drawn as tk run draws its N, and
        each fold trains on all of its own (the other folds' rows, less its validation carve). Folding every row
        and training each fold on N of them scored the whole file (100,000 tweets for 400-row models)."""
        size = self.task.train_size
        if size is None:
            return train
        self.task = replace(self.task, train_size=None)
        if size > len(train):
            raise TkError(f"task '{self.task.name}': train_size = {size:,} is larger than the {len(train):,} "
                          "training rows tk cv folds. Lower train_size, or leave it out to fold them all.")
        if size == len(train):
            return train
        sample, said = stratified_sample(train, size, self.task)
        self.notes += [*said, f"train_size = {size:,}: tk cv folds {size:,} of the training split's "
                              f"{len(train):,} rows (stratified, seeded as tk run draws its rows); the other "
                              f"{len(train) - size:,} are neither trained on nor scored."]
        return sample

    def fold_splits(self, assigned: np.ndarray, fold: int):
        """The fold's splits as tk run makes them (``make_splits``), checked as tk run checks its settings."""
        import datasets

        held, rest = np.flatnonzero(assigned == fold), np.flatnonzero(assigned != fold)
        made = make_splits(datasets.DatasetDict({"train": self.train.select(rest), "test": self.train.select(held)}),
                           self.task)
        check_settings_on_data(self.task, self.dataset.labels, len(made.splits["train"]))
        return made

    def check_every_fold(self, assigned: np.ndarray, folds: int) -> None:
        """Refuse settings some fold's data refutes before any folder is made or fold trained: a cv that fails at
        fold 3 of 5 after hours, or leaves a failed folder no --resume can finish (its settings are saved), helps
        no one."""
        for fold in range(folds):
            try:
                self.fold_splits(assigned, fold)
            except TkError as error:
                raise TkError(f"fold {fold + 1} of {folds} (a fold trains on the other folds' rows, less its own "
                              f"validation carve): {error}") from None

    def fold(self, assigned: np.ndarray, fold: int, progress: Progress) -> Prepared:
        import datasets

        made = self.fold_splits(assigned, fold)
        splits = made.splits
        checks = copy.copy(self.checks)
        checks.findings = list(self.checks.findings) + class_checks(splits, self.dataset.labels)
        checks.left_out = {}
        checks.split_rows = {name: len(split) for name, split in splits.items()}
        if self.tokens is None:
            tokenized = tokenize_splits(splits, self.tokenizer, self.task.max_length, self.task.truncation,
                                        self.stride)
            # a chunks task's batches are of windows, counted only now (check_settings_on_data could not yet)
            check_batch_size(self.task, len(splits["train"]), windows=len(tokenized["train"]))
        else:
            tokenized = datasets.DatasetDict({name: self.tokens.select(column(split, INDEX))
                                              for name, split in splits.items()})
        for note in made.notes:  # the rows its splits left out, as tk run says them (the counts below lack them)
            if "left out" in note:
                progress.note(f"Fold {fold + 1}, {note}")
        progress.note(f"Fold {fold + 1}: train {len(splits['train']):,}, validation {len(splits['validation']):,}, "
                      f"scored {len(splits['test']):,}")
        return Prepared(self.task, self.dataset, self.source, self.engine, checks, splits, tokenized, self.tokenizer,
                        copy.deepcopy(self.model), self.notes + list(made.notes), scored_as="the held-out fold")


def cv_task(pm, task: TaskConfig, *, data: str | None = None, output: Path = Path("runs"), base: Path | None = None,
            progress: Progress | None = None, folds: int = DEFAULT_FOLDS, strict: bool = False,
            where: str | None = None, resume_dir: Path | None = None, recorded_engine: str | None = None,
            data_origin: str = "--data") -> CvOutcome:
    """Train and score every fold; a Ctrl-C or SIGTERM ends it 'interrupted', resumable at the fold it was in."""
    progress = progress or Progress()
    if folds < 2:
        raise TkError(f"--folds {folds}: cross-validation needs at least 2 folds (5 is usual).")
    cv_dir = resume_dir
    started = time.perf_counter()
    with graceful_interrupts(progress.note):
        try:
            if resume_dir is not None:
                liveness.acquire(resume_dir)
            shared = CvData(pm, task, data, base, progress, strict, where, recorded_engine, data_origin)
            assigned = fold_of(shared.train, folds, task.data_seed, task)
            shared.check_every_fold(assigned, folds)
            rows = row_numbers(shared.train)
            if not task.multi_label:
                for warning in fold_class_warnings(np.asarray(column(shared.train, "label")), assigned,
                                                   shared.dataset.labels):
                    progress.note(f"WARNING: {warning}")
            if resume_dir is None:
                cv_dir = new_run_dir(output, f"{task.name}-cv")
                liveness.acquire(cv_dir)
                write_json(cv_dir / "config.json", {
                    "kind": "cv", "task": task.describe(), "folds": folds, "engine": shared.engine.name,
                    "data": str(shared.source.path.resolve()) if shared.source.path else None, "data_as_given": data,
                    "data_source": shared.source.describe(), "data_fingerprint": shared.fingerprint,
                    "base": str(base or ""), "notes": shared.notes})
                write_json(cv_dir / "folds.json", {"rows": rows.tolist(), "fold": assigned.tolist()})
            else:
                check_same_folds(cv_dir, shared.fingerprint, rows, assigned)
            set_status(cv_dir, "running")
            progress.note(f"Cross-validation folder: {cv_dir}")
            for fold in range(folds):
                fold_dir = cv_dir / f"fold-{fold + 1}"
                if run_status(fold_dir) == "complete":
                    progress.note(f"Fold {fold + 1} of {folds}: complete already, kept.")
                    continue
                progress.note(f"Fold {fold + 1} of {folds}")
                prepared = shared.fold(assigned, fold, progress)
                again = checkpoints.latest(fold_dir / "checkpoints") is not None
                fold_dir.mkdir(exist_ok=True)
                if not again:
                    write_json(fold_dir / "config.json", {
                        "task": shared.task.describe(), "engine": shared.engine.name, "cv_fold": fold + 1,
                        "data": str(shared.source.path.resolve()) if shared.source.path else None,
                        "data_source": shared.source.describe(), "base": str(base or ""),
                        "data_fingerprint": artifacts.fingerprint(prepared.splits), "notes": prepared.notes})
                set_status(fold_dir, "running")
                try:
                    train_and_evaluate(pm, prepared, fold_dir, progress, resume=again)
                except (RunInterrupted, KeyboardInterrupt):
                    if run_status(fold_dir) != "complete":
                        set_status(fold_dir, "interrupted")
                    raise
            summary = summarise(pm, cv_dir, shared.dataset.labels, assigned, rows, task,
                                positive_class(task, shared.dataset.labels), time.perf_counter() - started)
            write_cv_report(cv_dir, summary)
            set_status(cv_dir, "complete")
            return CvOutcome(cv_dir, "complete", summary)
        except (RunInterrupted, KeyboardInterrupt):
            if cv_dir is not None and run_status(cv_dir) != "complete":
                set_status(cv_dir, "interrupted")
                progress.note(f"Interrupted. Finished folds are kept; resume at the fold it was in with:\n"
                              f"  tk cv --resume {cv_dir}")
            else:
                progress.note("Interrupted before the cross-validation folder was made; nothing to resume.")
            return CvOutcome(cv_dir, "interrupted", {})
        except BaseException as error:
            if cv_dir is not None and run_status(cv_dir) != "complete" and (cv_dir / "config.json").exists():
                set_status(cv_dir, "failed", error=str(error) or type(error).__name__)
            raise
        finally:
            if cv_dir is not None:
                liveness.release(cv_dir)


def check_same_folds(cv_dir: Path, fingerprint: dict, rows: np.ndarray, assigned: np.ndarray) -> None:
    """A resumed cv must fold the same rows the same way, or its finished folds mean something else."""
    config = read_json(cv_dir / "config.json")
    saved = read_json(cv_dir / "folds.json")
    if config.get("data_fingerprint") != fingerprint:
        raise TkError(f"{cv_dir}: the training data changed since this cross-validation started "
                      f"(fingerprint {config.get('data_fingerprint')} then, {fingerprint} now). Start a new one: "
                      "tk cv TASK, or restore the data.")
    if saved.get("rows") != rows.tolist() or saved.get("fold") != assigned.tolist():
        raise TkError(f"{cv_dir}: the folds would differ from those recorded in folds.json (another tk or "
                      "scikit-learn version?). Start a new cross-validation.")


def resume_cv(pm, cv_dir: Path, progress: Progress | None = None) -> CvOutcome:
    """Continue an interrupted tk cv at the fold it was in; finished folds are kept as they are."""
    if not (cv_dir / "config.json").is_file() or read_json(cv_dir / "config.json").get("kind") != "cv":
        raise TkError(f"{cv_dir} is not a tk cv folder (its config.json does not say kind \"cv\"). "
                      "tk run --resume continues a tk run.")
    liveness.refuse_if_held(cv_dir)
    if run_status(cv_dir) == "complete":
        raise TkError(f"{cv_dir} is complete: nothing to resume.")
    saved = read_json(cv_dir / "config.json")
    task = task_of(cv_dir, pm)
    return cv_task(pm, task, data=saved.get("data"), base=Path(saved["base"]) if saved.get("base") else None,
                   progress=progress, folds=int(saved["folds"]), resume_dir=cv_dir,
                   recorded_engine=saved.get("engine"), data_origin=resuming.data_origin(saved))


