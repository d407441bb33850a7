"""What each JSON file of a run folder holds, key by key: the run loader checks a run against it.

Each entry is a test of one top-level key's value as tk writes it. A key that is absent is left to
the commands (a run saved by an older tk lacks newer keys); a key that is present with a value of
another kind is damage, named by the loader before any command reads it. Keys no entry names are
not checked: a new key needs its entry here as soon as a command reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def share(value: Any) -> bool:
    """A proportion: accuracy, F1, precision, recall."""
    return number(value) and 0 <= value <= 1


def text(value: Any) -> bool:
    return isinstance(value, str)


def flag(value: Any) -> bool:
    return isinstance(value, bool)


def table(value: Any) -> bool:
    return isinstance(value, dict)


def optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def either(*checks: Check) -> Check:
    return lambda value: any(check(value) for check in checks)


def list_of(check: Check, at_least: int = 0) -> Check:
    return lambda value: isinstance(value, list) and len(value) >= at_least and all(check(v) for v in value)


def table_of(check: Check) -> Check:
    return lambda value: isinstance(value, dict) and all(check(v) for v in value.values())


def interval(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(number, value))


def epoch_row(value: Any) -> bool:
    return table(value) and integer(value.get("epoch", 1)) and number(value.get("validation_loss"))


def step_point(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(number, value))


CONFIG: dict[str, Check] = {
    "task": lambda value: table(value) and text(value.get("name")), "engine": text, "data": optional(text),
    "data_as_given": optional(text), "data_source": text, "data_fingerprint": optional(table),
    "base": optional(text), "start_again": text, "notes": list_of(text),
}

MANIFEST: dict[str, Check] = {
    "task": table, "labels": list_of(text, at_least=1), "data_source": text, "data_path": optional(text),
    "source_fingerprint": optional(table_of(table)), "model_source": text, "base_model": optional(table),
    "dataset_hub_id": optional(text), "data_fingerprint": optional(table_of(table)), "seed": integer,
    "notes": list_of(text), "data_checks": table, "engine": text, "training": table, "exactly_reproducible": flag,
    "versions": table_of(optional(text)),
}

METRICS: dict[str, Check] = {
    "accuracy": share, "f1": share, "precision": share, "recall": share, "f1_macro": share, "f1_micro": share,
    "precision_macro": share, "recall_macro": share, "hamming_loss": share, "n": integer, "average": text,
    "positive_label": optional(text), "classes_absent": list_of(text), "per_class": table_of(either(table, number)),
    "confusion_matrix": optional(list_of(list_of(number))), "baseline": optional(table), "warnings": list_of(text),
    "calibration": optional(table), "task": text, "split": text, "problem": text, "select_metric": text,
    "select_on": text, "class_weights": optional(either(text, table_of(number))), "best_epoch": integer,
    "epochs_run": integer, "train_seconds": number, "eval_seconds": number, "history": list_of(epoch_row, 1),
    "step_loss": list_of(step_point), "long_text": table, "diagnosis": table, "exactly_reproducible": flag,
    "underfitting": table, "linear_baseline": optional(table), "worst_mistakes": list_of(table),
}


def check_of(shape: dict[str, Check], key: str) -> Check | None:
    """The entry for ``key``; the intervals and their notes go by their names' endings."""
    if key in shape:
        return shape[key]
    if shape is METRICS and key.endswith("_ci"):
        return optional(interval)
    if shape is METRICS and key.endswith(("_ci_method", "_ci_note")):
        return text
    return None


def wrong_keys(values: dict[str, Any], shape: dict[str, Check]) -> list[str]:
    """The keys of ``values`` that are present but not of the kind tk writes."""
    return [key for key, value in values.items() if (check := check_of(shape, key)) is not None and not check(value)]
