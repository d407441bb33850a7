"""The metrics stage: every plugin's tk_compute_metrics answer, merged into one dict.

A test report (``confidence=True``) is then compared with the majority-class
baseline (``toolkit.evaluation.baseline``): ``baseline`` and ``warnings``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.config import origin_of
from toolkit.errors import TkError, suggest
from toolkit.evaluation.baseline import compare_multilabel, compare_with_baseline
from toolkit.evaluation.multilabel import DEFAULT_THRESHOLD, predict_sets
from toolkit.plugins import answers, wrong_answer


def require_metrics(pm) -> None:
    """A run or evaluation with no tk_compute_metrics plugin would end 'complete' with no scores."""
    if not pm.hook.tk_compute_metrics.get_hookimpls():
        raise TkError("No plugin computes metrics (tk_compute_metrics): is the built-in 'metrics' plugin disabled? "
                      "Remove it from TK_DISABLE_PLUGINS or install a metrics plugin.")


def score(pm, labels, probabilities: np.ndarray, label_names: tuple[str, ...], confidence: bool = False,
          positive_label: int | None = None, baseline_label: Any = None,
          baseline_source: str = "training split", thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """``positive_label``: a binary task's positive class id (None: the second label).
    ``baseline_label``: the class the baseline always predicts (None: the scored split's most frequent).

    Multi-hot ``labels`` (an (n, labels) array) are a multi-label task: ``thresholds`` per label (None: 0.5)
    make the predictions, and ``baseline_label`` is the baseline's multi-hot answer."""
    require_metrics(pm)
    labels = np.asarray(labels)
    multi_label = labels.ndim == 2
    if multi_label and thresholds is None:
        thresholds = np.full(len(label_names), DEFAULT_THRESHOLD)

    merged: dict[str, Any] = {}
    # In registration order: later plugins add or override.
    for plugin, result in answers(pm.hook.tk_compute_metrics, labels=labels, probabilities=probabilities,
                                  label_names=label_names, confidence=confidence, positive_label=positive_label,
                                  problem="multi-label" if multi_label else "single-label",
                                  thresholds=thresholds if multi_label else None):
        if result is not None and not (isinstance(result, dict) and all(isinstance(k, str) for k in result)):
            raise wrong_answer("tk_compute_metrics", plugin, result, "a dict of metric names to values, or None")
        merged.update(result or {})
    if confidence and multi_label:
        found = compare_multilabel(labels, predict_sets(probabilities, thresholds), label_names, baseline_label,
                                   baseline_source)
        found["warnings"] = merged.get("warnings", []) + found.get("warnings", [])
        merged.update(found)
    elif confidence:
        found = compare_with_baseline(labels, np.asarray(probabilities).argmax(axis=1), label_names,
                                      baseline_label, baseline_source)
        found["warnings"] = merged.get("warnings", []) + found.get("warnings", [])  # a plugin's come first
        merged.update(found)
    return merged


def positive_class(task, label_names: tuple[str, ...], where: str | None = None) -> int | None:
    """The task's ``positive_label`` as a class id; None when unset. A wrong name is a TkError naming the labels."""
    value = task.positive_label
    if value is None:
        return None
    where = origin_of(task, "positive_label", where)  # --set, when it gave the value
    if task.multi_label:
        raise TkError(f"{where}, key 'positive_label': a multi-label task scores every label on its own (each its "
                      "own precision, recall and F1); there is no positive class. Remove the key.")
    labels = ", ".join(repr(name) for name in label_names)
    if len(label_names) != 2:
        raise TkError(f"{where}, key 'positive_label': only two-class tasks have a positive class; dataset "
                      f"'{task.dataset}' has {len(label_names)} labels ({labels}). Remove the key.")
    if value not in label_names:
        raise TkError(f"{where}, key 'positive_label': {value!r} is not a label of dataset '{task.dataset}'. "
                      f"Its labels: {labels}.{suggest(value, label_names)}")
    return label_names.index(value)
