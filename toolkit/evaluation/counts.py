"""Classification scores from per-class counts: numpy only, vectorised over leading axes.

Per-epoch metrics, the test report, its bootstrap and the majority-class
baseline all score through these functions, so they agree by construction.
Division by zero gives 0, as scikit-learn's ``zero_division=0`` does.
"""

from __future__ import annotations

import numpy as np


def class_counts(labels, predictions, n_classes: int) -> dict[str, np.ndarray]:
    """Per-class ``tp``, ``predicted`` and ``support`` over the last axis of ``labels`` / ``predictions``.

    Three ``bincount`` calls for every leading index at once (a batch of
    bootstrap resamples), each O(rows) with an O(classes) result per index.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    lead = labels.shape[:-1]
    batches = int(np.prod(lead, dtype=np.int64))
    offsets = (np.arange(batches) * n_classes).reshape(*lead, 1)

    def count(ids, where=None):
        ids = (ids + offsets) if where is None else (ids + offsets)[where]
        return np.bincount(ids.ravel(), minlength=batches * n_classes).reshape(*lead, n_classes)

    return {"tp": count(labels, labels == predictions), "predicted": count(predictions), "support": count(labels)}


def class_scores(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-class tp, fp, fn, support, precision, recall, f1 (last axis: class) from ``class_counts``."""
    tp, predicted, support = counts["tp"], counts["predicted"], counts["support"]
    fp, fn = predicted - tp, support - tp
    return {
        "tp": tp, "fp": fp, "fn": fn, "support": support,
        "precision": np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0),
        "recall": np.where(support > 0, tp / np.maximum(support, 1), 0.0),
        "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0),
    }


def headline(counts: dict[str, np.ndarray], positive: int | None = None) -> dict[str, np.ndarray]:
    """accuracy, f1, precision, recall, f1_macro, f1_weighted.

    Macro averages run over the classes present in the scored rows (a true
    row each), as scikit-learn does with ``labels=<present>``; with leading
    axes, each index (a bootstrap resample) over its own present classes.
    With a ``positive`` class id (binary tasks), f1, precision and recall are
    that class's; otherwise they are macro averages.
    """
    per_class = class_scores(counts)
    support = per_class["support"]
    total = support.sum(axis=-1)

    def macro(values):
        return present_mean(values, support > 0)

    scores = {
        "accuracy": counts["tp"].sum(axis=-1) / np.maximum(total, 1),
        "f1_macro": macro(per_class["f1"]),
        "f1_weighted": (per_class["f1"] * support).sum(axis=-1) / np.maximum(support.sum(axis=-1), 1),
    }
    for name in ("f1", "precision", "recall"):
        scores[name] = per_class[name][..., positive] if positive is not None else macro(per_class[name])
    return scores


def metric_scores(labels, predictions, n_classes: int, positive: int | None = None, axis: int = -1):
    """``headline`` straight from labels and predictions (``axis`` must be the last: scipy passes -1)."""
    assert axis in (-1, np.ndim(labels) - 1)
    return headline(class_counts(labels, predictions, n_classes), positive)


def present_mean(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The mean over the last axis of the entries ``present`` marks, per leading index (0 where none is).

    The bootstrap scores each resample as the estimate scores the data (the
    plug-in rule): a class a resample happens to lack is left out of its
    average, not scored 0, which would pull every resample below the estimate
    when tiny classes are many."""
    chosen = np.broadcast_to(present, values.shape)
    return np.where(chosen, values, 0.0).sum(axis=-1) / np.maximum(chosen.sum(axis=-1), 1)
