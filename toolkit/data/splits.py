"""Train, validation and test: disjoint, stratified (multi-label: by each row's rarest label), seeded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.config import TaskConfig
from toolkit.data.findings import plural
from toolkit.data.hashes import text_hashes
from toolkit.data.multilabel import is_list_feature, label_matrix, strata
from toolkit.data.rows import column, row_numbers, rows_named
from toolkit.errors import TkError

DEFAULT_TEST_SHARE = 0.2
MAX_VALIDATION = 500  # validation_size's default: a tenth of the training rows, at most this


CALIBRATION_ROWS = 2000  # spare training rows a temperature is fitted on: enough for a steady one, quick to score


def default_validation_size(train_rows: int) -> int:
    """A tenth of the training rows, at most 500: 500 for a training split of 5,000 rows or more."""
    return max(1, min(MAX_VALIDATION, train_rows // 10))


@dataclass(frozen=True)
class MadeSplits:
    """What ``make_splits`` made, and what it has to say about it."""

    splits: Any  # DatasetDict: train, validation, test
    notes: tuple[str, ...] = ()  # facts about the split, recorded with the run
    advice: tuple[str, ...] = ()  # what tk suggests (e.g. a smaller eval_size): printed, not recorded as a fact
    # for each of validation and test that lost rows whose text is also in the rows before it: {"rows_of": the
    # split as loaded that the row numbers count in, "rows": their numbers} (``rows.row_numbers``)
    left_out: dict[str, dict] = field(default_factory=dict)
    # training rows train_size left unused, less any text of train, validation or test: what tk run fits its
    # temperature on (up to CALIBRATION_ROWS), as they played no part in training or choosing the epoch
    spare: Any = None


def make_splits(splits, task: TaskConfig) -> MadeSplits:
    """Carve validation from the training split; subset train and test; never overlap."""
    import datasets

    notes: list[str] = []
    advice: list[str] = []

    train = splits["train"]
    spare = None
    held = ""  # where the test split was held out of the training rows: said in the errors below
    if "test" in splits:
        test = splits["test"]
    else:
        size = task.eval_size or max(1, int(len(train) * DEFAULT_TEST_SHARE))
        room = len(train) - rows_after_test(task, "validation" in splits)
        if task.eval_size is not None and size > room:
            raise TkError(f"task '{task.name}': eval_size = {size} leaves too few of the {len(train):,} training "
                          f"rows for validation and training. Lower eval_size to at most {max(room, 0):,}, "
                          "lower validation_size or train_size, or add rows.")
        train, test, said = _carve(train, size, task.data_seed, "test", task)
        notes += said
        why = "eval_size" if task.eval_size else f"a {DEFAULT_TEST_SHARE:.0%} share, as eval_size is not set"
        held = f" (left after holding out {len(test):,} as the test split: {why})"
        notes.append(f"The data has no test split: held out {len(test):,} training rows as the test split.")
        advice += _large_test_hint(len(test), task)
    if "validation" in splits:  # the data's own validation split (validation.* / dev.*): used, not carved
        rest, validation = train, splits["validation"]
        limit = MAX_VALIDATION if task.validation_size is None else task.validation_size
        if limit < len(validation):
            validation, said = _subset(validation, limit, task.data_seed, "validation_size", task)
            notes += said
        notes.append(f"Validation: the data's own validation split ({len(validation):,} rows).")
    elif task.validation_size is None:  # the default, sized to the rows there are (after the test hold-out)
        if len(train) < 2:
            raise TkError(f"task '{task.name}': the training split has {len(train)} row{held}: too few to carve a "
                          "validation split from. Add rows, or give a validation file (validation.*).")
        rest, validation, said = _carve(train, default_validation_size(len(train)), task.data_seed, "validation",
                                         task)
        notes += said
        notes.append(f"Validation: {len(validation):,} of the {len(train):,} training rows (validation_size default: "
                     f"a tenth, at most {MAX_VALIDATION}).")
    else:
        limit = len(train) - (task.train_size or 1)  # validation leaves train_size its rows
        if task.validation_size > limit > 0:
            raise TkError(f"task '{task.name}': cannot carve {task.validation_size:,} validation rows from "
                          f"{len(train):,} training rows{held}"
                          + (f" and keep train_size = {task.train_size}" if task.train_size else "")
                          + f". Lower validation_size to at most {limit:,}, or add training rows.")
        if task.validation_size >= len(train):  # and train_size takes them all too
            raise TkError(f"task '{task.name}': cannot carve {task.validation_size:,} validation rows from "
                          f"{len(train):,} training rows{held}. Lower validation_size and train_size: together "
                          f"at most {len(train):,}.")
        rest, validation, said = _carve(train, task.validation_size, task.data_seed, "validation", task)
        notes += said
    if task.train_size is not None:
        if task.train_size > len(rest):
            raise TkError(
                f"task '{task.name}': train_size = {task.train_size} is larger than the {len(rest):,} training "
                f"{plural(len(rest), 'row')} left after carving {len(validation):,} validation "
                f"{plural(len(validation), 'row')}{held}. Lower train_size or validation_size"
                + (" or eval_size." if held else ".")
            )
        if task.train_size < len(rest):
            parts, said = _stratified(rest, task.train_size, task.data_seed, "train_size", task)
            rest, spare = parts["test"], parts["train"]
            notes += said
        _two_classes(rest, task)
    if task.eval_size is not None and task.eval_size < len(test):
        test, said = _subset(test, task.eval_size, task.data_seed, "eval_size", task)
        notes += said
    elif task.eval_size is not None and task.eval_size > len(test):
        notes.append(f"eval_size = {task.eval_size} but the test split has {len(test):,} rows: using all of them "
                     "(less any whose text is also in training).")
    seen = text_hashes(column(rest, "text"), normalised=True)
    left_out: dict[str, dict] = {}
    test_from = "test" if "test" in splits else "train"  # where the test rows' numbers count
    if task.select_on == "test":
        notes.append("WARNING: select_on = \"test\": epochs are chosen on the test split, so the test metrics "
                     "are optimistic. Use select_on = \"validation\" for numbers you can trust.")
        kept = {"test": _without(test, seen, "test", "training data", test_from)}
    else:
        kept = {"validation": _without(validation, seen, "validation", "training data",
                                       "validation" if "validation" in splits else "train")}
        kept["test"] = _without(test, np.concatenate([seen, kept["validation"].keys]), "test",
                                "training or validation data", test_from)
    for name, without in kept.items():
        notes += without.notes
        if without.left_out is not None:
            left_out[name] = without.left_out
    test = kept["test"].rows
    validation = kept["validation"].rows if "validation" in kept else test
    for name, split in (("validation", validation), ("test", test)):
        _not_empty(name, split, task, left_out)
    if spare is not None:
        spare = _without(spare.select(range(min(len(spare), CALIBRATION_ROWS))),
                         np.concatenate([seen, *(without.keys for without in kept.values())]), "spare", "", "train").rows
    return MadeSplits(datasets.DatasetDict({"train": rest, "validation": validation, "test": test}), tuple(notes),
                      tuple(advice), left_out, spare if spare is not None and len(spare) else None)


def _not_empty(name: str, split, task: TaskConfig, left_out: dict[str, dict]) -> None:
    """A split with no rows left gives no number at all: refused before any training."""
    if len(split):
        return
    if name in left_out:
        gone = len(left_out[name]["rows"])
        raise TkError(f"task '{task.name}': no {name} rows are left: all {gone:,} repeat a text of the rows before "
                      "them and were left out (no leakage). Remove the repeated texts (tk check lists them), add "
                      "rows, or check text_column: a column of few distinct values is not the text.")
    raise TkError(f"task '{task.name}': the {name} split has no rows. Add rows to it.")


LEFT_OUT_SHOWN = 5  # row numbers a note names; left_out (the run's left_out.json) has them all


def _without(split, seen: np.ndarray, name: str, earlier: str, rows_of: str) -> Without:
    """Leave out rows whose text (normalised) also appears in an earlier split (``earlier`` names it): no leakage.
    The note names the first few by their numbers in the split as loaded (``rows_of``); ``left_out`` has them all.
    """
    keys = text_hashes(column(split, "text"), normalised=True)
    seen_before = np.isin(keys, seen)
    keep = np.flatnonzero(~seen_before)
    if not seen_before.any():
        return Without(split.select(keep), keys[keep])
    gone = np.sort(row_numbers(split)[seen_before])
    return Without(split.select(keep), keys[keep],
                   (f"{name}: left out {len(gone):,} {plural(len(gone), 'row')} whose text is also in the {earlier}: "
                    f"{rows_of} {rows_named(gone, LEFT_OUT_SHOWN)}.",),
                   {"rows_of": rows_of, "rows": gone.tolist()})


@dataclass(frozen=True)
class Without:
    """A split without the rows whose text an earlier split holds: the rows kept, their text hashes, what to say,
    and the rows left out (None when none were)."""

    rows: Any
    keys: np.ndarray
    notes: tuple[str, ...] = ()
    left_out: dict[str, Any] | None = None


def rows_after_test(task: TaskConfig, own_validation: bool) -> int:
    """The training rows a held-out test split must leave: train_size's (at least 1), and validation's where
    it is carved (validation_size, or its default: a tenth of what is left, at least 1, at most 500)."""
    train = task.train_size or 1
    if own_validation:
        return train
    if task.validation_size is not None:
        return train + task.validation_size
    left = max(train + 1, int(train / 0.9) - 2)  # the fewest rows whose default validation leaves train_size
    while left - default_validation_size(left) < train:
        left += 1
    return left


def _large_test_hint(rows: int, task: TaskConfig) -> list[str]:
    """A held-out test split far larger than train_size takes longer to score than training takes: say how to
    hold out fewer, and what that costs in precision."""
    if task.eval_size is not None or task.train_size is None or rows <= max(10 * task.train_size, 2 * LARGE_TEST):
        return []
    return [f"Scoring the {rows:,} held-out test rows may take longer than training on train_size = "
            f"{task.train_size}; eval_size = {LARGE_TEST} holds out {LARGE_TEST:,} (accuracy's 95% interval then at "
            "most +/-1.4 points)."]


LARGE_TEST = 5000
CARVED_BY = {"validation": "validation_size", "test": "eval_size"}  # the key that sizes each carved split


def _two_classes(train, task: TaskConfig) -> None:
    """A single-label training subset (train_size) of one class trains a model that answers that class always."""
    if is_list_feature(train.features["label"]) or len(train) == 0:
        return
    classes = sorted(set(column(train, "label")), key=str)
    if len(classes) < 2:
        names = getattr(train.features["label"], "names", None)  # a ClassLabel names its ids
        named = f"'{names[classes[0]]}'" if names else f"id {classes[0]}"
        raise TkError(f"task '{task.name}': train_size = {task.train_size} leaves training rows of one class only "
                      f"(class {named}); a classifier needs at least two classes. Raise train_size (each class "
                      "gets its share of the rows).")


def _carve(split, size: int, seed: int, what: str, task: TaskConfig):
    """Split off ``size`` rows, stratified by label; returns (rest, carved, what to say about it)."""
    if size >= len(split):
        raise TkError(f"task '{task.name}': cannot carve {size:,} {what} rows from {len(split):,} training rows. "
                      f"Lower {CARVED_BY[what]} below {len(split):,}, or add training rows.")
    parts, said = _stratified(split, size, seed, what, task)
    return parts["train"], parts["test"], said


def _subset(split, size: int, seed: int, key: str, task: TaskConfig):
    """(``size`` rows of ``split``, stratified by label; what to say about it)."""
    parts, said = _stratified(split, size, seed, key, task)
    return parts["test"], said


def stratified_sample(split, size: int, task: TaskConfig):
    """``size`` rows of ``split``, stratified and seeded (``data_seed``) as train_size draws tk run's, and the
    notes the draw makes."""
    parts, said = _stratified(split, size, task.data_seed, "train_size", task)
    return parts["test"], said


def _stratified(split, size: int, seed: int, key: str, task: TaskConfig):
    if is_list_feature(split.features["label"]):  # multi-label: stratified by each row's rarest label
        import datasets

        keys = strata(label_matrix(split))
        split = split.add_column(STRATUM, keys.tolist()).cast_column(
            STRATUM, datasets.ClassLabel(num_classes=int(keys.max()) + 1 if len(keys) else 1))
        parts, said = _stratified_by(split, STRATUM, size, seed, key, task)
        return parts.remove_columns(STRATUM), said
    return _stratified_by(split, "label", size, seed, key, task)


STRATUM = "tk_stratum"


def _stratified_by(split, name: str, size: int, seed: int, key: str, task: TaskConfig):
    """``split.train_test_split(test_size=size, seed=seed, stratify_by_column=name)``: the same rows, drawn by
    the same ``datasets`` function, from the column read at once (``train_test_split`` reads it row by row,
    seconds on Sentiment140's 1.6M rows). Classes of one row, which cannot be stratified, are drawn together as
    one stratum, so every other class keeps its share; the notes returned with the parts say so, and name a
    fallback to a plain seeded shuffle where even that cannot be stratified."""
    import datasets
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    labels = np.asarray(column(split, name))
    keys, lone = lone_classes_merged(labels)
    if len(np.unique(keys)) < 2:  # one class besides single rows: nothing to stratify (datasets' seeded shuffle)
        return split.train_test_split(test_size=size, seed=seed), []
    said = []
    if lone.size and name == "label":
        names = split.features[name].names if hasattr(split.features[name], "names") else None
        shown = ", ".join(repr(names[c]) if names else str(c) for c in lone[:5]) + (", ..." if lone.size > 5 else "")
        said.append(f"{key}: {lone.size} {'class' if lone.size == 1 else 'classes'} of a single row ({shown}) cannot be "
                    "stratified, so they were drawn together as one group; every other class is stratified.")
    try:
        rest, taken = next(stratified_shuffle_split_generate_indices(keys, len(split) - size, size,
                                                                     rng=np.random.default_rng(seed)))
    except ValueError as error:
        if "Minimum class count" in str(error) or "should be greater or equal" in str(error):
            said.append(f"{key}: {size:,} rows drawn by a seeded shuffle, not stratified: {len(np.unique(keys)):,} "
                        f"classes (or groups) do not fit in {min(size, len(split) - size):,} rows, so some classes "
                        "may be missing from it.")
            return split.train_test_split(test_size=size, seed=seed), said
        raise TkError(f"task '{task.name}': cannot take {size:,} rows for {key}: {error}") from None
    return datasets.DatasetDict({"train": split.select(rest), "test": split.select(taken)}), said


def lone_classes_merged(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a stratum per row, the classes of a single row): each such class joins one group of them (or, when that
    group would be one row too, the largest class), so the rest can still be stratified."""
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    lone = counts[inverse] < 2
    if not lone.any():
        return inverse, np.array([], dtype=values.dtype)
    keys = np.where(lone, len(values), inverse)  # one new stratum for every lone row
    if lone.sum() == 1 and (~lone).any():
        keys[lone] = counts.argmax()
    return keys, values[counts < 2]
