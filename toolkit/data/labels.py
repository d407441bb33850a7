"""Applying a dataset's label mapping, and refusing data that would train a broken model."""

from __future__ import annotations

import re
from typing import Any

from toolkit.data.rows import column, row_numbers
from toolkit.errors import TkError
from toolkit.records import DatasetInfo, DataSource, LabelMapping, WithNotes

MAX_EXAMPLES = 5


def apply_label_mapping(splits, dataset: DatasetInfo, mapping: LabelMapping, every_class: bool = True,
                        source: DataSource | None = None, from_data: bool = False,
                        said: tuple[str, ...] = (), scoring: bool = False) -> WithNotes:
    """Map raw labels to class ids in every split, dropping values mapped to None on purpose (the notes say so).

    ``every_class``: check the classes for training (``check_classes``); False for scoring a saved model.
    ``source``, ``from_data`` (the label names came from the data) and ``said`` (what loading said) shape
    check_classes' messages. ``scoring``: the labels are a saved model's, so a value outside them is one the
    model was never trained on.
    """
    import datasets

    _check_mapping_targets(dataset, mapping)
    mapped, notes = {}, []
    for split_name, split in splits.items():
        values = split.unique("label")
        unknown = [v for v in values if not _known(v, mapping)]
        if unknown:
            raise TkError(_unknown_message(dataset, split_name, split, unknown, mapping, scoring))
        dropped = [v for v in values if _lookup(v, mapping) is None]
        if dropped:
            before = len(split)
            split = split.filter(lambda batch: [_lookup(v, mapping) is not None for v in batch["label"]],
                                 batched=True, desc=None)
            notes.append(f"{split_name}: left out {before - len(split):,} rows labelled {_fmt(dropped)} "
                         f"(not a class of this {len(dataset.labels)}-class task).")
        features = split.features.copy()
        features["label"] = datasets.ClassLabel(names=list(dataset.labels))
        split = split.map(lambda batch: {"label": [_lookup(v, mapping) for v in batch["label"]]},
                          batched=True, features=features)
        mapped[split_name] = split
    result = datasets.DatasetDict(mapped)
    if every_class:
        check_classes(result, dataset, source, from_data, (*said, *notes))
    return WithNotes(result, tuple(notes))


def check_classes(splits, dataset: DatasetInfo, source: DataSource | None = None, from_data: bool = False,
                  said: tuple[str, ...] = ()) -> None:
    """Training must hold every class, and at least two; a class in another split that training never saw
    is refused, with its rows quoted. A validation or test split lacking classes is fine here: the data
    checks warn (tk check, tk run) and the metrics list the classes they could not score (classes_absent).
    """
    import numpy as np

    where = f"{dataset.name} from {source.describe()}" if source is not None else dataset.name
    for split_name, split in splits.items():
        if len(split) == 0:
            raise TkError(f"{where}: the {split_name} split is empty after label mapping and filtering.")
    counts = np.bincount(np.asarray(column(splits["train"], "label"), dtype=np.int64), minlength=len(dataset.labels))
    train = "the training split"  # a single file's name is in ``where``
    if np.count_nonzero(counts) < 2:
        only = int(np.argmax(counts))
        raise TkError(f"{where}: every training row is labelled '{dataset.labels[only]}' ({counts[only]:,} rows); "
                      "a classifier needs at least two classes. Check the file and the label mapping.")
    for split_name, split in splits.items():
        if split_name == "train":
            continue
        unseen = sorted(set(split.unique("label")) - set(np.flatnonzero(counts).tolist()))
        if unseen:
            raise TkError(_unseen_message(where, dataset, split_name, split, unseen, train, from_data, said))
    missing = [dataset.labels[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        have = ", ".join(f"{dataset.labels[i]}: {counts[i]:,}" for i in np.flatnonzero(counts))
        fix = ("Add training rows of that class, or leave it out of the task's labels key." if from_data else
               "Check the label mapping and the data.")
        raise TkError(f"{where}: {train} has no rows of class {_fmt(missing)} (it has {have}), so the model "
                      f"cannot learn it. {fix}")


def _unseen_message(where, dataset, split_name, split, unseen, train, from_data, said) -> str:
    names = [dataset.labels[i] for i in unseen]
    wanted = set(unseen)
    rows = [row for row, label in enumerate(column(split, "label")) if label in wanted]
    numbers = row_numbers(split)
    quoted = ("row " if len(rows) == 1 else "rows ") + ", ".join(
        f"{numbers[row]} {_excerpt(split[row]['text'])}" for row in rows[:MAX_EXAMPLES])
    fix = (f"Fix those rows' labels, or add training rows of {'that class' if len(names) == 1 else 'those classes'}."
           if from_data else "Fix those rows, or check the plugin's tk_label_mapping.")
    loading = f" Loading said: {' '.join(said)}" if said else ""  # e.g. which file each split came from
    count = f"{len(rows):,} {'row' if len(rows) == 1 else 'rows'}"
    return (f"{where}: the {split_name} split has {count} of class {_fmt(names)}, which no row of {train} "
            f"has, so the model cannot learn {'it' if len(names) == 1 else 'them'}: {quoted}. {fix}{loading}")


def _excerpt(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_mapping_targets(dataset: DatasetInfo, mapping: LabelMapping) -> None:
    bad = [cid for cid in mapping.ids.values() if cid is not None and not 0 <= cid < len(dataset.labels)]
    if bad:
        raise TkError(f"{dataset.plugin}: the label mapping of '{dataset.name}' points at class ids {bad}, "
                      f"but the dataset declares {len(dataset.labels)} labels {list(dataset.labels)}.")


def _lookup(value: Any, mapping: LabelMapping) -> int | None:
    if value in mapping.ids:
        return mapping.ids[value]
    return mapping.ids.get(_as_int(value))


def _known(value: Any, mapping: LabelMapping) -> bool:
    return value in mapping.ids or _as_int(value) in mapping.ids


def _as_int(value: Any) -> Any:
    """"4" in a CSV read as text means 4."""
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        return int(value)  # isdecimal, not isdigit: int("²") fails
    if isinstance(value, str) and re.fullmatch(r"-?\d+\.0*", value.strip()):
        return int(float(value))  # "4.0": a number column read as text because of one word in it
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unknown_message(dataset, split_name, split, unknown, mapping, scoring: bool = False) -> str:
    unknown_set = set(map(repr, unknown))
    examples, count = [], 0
    for row, value in zip(row_numbers(split), column(split, "label")):
        values = value if isinstance(value, list) else [value]  # a multi-label row holds a list
        if any(repr(v) in unknown_set for v in values):
            count += 1
            if len(examples) < MAX_EXAMPLES:
                examples.append(f"row {row}: {value!r}")
    if scoring:  # a saved model's labels: no plugin's mapping to extend
        return (f"{dataset.name}: {count:,} {'row has a label' if count == 1 else 'rows have labels'} the model "
                f"was not trained on: {_fmt(unknown)} (e.g. "
                f"{'; '.join(examples)}). The model's labels: {_fmt(list(mapping.ids))}. A model is scored only on "
                "labels it knows: fix those rows, or leave them out of the file.")
    return (f"{dataset.name}: the {split_name} split has label values outside the mapping: {_fmt(unknown)} "
            f"(e.g. {'; '.join(examples)}). Known values: {_fmt(list(mapping.ids))}. "
            "Fix those rows, or map the values in the plugin's tk_label_mapping.")


def _fmt(values) -> str:
    return ", ".join(repr(v) for v in list(values)[:10])
