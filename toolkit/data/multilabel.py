"""Multi-label data (problem = "multi-label"): label lists to multi-hot rows, their checks, strata for splitting.

A row's raw label is a list of raw values (a single value counts as a list of
one; None as no label). Each value goes through the dataset's ``LabelMapping``
as in a single-label task; a value mapped to None is dropped from the row's
list, not the row. The ``label`` column then holds a float32 multi-hot vector
over ``dataset.labels``: the Hugging Face convention for
``problem_type="multi_label_classification"``. A row with no label is valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit.data.findings import Finding
from toolkit.data.labels import _fmt, _known, _lookup, _unknown_message
from toolkit.data.rows import column
from toolkit.errors import TkError
from toolkit.records import DatasetInfo, LabelMapping, WithNotes

RARE_LABEL_ROWS = 10  # as RARE_CLASS_ROWS: fewer positive rows than this in a split is a warning
TOP_PAIRS = 5


def is_list_feature(feature: Any) -> bool:
    """A ``datasets`` feature holding a list per row (``List`` in datasets 4+, ``Sequence`` before)."""
    import datasets

    kinds = tuple(k for k in (getattr(datasets, name, None) for name in ("List", "LargeList", "Sequence"))
                  if isinstance(k, type))
    return isinstance(feature, (*kinds, list))


def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]


def apply_multilabel_mapping(splits, dataset: DatasetInfo, mapping: LabelMapping,
                             every_label: bool = True) -> WithNotes:
    """Every split's raw label lists as multi-hot float32 rows over ``dataset.labels`` (the notes name the
    values that are no label of the task).

    ``every_label``: the training split must hold each label at least once (training); False for
    scoring a saved model.
    """
    import datasets

    size = len(dataset.labels)
    mapped, notes = {}, []
    for split_name, split in splits.items():
        values = {v for row in column(split, "label") for v in as_list(row)}
        unknown = sorted((v for v in values if not _known(v, mapping)), key=repr)
        if unknown:
            raise TkError(_unknown_message(dataset, split_name, split, unknown, mapping))
        dropped = sorted((v for v in values if _lookup(v, mapping) is None), key=repr)
        if dropped:
            notes.append(f"{split_name}: label values {_fmt(dropped)} are not labels of this task: left out of "
                         "the rows' label lists (the rows stay).")

        def multi_hot(batch):
            rows = np.zeros((len(batch["label"]), size), dtype=np.float32)
            for row, value in enumerate(batch["label"]):
                ids = [_lookup(v, mapping) for v in as_list(value)]
                rows[row, [i for i in ids if i is not None]] = 1.0
            return {"label": rows.tolist()}

        features = split.features.copy()
        features["label"] = datasets.Sequence(datasets.Value("float32"), length=size)
        mapped[split_name] = split.map(multi_hot, batched=True, features=features)
    result = datasets.DatasetDict(mapped)
    if every_label:
        check_labels(result, dataset)
    return WithNotes(result, tuple(notes))


def check_labels(splits, dataset: DatasetInfo) -> None:
    """Two labels or more, and each one on some training row: a label never seen cannot be learnt."""
    if len(dataset.labels) < 2:
        raise TkError(f"{dataset.name}: a multi-label task needs two labels or more; it has "
                      f"{list(dataset.labels)}. One yes/no label is a two-class task: problem = \"single-label\".")
    for split_name, split in splits.items():
        if len(split) == 0:
            raise TkError(f"{dataset.name}: the {split_name} split is empty after label mapping and filtering.")
    counts = label_matrix(splits["train"]).sum(axis=0)
    missing = [name for name, n in zip(dataset.labels, counts) if n == 0]
    if missing:
        raise TkError(f"{dataset.name}: no training row has the label {_fmt(missing)}, so it cannot be learnt. "
                      "Remove it from the labels (or label_columns), or add rows that have it.")


def label_matrix(split) -> np.ndarray:
    """The split's multi-hot labels as a (rows, labels) 0/1 array."""
    return np.asarray(column(split, "label"), dtype=np.float32).reshape(len(split), -1)


def label_set_names(row: np.ndarray, label_names: Sequence[str]) -> list[str]:
    return [label_names[i] for i in np.flatnonzero(row)]


# -- what tk check adds for multi-label data ------------------------------------------


def label_findings(split: str, labels: np.ndarray, label_names: Sequence[str]) -> list:
    """Per-label counts, labels too rare to learn or score, rows with no label, labels that co-occur."""
    rows, counts = len(labels), labels.sum(axis=0).astype(int)
    per_row = labels.sum(axis=1)
    summary = ", ".join(f"{name} {n:,} ({n / max(rows, 1):.1%})" for name, n in zip(label_names, counts))
    found = [Finding("label_counts", "info", f"{split}: rows per label: {summary}; {per_row.mean():.2f} labels "
                     f"per row on average", rows)]
    rare = [f"{name} ({n} rows)" for name, n in zip(label_names, counts) if n < RARE_LABEL_ROWS]
    if rare:
        found.append(Finding("rare_labels", "warning", f"{split}: {len(rare)} "
                             f"{'label is' if len(rare) == 1 else 'labels are'} on fewer than {RARE_LABEL_ROWS} "
                             f"rows: {', '.join(rare)}. Their thresholds are tuned on a handful of validation rows "
                             "(or none: then 0.5) and their scores have very wide intervals", len(rare)))
    always = [name for name, n in zip(label_names, counts) if rows and n == rows]
    if always:
        found.append(Finding("label_always_on", "warning", f"{split}: every row has {_fmt(always)}: the model "
                             "learns nothing from it", len(always)))
    empty = int((per_row == 0).sum())
    if empty:
        found.append(Finding("rows_without_label", "info", f"{split}: {empty:,} rows ({empty / rows:.1%}) have no "
                             "label (valid in a multi-label task: the model learns to say none)", empty))
    found += _cooccurrence(split, labels, label_names, counts)
    return found


def _cooccurrence(split: str, labels: np.ndarray, label_names: Sequence[str], counts: np.ndarray) -> list:
    together = labels.T.astype(np.int64) @ labels.astype(np.int64)
    first, second = np.triu_indices(len(label_names), k=1)
    shared = together[first, second]
    order = np.argsort(-shared, kind="stable")
    order = order[shared[order] > 0]
    if not len(order):
        return [Finding("label_cooccurrence", "info", f"{split}: no two labels occur on the same row", 0)]
    pairs = [f"{label_names[first[i]]} + {label_names[second[i]]}: {shared[i]:,} rows "
             f"({shared[i] / max(min(counts[first[i]], counts[second[i]]), 1):.0%} of the rarer label's rows)"
             for i in order[:TOP_PAIRS]]
    found = [Finding("label_cooccurrence", "info", f"{split}: {len(order):,} label pairs occur on the same rows; the "
                     f"{len(pairs)} most often:", int(len(order)), pairs)]
    twins = [f"{label_names[first[i]]} and {label_names[second[i]]}" for i in order
             if shared[i] == counts[first[i]] == counts[second[i]]]
    if twins:
        found.append(Finding("labels_always_together", "warning", f"{split}: these labels are always on the same "
                             f"rows, so no model can tell them apart: {'; '.join(twins[:TOP_PAIRS])}", len(twins)))
    return found


def label_set_keys(labels: np.ndarray) -> np.ndarray:
    """One integer per distinct label set (row), for the checks that compare labels of equal texts."""
    return np.unique(labels, axis=0, return_inverse=True)[1].reshape(-1) if len(labels) else np.zeros(0, np.int64)


# -- seeded splits ----------------------------------------------------------------------


def strata(labels: np.ndarray) -> np.ndarray:
    """A stratum per row for stratified splitting: its rarest label (by rows in ``labels``), or "no label".

    Stratifying on the rarest label keeps rare labels in every carved split (a common approximation
    of iterative stratification). Strata of one row are merged into one "other" stratum (into the largest
    stratum when that leaves it one row too).
    """
    counts = labels.sum(axis=0)
    rarity = np.where(labels > 0, counts[None, :], np.inf)
    keys = np.where(labels.any(axis=1), rarity.argmin(axis=1), labels.shape[1])
    _, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    single = sizes[inverse.reshape(-1)] < 2
    keys = np.where(single, -1, keys)
    if single.sum() == 1 and (~single).any():
        kept, kept_sizes = np.unique(keys[~single], return_counts=True)
        keys[single] = kept[kept_sizes.argmax()]
    return np.unique(keys, return_inverse=True)[1].reshape(-1)
