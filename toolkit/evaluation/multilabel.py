"""Multi-label scores from per-label counts: numpy only, vectorised over resamples for the bootstrap.

A prediction is the set of labels whose probability reaches that label's
threshold (``p >= threshold``). Per row and label, a cell is a true positive,
a false positive, a false negative or a true negative; summed over the rows
(or over a resample's rows, with weights) they give every score, so the
per-epoch numbers, the test report, its bootstrap and the baseline agree by
construction. They equal scikit-learn's on multilabel-indicator arrays with
``zero_division=0``:

- micro precision / recall / F1 pool the counts of every label
  (``f1_score(y, p, average="micro")``); micro F1 is the headline ``f1``;
- macro averages run over the labels *present* in the scored rows (at least
  one true row), as the single-label macro averages do
  (``f1_score(y, p, average="macro", labels=<present>)``);
- subset accuracy is the share of rows whose whole label set is right
  (``accuracy_score(y, p)``); Hamming loss the share of wrong (row, label)
  cells (``hamming_loss(y, p)``).
"""

from __future__ import annotations

import numpy as np

from toolkit.evaluation.counts import present_mean

HEADLINE = ("f1", "precision", "recall", "f1_macro", "accuracy", "hamming_loss")
DEFAULT_THRESHOLD = 0.5


def predict_sets(probabilities, thresholds=None) -> np.ndarray:
    """(rows, labels) booleans: each label whose probability reaches its threshold (0.5 when None)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    limit = DEFAULT_THRESHOLD if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return probabilities >= limit


def row_counts(labels, predictions) -> dict[str, np.ndarray]:
    """Per row: ``tp``, ``fp``, ``fn`` per label ((rows, labels)), ``exact`` (the whole set right) and
    ``wrong`` (wrong labels), as floats ready to be summed with resample weights."""
    truth, predicted = np.asarray(labels) > 0.5, np.asarray(predictions, dtype=bool)
    tp, fp, fn = truth & predicted, ~truth & predicted, truth & ~predicted
    wrong = (fp | fn).sum(axis=1)
    return {"tp": tp.astype(np.float64), "fp": fp.astype(np.float64), "fn": fn.astype(np.float64),
            "exact": (wrong == 0).astype(np.float64), "wrong": wrong.astype(np.float64)}


def summed(per_row: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Counts over the rows; ``weights`` (..., rows) say how often each row is in each resample."""
    rows = len(per_row["exact"])
    if weights is None:
        weights = np.ones(rows)
    return {"tp": weights @ per_row["tp"], "fp": weights @ per_row["fp"], "fn": weights @ per_row["fn"],
            "exact": weights @ per_row["exact"], "wrong": weights @ per_row["wrong"], "rows": weights.sum(axis=-1)}


def resample_weights(index: np.ndarray, rows: int) -> np.ndarray:
    """How often each of ``rows`` rows appears in each resample of row indices ``index`` (..., m)."""
    index = np.asarray(index)
    lead = index.shape[:-1]
    batches = int(np.prod(lead, dtype=np.int64))
    offsets = (np.arange(batches) * rows).reshape(*lead, 1)
    counts = np.bincount((index + offsets).ravel(), minlength=batches * rows)
    return counts.reshape(*lead, rows).astype(np.float64)


def _ratio(top, bottom):
    return np.where(bottom > 0, top / np.maximum(bottom, 1e-300), 0.0)


def scores(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every multi-label score from ``summed`` counts (leading axes: resamples); per-label ones as ``label_*``.

    Macro averages run over the labels present in the scored rows, per resample (``counts.present_mean``)."""
    tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
    per_label = {"label_precision": _ratio(tp, tp + fp), "label_recall": _ratio(tp, tp + fn),
                 "label_f1": _ratio(2 * tp, 2 * tp + fp + fn)}

    def macro(values):
        return present_mean(values, tp + fn > 0)

    all_tp, all_fp, all_fn = tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1)
    labels = tp.shape[-1]
    return {
        "f1": _ratio(2 * all_tp, 2 * all_tp + all_fp + all_fn),
        "precision": _ratio(all_tp, all_tp + all_fp),
        "recall": _ratio(all_tp, all_tp + all_fn),
        "f1_macro": macro(per_label["label_f1"]),
        "precision_macro": macro(per_label["label_precision"]),
        "recall_macro": macro(per_label["label_recall"]),
        "accuracy": _ratio(sums["exact"], sums["rows"]),
        "hamming_loss": _ratio(sums["wrong"], sums["rows"] * labels),
        **per_label,
    }


def score_sets(labels, predictions) -> dict[str, np.ndarray]:
    """``scores`` of predicted label sets on true ones, macro over the labels present in ``labels``."""
    per_row = row_counts(labels, predictions)
    sums = summed(per_row)
    return scores(sums)
