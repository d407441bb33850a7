"""Classification metrics: accuracy, F1, precision, recall, per-class report, confusion matrix.

F1, precision and recall are binary (the second label is the positive class)
for two classes and macro-averaged otherwise; weighted F1 is added for more
than two. Test-set headline numbers carry a 95% bootstrap confidence interval.
"""

from __future__ import annotations

import numpy as np

from toolkit.api import hookimpl

BOOTSTRAP_RESAMPLES = 2000
HEADLINE = ("accuracy", "f1", "precision", "recall")


@hookimpl
def tk_compute_metrics(labels, probabilities, label_names, confidence):
    labels = np.asarray(labels)
    predictions = np.asarray(probabilities).argmax(axis=1)
    n_classes = len(label_names)
    scores = dict(zip(HEADLINE, headline_scores(labels, predictions, n_classes)))
    metrics = {name: float(value) for name, value in scores.items()}
    if n_classes > 2:
        metrics["f1_weighted"] = float(weighted_f1(labels, predictions, n_classes))
    if not confidence:
        return metrics  # per-epoch numbers: numpy only (importing scikit-learn takes a second or more)
    from sklearn.metrics import classification_report, confusion_matrix

    for name, (low, high) in zip(HEADLINE, bootstrap_intervals(labels, predictions, n_classes)):
        metrics[f"{name}_ci"] = [float(low), float(high)]
    metrics["n"] = int(len(labels))
    metrics["per_class"] = classification_report(
        labels, predictions, labels=list(range(n_classes)), target_names=list(label_names),
        output_dict=True, zero_division=0)
    metrics["confusion_matrix"] = confusion_matrix(labels, predictions, labels=list(range(n_classes))).tolist()
    return metrics


def headline_scores(labels, predictions, n_classes, axis=-1):
    """Accuracy, F1, precision, recall; vectorised over leading axes for the bootstrap."""
    accuracy = (labels == predictions).mean(axis=axis)
    classes = [1] if n_classes == 2 else range(n_classes)
    per_class = [_class_scores(labels, predictions, k, axis) for k in classes]
    precision, recall, f1 = (np.mean([scores[i] for scores in per_class], axis=0) for i in range(3))
    return np.stack([accuracy, f1, precision, recall])


def weighted_f1(labels, predictions, n_classes):
    support = np.bincount(labels, minlength=n_classes)
    f1 = np.array([_class_scores(labels, predictions, k, -1)[2] for k in range(n_classes)])
    return float((f1 * support).sum() / max(support.sum(), 1))


def bootstrap_intervals(labels, predictions, n_classes):
    from scipy.stats import bootstrap

    if len(labels) < 2:
        return [(float("nan"), float("nan"))] * len(HEADLINE)
    result = bootstrap(
        (labels, predictions),
        lambda y, p, axis=-1: headline_scores(y, p, n_classes, axis),
        paired=True, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
        random_state=np.random.default_rng(0),
    )
    return list(zip(result.confidence_interval.low, result.confidence_interval.high))


def _class_scores(labels, predictions, k, axis):
    tp = ((labels == k) & (predictions == k)).sum(axis=axis)
    fp = ((labels != k) & (predictions == k)).sum(axis=axis)
    fn = ((labels == k) & (predictions != k)).sum(axis=axis)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return precision, recall, f1
