"""Classification metrics: accuracy, F1, precision, recall, per-class report, confusion matrix.

Two classes: ``f1``, ``precision`` and ``recall`` are the positive class's
(the task's ``positive_label``, else the second label; named in
``positive_label``). More classes: they are macro averages, and
``f1_weighted`` is added. ``f1_macro`` is there for every task.

Macro averages run over the classes *present* in the scored split (at least
one true row), as scikit-learn's ``average="macro", labels=<present>``: a
class with no row cannot be scored, and counting it as 0 would cap macro F1
below 1 for a perfect model. The classes left out are listed in
``classes_absent``. Test numbers carry 95% intervals (see
``toolkit.evaluation.intervals``); per-epoch numbers are numpy only, fast.

Multi-label tasks are scored in ``plugins.metrics.multilabel``.
"""

from __future__ import annotations

import numpy as np

from toolkit.api import hookimpl, intervals
from toolkit.api import metric_counts as counts_of

HEADLINE = ("accuracy", "f1", "precision", "recall", "f1_macro")


@hookimpl
def tk_compute_metrics(labels, probabilities, label_names, confidence, positive_label=None, problem="single-label",
                       thresholds=None):
    if problem == "multi-label":
        from plugins.metrics.multilabel import multilabel_metrics

        return multilabel_metrics(labels, probabilities, label_names, confidence, thresholds)
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(probabilities).argmax(axis=1)
    n_classes = len(label_names)
    positive = (1 if positive_label is None else int(positive_label)) if n_classes == 2 else None
    counts = counts_of.class_counts(labels, predictions, n_classes)
    present = counts["support"] > 0
    scores = counts_of.headline(counts, positive)
    names = HEADLINE + (("f1_weighted",) if n_classes > 2 else ())
    metrics = {name: float(scores[name]) for name in names}
    if not confidence:
        return metrics  # per-epoch numbers: numpy only (importing scikit-learn takes a second or more)
    from sklearn.metrics import confusion_matrix

    metrics["n"] = int(len(labels))
    metrics["average"] = "binary" if positive is not None else "macro"
    if positive is not None:
        metrics["positive_label"] = label_names[positive]
    metrics["classes_absent"] = [name for name, there in zip(label_names, present) if not there]
    for interval in confidence_intervals(labels, predictions, counts, positive, metrics, names):
        metrics.update(interval)
    metrics["per_class"] = per_class_report(labels, predictions, label_names, present)
    metrics["confusion_matrix"] = confusion_matrix(labels, predictions, labels=list(range(n_classes))).tolist()
    return metrics


def confidence_intervals(labels, predictions, counts, positive, metrics, names):
    """Wilson for proportions, a paired BCa bootstrap for the rest (percentile for a macro average over a class
    of one or two rows: ``intervals.bca_for_macro``); ``<name>_ci`` (+ method or note) each."""
    per_class = counts_of.class_scores(counts)
    wilson = {"accuracy": intervals.wilson(int(counts["tp"].sum()), len(labels))}
    if positive is not None:
        label = metrics["positive_label"]
        tp, fp, fn = (int(per_class[key][positive]) for key in ("tp", "fp", "fn"))
        wilson["precision"] = intervals.wilson(tp, tp + fp, f"row predicted '{label}', so precision has no denominator")
        wilson["recall"] = intervals.wilson(tp, tp + fn, f"true '{label}' row, so recall has no denominator")
        rows = {"f1": tp + fp + fn}  # rows that are, or are predicted, the positive class
    else:
        rows = {}
    resampled = [name for name in names if name not in wilson and not (positive is None and name == "f1_macro")]

    def statistic(y, p, axis=-1):
        scores = counts_of.metric_scores(y, p, len(counts["support"]), positive, axis)
        return np.stack([scores[name] for name in resampled])

    macro_bca = intervals.bca_for_macro(counts["support"])
    averaged = {"f1_macro"} if positive is not None else {"f1", "precision", "recall"}  # over the classes
    found = dict(wilson)
    found.update(zip(resampled, intervals.bootstrap(
        (labels, predictions), statistic, [metrics[name] for name in resampled],
        [rows.get(name, len(labels)) for name in resampled],
        bca=[macro_bca or name not in averaged for name in resampled])))
    if positive is None:
        found["f1_macro"] = found["f1"]  # the same number for more than two classes
    return [found[name].entries(name) for name in names]


def per_class_report(labels, predictions, label_names, present) -> dict:
    """scikit-learn's report over every class; its macro row over the present classes only."""
    from sklearn.metrics import classification_report, precision_recall_fscore_support

    report = classification_report(labels, predictions, labels=list(range(len(label_names))),
                                   target_names=list(label_names), output_dict=True, zero_division=0)
    kept = np.flatnonzero(present).tolist()
    if kept:
        precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, labels=kept, average="macro",
                                                                   zero_division=0)
        report["macro avg"] = {"precision": float(precision), "recall": float(recall), "f1-score": float(f1),
                               "support": int(len(labels)), "classes": len(kept)}
    return report
