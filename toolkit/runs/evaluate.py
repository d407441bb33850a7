"""`tk evaluate`: a saved model on the run's own data (its recorded source) or on a file given with --data."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import TaskConfig
from toolkit.data.hashes import text_hashes
from toolkit.data.loading import load_with_labels
from toolkit.data.rows import column, row_numbers, rows_named
from toolkit.data.sources import resolve_source
from toolkit.data.splits import make_splits
from toolkit.errors import TkError
from toolkit.evaluation import calibration
from toolkit.evaluation.report import thousands
from toolkit.evaluation.scoring import positive_class, require_metrics, score
from toolkit.records import DataSource, WithNotes
from toolkit.runs.artifacts import fingerprint, same_fingerprint
from toolkit.runs.saved import SavedRun, read_run_config, saved_baseline, task_of
from toolkit.saving import read_json


@dataclass
class Evaluated:
    metrics: dict[str, Any]  # what tk evaluate prints and saves
    rows: Any  # the rows scored (text, label, and the row numbers loading gave them)
    probabilities: np.ndarray  # per row, the saved model's
    training: dict[str, Any] | None = None  # with a file given: the run's train and validation rows, drawn again


def evaluate_run(pm, saved: SavedRun, data: str | None, split: str | None = None,
                 progress: Any = None, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """tk evaluate's metrics (``evaluate_rows``)."""
    return evaluate_rows(pm, saved, data, split, progress, columns).metrics


def evaluate_rows(pm, saved: SavedRun, data: str | None, split: str | None = None,
                  progress: Any = None, columns: dict[str, str] | None = None) -> Evaluated:
    """Score the saved model with the run's own label names.

    Without ``data``: the data source the run recorded (an absolute path), and the rows of its ``test``
    split that the run scored (leaked rows left out, as ``tk run`` does); when that source has no test
    split, the rows the run held out as its test split (same seed, same sizes).
    A file changed since the run is a warning naming both fingerprints. With ``data``: a file is the set
    to score, all of it; a folder's ``split`` (default ``test``). ``progress`` shows a bar while scoring;
    ``columns``: the text_column and label_column of ``data``.
    """
    require_metrics(pm)
    chosen = rows_to_score(pm, saved, data, split, columns=columns)
    rows, task, notes = chosen.rows, chosen.task, chosen.notes
    started = time.perf_counter()
    probabilities = saved.probabilities(column(rows, "text"), progress)
    seconds = time.perf_counter() - started
    metrics = score(pm, column(rows, "label"), probabilities, saved.labels, confidence=True,
                    positive_label=positive_class(task, saved.labels, str(saved.run_dir)),
                    baseline_label=saved_baseline(saved.run_dir, saved.labels), thresholds=saved.thresholds)
    metrics.update({"run": str(saved.run_dir), "data_source": chosen.source, "split": chosen.split,
                    "every_row": chosen.every_row, "rows_left_out": chosen.left_out,
                    "rows_seen_in_training": chosen.seen,
                    "split_description": chosen.described,
                    "data_given": data is not None, "seconds": round(seconds, 2),
                    "data_path": str(Path(data).resolve()) if data is not None else None,  # data_source as given
                    "columns": dict(columns or {}),
                    "texts_per_second": round(len(rows) / seconds, 1) if seconds else None,
                    "notes": notes, **_calibration(column(rows, "label"), probabilities),
                    "temperature": temperature_of(saved)})
    return Evaluated(metrics, rows, probabilities, chosen.training)


@dataclass
class RowsToScore:
    rows: Any  # a datasets split with text and label columns
    task: TaskConfig  # the run's task, its plugin keys included
    split: str  # "test", "all", or the split asked for
    described: str  # how tk names these rows ("test split, the rows tk run scored")
    source: str  # where they came from
    notes: list[str]
    every_row: bool = False  # every row of the split or file as read; False: the rows tk run scored, or fewer
    left_out: int = 0  # rows of that split or file that loading left out (a label not of the task, an empty text)
    training: dict[str, Any] | None = None  # with a file given: the run's train and validation rows (None: moved)
    seen: list[int] | None = None  # with a file given: its rows whose text the run trained or validated on


def rows_to_score(pm, saved: SavedRun, data: str | None, split: str | None = None,
                  option: str = "--data", columns: dict[str, str] | None = None) -> RowsToScore:
    """The rows tk evaluate scores (see ``evaluate_run``); tk export checks an export on the same rows
    (``option``: the command's name for ``data``, as messages give it; ``columns``: text_column and
    label_column of ``data``, tk evaluate's --text-column and --label-column)."""
    run_dir = saved.run_dir
    task = task_of(run_dir, pm)  # with the plugin keys too: the files dataset's text_column, label_column, ...
    if data is not None and columns:
        task = replace(task, settings={**task.settings, **columns})
    if data is not None and task.settings.get("test_data"):
        # --data names the rows to score: the run's own test file (files dataset) must not replace them.
        task = replace(task, settings={**task.settings, "test_data": None})
    dataset = pm.dataset(task.dataset)
    if dataset.labels and dataset.labels != saved.labels:
        raise TkError(f"{run_dir}: the model's labels {saved.labels} differ from dataset "
                      f"'{dataset.name}' labels {dataset.labels}.")
    manifest = _manifest(run_dir)
    source = data_source(run_dir, task, dataset.name, data, option)
    config = read_run_config(run_dir)
    base = Path(config["base"]) if config.get("base") else None  # test_data is relative to it, as data is
    try:
        loaded = load_with_labels(pm, dataset, source, task, labels=saved.labels)
    except TkError as error:
        if data is None or getattr(error, "role", None) is None:
            raise
        raise TkError(f"{error.problem} {how_to_name_the_column(error.role, option, data)}") from None
    splits, notes = loaded.splits, list(loaded.notes)
    if data is None:
        notes += _changed(manifest.get("source_fingerprint"), fingerprint(splits), source, splits)
    chosen = _rows(splits, task, source, data, split)
    rows, split_name, described = chosen.value
    notes += chosen.notes
    whole = data is not None or split is not None  # the split or file as a whole, not the rows tk run scored
    read = loaded.rows_read.get("train" if split_name == "all" else split_name, len(rows))
    left_out = read - len(rows) if whole else 0
    if split_name == "all":  # one file given is loaded as a training split: name it as the user knows it
        notes = [f"{Path(data).name}:{note[len('train:'):]}" if note.startswith("train:") else note
                 for note in notes]
    if left_out:
        whose = "the file's" if split_name == "all" else f"the {split_name} split's"
        described = f"{len(rows):,} of {whose} {read:,} rows ({left_out:,} left out, as said above)"
    training = drawn_again(pm, saved) if data is not None else None
    seen = seen_in_training(training, rows) if training is not None else WithNotes([])
    notes += seen.notes
    # the files dataset's separate test file, when it holds the rows scored: named first, then the training data
    test_data = task.settings.get("test_data") if split_name == "test" else None
    if test_data and base is not None and not Path(test_data).is_absolute():
        test_data = base / test_data  # relative to tasks.toml, as the files dataset reads it
    scored_from = (f"{test_data} (the task's test_data; training data: {source.path})" if test_data
                   else source.describe())
    return RowsToScore(rows, task, split_name, described, scored_from, notes, whole and not left_out, left_out,
                       training, seen.value)


def data_source(run_dir: Path, task: TaskConfig, dataset: str, data: str | None = None,
                option: str = "--data") -> DataSource:
    """Where ``data`` is, or without it the data the run trained on: the absolute path it recorded, else
    as its config names it (the Hub, or a path relative to its tasks.toml)."""
    config = read_run_config(run_dir)
    base = Path(config["base"]) if config.get("base") else None  # the task's data key is relative to it
    recorded = _manifest(run_dir).get("data_path") if data is None else None
    if recorded and not Path(recorded).exists():
        raise TkError(f"{run_dir} was trained on {recorded}, which no longer exists. Pass the data to score "
                      f"with {option} PATH.")
    return (DataSource(Path(recorded), "the run's record", base) if recorded else
            resolve_source(dataset, data or config.get("data"), task.data, base, option if data else "the run's data"))


def training_splits(pm, saved: SavedRun) -> dict[str, Any] | None:
    """The run's training and validation rows, drawn again as tk run drew them (same data, seed and sizes);
    None where its data changed since the run (other rows would be drawn)."""
    task = task_of(saved.run_dir, pm)
    dataset = pm.dataset(task.dataset)
    loaded = load_with_labels(pm, dataset, data_source(saved.run_dir, task, dataset.name), task, labels=saved.labels)
    recorded = _manifest(saved.run_dir).get("source_fingerprint")
    if isinstance(recorded, dict) and recorded and not same_fingerprint(recorded, loaded.splits,
                                                                         fingerprint(loaded.splits)):
        return None
    splits = make_splits(loaded.splits, task).splits
    return {"train": splits["train"], "validation": splits["validation"]}


def drawn_again(pm, saved: SavedRun) -> dict[str, Any] | None:
    """``training_splits``, or None where the run's data moved or changed: nothing to draw them from."""
    try:
        return training_splits(pm, saved)
    except TkError:
        return None


def seen_in_training(splits: dict[str, Any], rows) -> WithNotes:
    """A file given to score whose texts the run trained or validated on: its scores there are optimistic
    (tk run leaves such rows out of its test split; a file is scored whole, so it is said instead): their
    numbers as in the file, and the warning."""
    seen = np.concatenate([text_hashes(column(splits[name], "text"), normalised=True)
                           for name in ("train", "validation")])
    found = np.isin(text_hashes(column(rows, "text"), normalised=True), seen)
    shared = int(found.sum())
    if not shared:
        return WithNotes([])
    numbers = row_numbers(rows)[found].tolist()
    return WithNotes(numbers, (f"WARNING: {shared:,} of these {len(rows):,} rows {_hold(shared)} the run trained or "
                               f"validated on ({rows_named(numbers, shown=8)}; all of them in the evaluation JSON's "
                               "rows_seen_in_training), alike but for case, spaces and HTML tags: the model has "
                               "seen them, so its scores on them are optimistic. tk run leaves such rows out of its "
                               "test split; score a copy without them for a clean figure.",))


def how_to_name_the_column(role: str, option: str, data: str) -> str:
    """The fix for a text or label column of ``data`` tk cannot find, in the words of the command reading it:
    tk evaluate names it with an option; tk export --check-data has none, so the column is renamed."""
    if option == "--data":
        return f"Name it with --{role}-column NAME."
    return (f"Rename that column of {data} to '{role}', or score the file with tk evaluate RUN --data {data} "
            f"--{role}-column NAME.")


def temperature_of(saved: Any) -> float | list | str | None:
    """The temperature tk run put in the saved head (config.json's tk_temperature); None where it put none;
    "unknown" for an export, whose ONNX graph keeps no config."""
    config = getattr(getattr(saved, "model", None), "config", None)
    return getattr(config, "tk_temperature", None) if config is not None else "unknown"


def _calibration(labels, probabilities) -> dict[str, Any]:
    """The saved model's ECE on the rows scored, with its interval (docs/metrics.md#calibration)."""
    labels = np.asarray(labels)
    found = calibration.ece_with_intervals(probabilities, probabilities, labels)
    multi_label = labels.ndim == 2
    return {"ece": found["ece_after"], "ece_ci": found.get("ece_after_ci"), "ece_bins": found["bins"],
            "miscalibrated_bins": calibration.miscalibrated_bins(*calibration.confidence_and_hits(
                probabilities, labels)),
            "selective": calibration.selective(probabilities, labels),  # to check a --min-confidence on these rows
            "highest_confidence": calibration.highest_confidence(probabilities, multi_label)}


def _rows(splits, task, source, data: str | None, split: str | None) -> WithNotes:
    """(the rows to score, the split's name, how to name them), and what to say about them."""
    if split is not None:
        if split not in splits:
            raise TkError(f"{source.describe()} has no '{split}' split. Splits: {', '.join(splits)}.")
        notes = ()
        if split == "test" and data is None:
            leaked = _leaked(splits, task)
            if leaked:
                notes = (f"WARNING: {leaked:,} of these {len(splits['test']):,} rows {_hold(leaked)} also in the "
                         "rows the run trained or validated on: the model has seen them, so these scores are "
                         "optimistic. Without --split, tk evaluate leaves them out, as tk run did.",)
        every = ", every row" if split == "test" and data is None else ""  # not only the rows tk run scored
        return WithNotes((splits[split], split, f"{split} split{every}"), notes)
    if "test" in splits:
        if data is None:
            scored = _run_test_rows(splits, task)
            return WithNotes((scored.value, "test", "test split, the rows tk run scored"), scored.notes)
        return WithNotes((splits["test"], "test", "test split"))
    if data is not None:  # one file given: it is the set to score
        return WithNotes((splits["train"], "all", f"all rows of {Path(data).name}"))

    held_out = make_splits(splits, task).splits["test"]
    return WithNotes((held_out, "test", "test (held out by the run)"),
                     ("The data has no test split: scoring the rows the run held out as its test split (same seed).",))


def _run_test_rows(splits, task) -> WithNotes:
    """The test rows ``tk run`` scored: the test split without the rows whose text is also in the training or
    validation data (and subsampled to eval_size, as the run drew it), so the numbers are the run's."""
    rows = make_splits(splits, task).splits["test"]
    if len(rows) == len(splits["test"]):
        return WithNotes(rows)
    leaked = len(splits["test"]) - len(rows) if task.eval_size is None else _leaked(splits, task)
    subsampled = len(splits["test"]) - leaked - len(rows)
    return WithNotes(rows, (f"Scoring the run's {len(rows):,} test rows, as tk run did: of the test split's "
                            f"{len(splits['test']):,}, " + " and ".join(
                                part for part in (f"{leaked:,} {_hold(leaked)} also in the rows it trained or "
                                                  "validated on" if leaked else "",
                                                  f"{subsampled:,} are beyond eval_size" if subsampled else "")
                                if part)
                            + ". --split test scores all of them.",))


def _hold(rows: int) -> str:
    return "holds a text" if rows == 1 else "hold texts"


def _leaked(splits, task) -> int:
    """Test rows whose text (normalised) is also in the run's training or validation rows."""
    return len(splits["test"]) - len(make_splits(splits, replace(task, eval_size=None)).splits["test"])


def _changed(recorded: dict | None, now: dict, source, splits) -> list[str]:
    if not isinstance(recorded, dict) or not recorded or same_fingerprint(recorded, splits, now):
        return []
    def short(value: dict) -> str:
        return ", ".join(f"{name} {v.get('sha256')} ({thousands(v.get('rows'))} rows)"
                         for name, v in sorted(value.items()))
    return [f"WARNING: {source.path} changed since the run: fingerprint at training {short(recorded)}; "
            f"now {short(now)}. The scores below are on the data as it is now"
            + (": the rows held out as the test split are drawn again from the changed file, so they may "
               "include rows the model trained on (optimistic scores) and are not the run's test rows."
               if "test" not in now else ".")]


def _manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.exists():
        return {}
    values = read_json(path)
    return values if isinstance(values, dict) else {}
