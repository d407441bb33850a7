"""Classification scores from confusion counts: numpy only, vectorised over leading axes.

Per-epoch metrics, the test report, its bootstrap and the majority-class
baseline all score through these functions, so they agree by construction.
Division by zero gives 0, as scikit-learn's ``zero_division=0`` does.
"""

from __future__ import annotations

import numpy as np


def confusion(labels, predictions, n_classes: int) -> np.ndarray:
    """Counts ``[..., true, predicted]`` over the last axis of ``labels`` / ``predictions`` (same shape).

    One ``bincount`` for every leading index at once, so a batch of bootstrap
    resamples costs O(rows), whatever the number of classes.
    """
    codes = np.asarray(labels) * n_classes + np.asarray(predictions)
    lead, rows = codes.shape[:-1], codes.shape[-1]
    flat = codes.reshape(-1, rows)
    cells = n_classes * n_classes
    offsets = (np.arange(flat.shape[0]) * cells)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * cells)
    return counts.reshape(*lead, n_classes, n_classes)


def class_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class tp, fp, fn, support, precision, recall, f1 (last axis: class)."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    predicted, support = counts.sum(axis=-2), counts.sum(axis=-1)
    fp, fn = predicted - tp, support - tp
    return {
        "tp": tp, "fp": fp, "fn": fn, "support": support,
        "precision": np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0),
        "recall": np.where(support > 0, tp / np.maximum(support, 1), 0.0),
        "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0),
    }


def headline(counts: np.ndarray, present: np.ndarray, positive: int | None) -> dict[str, np.ndarray]:
    """accuracy, f1, precision, recall, f1_macro, f1_weighted.

    Macro averages run over the ``present`` classes only (a boolean mask: the
    classes with a true row in the scored split), as scikit-learn does with
    ``labels=<present>``. With a ``positive`` class id (binary tasks), f1,
    precision and recall are that class's; otherwise they are macro averages.
    """
    per_class = class_scores(counts)
    total = counts.sum(axis=(-2, -1))
    present = np.asarray(present, dtype=bool)

    def macro(values):
        return values[..., present].mean(axis=-1) if present.any() else np.zeros(values.shape[:-1])

    support = per_class["support"]
    scores = {
        "accuracy": np.trace(counts, axis1=-2, axis2=-1) / np.maximum(total, 1),
        "f1_macro": macro(per_class["f1"]),
        "f1_weighted": (per_class["f1"] * support).sum(axis=-1) / np.maximum(support.sum(axis=-1), 1),
    }
    for name in ("f1", "precision", "recall"):
        scores[name] = per_class[name][..., positive] if positive is not None else macro(per_class[name])
    return scores


def metric_scores(labels, predictions, n_classes: int, present: np.ndarray, positive: int | None, axis: int = -1):
    """``headline`` straight from labels and predictions (``axis`` must be the last: scipy passes -1)."""
    assert axis in (-1, np.ndim(labels) - 1)
    return headline(confusion(labels, predictions, n_classes), present, positive)
