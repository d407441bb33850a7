"""Multi-label thresholds: one per label, tuned on the validation split, saved with the model.

For each label, every distinct validation probability ``s`` is a candidate:
predicting the label for the rows with ``p >= s``. The candidate with the
highest F1 of that label wins; on a tie the higher threshold (fewer labels
predicted). The saved threshold is the midpoint between the lowest
probability it predicts and the highest it does not (the widest margin on
either side; the lowest probability itself when every row is predicted), so
the validation rows get exactly the winning prediction. A label with fewer
than MIN_POSITIVES positive validation rows keeps 0.5 and is named: with one
or two positives the best F1 is noise, and often a threshold near 0 that puts
the label on almost every text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit.evaluation.multilabel import DEFAULT_THRESHOLD

CONFIG_KEY = "tk_thresholds"  # model/config.json: {label name: threshold}
MIN_POSITIVES = 5  # positive validation rows a label needs before its threshold is tuned


def best_threshold(truth, probabilities) -> float | None:
    """The threshold maximising F1 of one label over ``probabilities`` of rows with 0/1 ``truth``; None
    when no row is positive."""
    truth = np.asarray(truth) > 0.5
    probabilities = np.asarray(probabilities, dtype=np.float64)
    positives = int(truth.sum())
    if positives == 0:
        return None
    order = np.argsort(-probabilities, kind="stable")
    ranked, hits = probabilities[order], truth[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # last row of each run of equal values
    true_positives = np.cumsum(hits)[ends]
    f1 = 2 * true_positives / (ends + 1 + positives)  # 2 tp / (predicted + positives)
    end = ends[int(np.argmax(f1))]  # the first maximum: the highest threshold
    if end + 1 == len(ranked):
        return float(ranked[end])
    return float((ranked[end] + ranked[end + 1]) / 2)


def tune_thresholds(labels, probabilities, min_positives: int = MIN_POSITIVES) -> tuple[np.ndarray, list[int]]:
    """(a threshold per label, the labels left at 0.5 because fewer than ``min_positives`` rows have them)."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    thresholds = np.full(labels.shape[1], DEFAULT_THRESHOLD)
    untuned = []
    for j in range(labels.shape[1]):
        enough = int((labels[:, j] > 0.5).sum()) >= max(min_positives, 1)
        found = best_threshold(labels[:, j], probabilities[:, j]) if enough else None
        if found is None:
            untuned.append(j)
        else:
            thresholds[j] = found
    return thresholds, untuned


def describe(thresholds: np.ndarray, untuned: Sequence[int], label_names: Sequence[str]) -> str:
    tuned = ", ".join(f"{name} {t:.3f}" for j, (name, t) in enumerate(zip(label_names, thresholds))
                      if j not in untuned)
    line = f"Thresholds tuned on the validation split (each label's best F1): {tuned or 'none'}."
    if untuned:
        line += (f" Kept at {DEFAULT_THRESHOLD} (fewer than {MIN_POSITIVES} validation rows have them, too few "
                 "to tune on): "
                 + ", ".join(label_names[j] for j in untuned) + ".")
    return line


def save_to_config(config: Any, label_names: Sequence[str], thresholds: np.ndarray | None) -> None:
    """The thresholds in the model's config (saved in config.json), or none for a single-label model."""
    if thresholds is None:
        if hasattr(config, CONFIG_KEY):
            delattr(config, CONFIG_KEY)
        return
    setattr(config, CONFIG_KEY, {name: float(t) for name, t in zip(label_names, thresholds)})


def from_config(config: Any, label_names: Sequence[str]) -> np.ndarray:
    """The thresholds a model's config holds, in label order; 0.5 for labels it does not name."""
    saved = getattr(config, CONFIG_KEY, None) or {}
    return np.array([float(saved.get(name, DEFAULT_THRESHOLD)) for name in label_names])
