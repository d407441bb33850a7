"""Multi-label metrics: micro and macro F1, precision, recall, subset accuracy, Hamming loss, per-label report.

``f1``, ``precision`` and ``recall`` are micro averages (every label's counts
pooled; ``average: "micro"``), ``f1_macro`` the mean F1 of the labels present
in the scored rows, ``accuracy`` the subset accuracy (also under
``subset_accuracy``). Test numbers carry 95% intervals: Wilson for
proportions of rows (subset accuracy; each label's precision and recall), a
paired BCa bootstrap over rows for the rest (micro scores, macro F1, Hamming
loss and each label's F1: the labels of one row are not independent, so the
row is what is resampled).
"""

from __future__ import annotations

import numpy as np

from toolkit.api import intervals
from toolkit.api import multilabel_scores as scoring

RESAMPLED = ("f1", "precision", "recall", "f1_macro", "hamming_loss")


def multilabel_metrics(labels, probabilities, label_names, confidence, thresholds) -> dict:
    truth = np.asarray(labels) > 0.5
    thresholds = np.full(len(label_names), scoring.DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds)
    predictions = scoring.predict_sets(probabilities, thresholds)
    per_row = scoring.row_counts(truth, predictions)
    sums = scoring.summed(per_row)
    support = sums["tp"] + sums["fn"]
    present = support > 0
    scores = scoring.scores(sums)
    metrics = {name: float(scores[name]) for name in scoring.HEADLINE}
    if not confidence:
        return metrics  # per-epoch numbers: numpy only
    n = len(truth)
    metrics.update({"n": n, "problem": "multi-label", "average": "micro", "subset_accuracy": metrics["accuracy"],
                    "precision_macro": float(scores["precision_macro"]),
                    "recall_macro": float(scores["recall_macro"]),
                    "thresholds": {name: float(t) for name, t in zip(label_names, thresholds)},
                    "classes_absent": [name for name, there in zip(label_names, present) if not there]})
    label_f1 = _intervals(per_row, sums, truth, predictions, scores, metrics)
    metrics["per_class"] = per_label_report(label_names, sums, scores, thresholds, present, label_f1)
    return metrics


def _intervals(per_row, sums, truth, predictions, scores, metrics) -> list:
    """Headline intervals into ``metrics``; returns each label's F1 interval."""
    n = len(truth)
    metrics.update(intervals.wilson(int(sums["exact"]), n).entries("accuracy"))
    involved = int((truth | predictions).any(axis=1).sum())  # rows that enter the micro scores
    per_label_rows = (sums["tp"] + sums["fp"] + sums["fn"]).astype(int).tolist()
    rows = [involved, involved, involved, n, n] + per_label_rows

    def statistic(index, axis=-1):
        resampled = scoring.scores(scoring.summed(per_row, scoring.resample_weights(index, n)))
        return np.concatenate([np.stack([resampled[name] for name in RESAMPLED]),
                               np.moveaxis(resampled["label_f1"], -1, 0)])

    estimates = [metrics[name] for name in RESAMPLED] + scores["label_f1"].tolist()
    bca = [name != "f1_macro" or intervals.bca_for_macro(sums["tp"] + sums["fn"]) for name in RESAMPLED]
    found = intervals.bootstrap((np.arange(n),), statistic, estimates, rows, bca=bca + [True] * len(per_label_rows))
    for name, interval in zip(RESAMPLED, found):
        metrics.update(interval.entries(name))
    return found[len(RESAMPLED):]


def per_label_report(label_names, sums, scores, thresholds, present, label_f1) -> dict:
    """Each label's precision, recall, F1 (with intervals), support, predicted count and threshold; then the
    micro and macro averages (macro over the labels present), in scikit-learn's report layout."""
    report = {}
    for j, name in enumerate(label_names):
        tp, fp, fn = (int(sums[key][j]) for key in ("tp", "fp", "fn"))
        row = {"precision": float(scores["label_precision"][j]), "recall": float(scores["label_recall"][j]),
               "f1-score": float(scores["label_f1"][j]), "support": tp + fn, "predicted": tp + fp,
               "threshold": float(thresholds[j])}
        row.update(intervals.wilson(tp, tp + fp, f"row predicted '{name}'").entries("precision"))
        row.update(intervals.wilson(tp, tp + fn, f"row labelled '{name}'").entries("recall"))
        row.update(label_f1[j].entries("f1-score"))
        report[name] = row
    total = int((sums["tp"] + sums["fn"]).sum())
    report["micro avg"] = {"precision": float(scores["precision"]), "recall": float(scores["recall"]),
                           "f1-score": float(scores["f1"]), "support": total}
    report["macro avg"] = {"precision": float(scores["precision_macro"]), "recall": float(scores["recall_macro"]),
                           "f1-score": float(scores["f1_macro"]), "support": total, "labels": int(present.sum())}
    return report
