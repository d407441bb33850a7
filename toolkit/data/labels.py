"""Applying a dataset's label mapping, and refusing data that would train a broken model."""

from __future__ import annotations

from collections import Counter
from typing import Any

from toolkit.errors import TkError
from toolkit.records import DatasetInfo, LabelMapping

MAX_EXAMPLES = 5


def apply_label_mapping(splits, dataset: DatasetInfo, mapping: LabelMapping, notes: list[str],
                        every_class: bool = True):
    """Map raw labels to class ids in every split, dropping values mapped to None on purpose.

    ``every_class``: each split must hold every class (training); False for scoring a saved model.
    """
    import datasets

    _check_mapping_targets(dataset, mapping)
    mapped = {}
    for split_name, split in splits.items():
        values = split.unique("label")
        unknown = [v for v in values if not _known(v, mapping)]
        if unknown:
            raise TkError(_unknown_message(dataset, split_name, split, unknown, mapping))
        dropped = [v for v in values if _lookup(v, mapping) is None]
        if dropped:
            before = len(split)
            split = split.filter(lambda batch: [_lookup(v, mapping) is not None for v in batch["label"]],
                                 batched=True, desc=None)
            notes.append(f"{split_name}: left out {before - len(split)} rows labelled {_fmt(dropped)} "
                         f"(not a class of this {len(dataset.labels)}-class task).")
        features = split.features.copy()
        features["label"] = datasets.ClassLabel(names=list(dataset.labels))
        split = split.map(lambda batch: {"label": [_lookup(v, mapping) for v in batch["label"]]},
                          batched=True, features=features)
        mapped[split_name] = split
    result = datasets.DatasetDict(mapped)
    if every_class:
        check_classes(result, dataset)
    return result


def check_classes(splits, dataset: DatasetInfo) -> None:
    """Each split must hold every class; training on one class is refused."""
    for split_name, split in splits.items():
        if len(split) == 0:
            raise TkError(f"{dataset.name}: the {split_name} split is empty after label mapping and filtering.")
        counts = Counter(split["label"])
        if split_name == "train" and len(counts) < 2:
            only = dataset.labels[next(iter(counts))]
            raise TkError(f"{dataset.name}: every training row is labelled '{only}' ({counts[next(iter(counts))]} rows); "
                          "a classifier needs at least two classes. Check the file and the label mapping.")
        missing = [dataset.labels[i] for i in range(len(dataset.labels)) if counts[i] == 0]
        if missing:
            have = ", ".join(f"{dataset.labels[i]}: {n}" for i, n in sorted(counts.items()))
            raise TkError(f"{dataset.name}: the {split_name} split has no rows of class {_fmt(missing)} "
                          f"(it has {have}). Check the label mapping and the data.")


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
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unknown_message(dataset, split_name, split, unknown, mapping) -> str:
    unknown_set = set(map(repr, unknown))
    examples = []
    for row, value in enumerate(split["label"]):
        if repr(value) in unknown_set:
            examples.append(f"row {row}: {value!r}")
            if len(examples) == MAX_EXAMPLES:
                break
    return (f"{dataset.name}: the {split_name} split has label values outside the mapping: {_fmt(unknown)} "
            f"(e.g. {'; '.join(examples)}). Known values: {_fmt(list(mapping.ids))}. "
            "Fix those rows, or map the values in the plugin's tk_label_mapping.")


def _fmt(values) -> str:
    return ", ".join(repr(v) for v in list(values)[:10])
