"""The majority-class baseline every test report is compared with, and the warnings it leads to.

The baseline always predicts the most frequent class of the training split
(the scored split's when the training labels are not known; ties go to the
lower class id). The model and the baseline are compared on the same rows
with McNemar's exact test, as ``tk compare`` compares two runs. A multi-label
baseline predicts each label's majority value (``compare_multilabel``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.evaluation.counts import class_counts, headline
from toolkit.evaluation.intervals import mcnemar_exact
from toolkit.evaluation.multilabel import score_sets

ONE_CLASS_SHARE = 0.95  # warn when one class gets at least this share of the predictions
NEVER_PREDICTED_SUPPORT = 5  # warn about a class the model never predicts when it has at least this many rows
SIGNIFICANCE = 0.05


def majority_class(labels) -> int:
    return int(np.bincount(np.asarray(labels, dtype=np.int64)).argmax())


def tied_with_majority(labels, label_names: tuple[str, ...]) -> list[str]:
    """The other classes as frequent as the majority class (a balanced sample): the baseline took the first."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(label_names))
    top = majority_class(labels)
    return [label_names[i] for i in np.flatnonzero(counts == counts[top]) if i != top]


def compare_with_baseline(labels, predictions, label_names: tuple[str, ...], majority: int | None = None,
                          source: str = "training split") -> dict[str, Any]:
    """``{"baseline": {...}, "warnings": [...]}`` for predictions on ``labels``; empty for no rows.

    ``majority``: the class id the baseline predicts, taken from the ``source``
    split; None takes the scored split's most frequent class (source "scored split").
    """
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    n, n_classes = len(labels), len(label_names)
    if not n:
        return {}
    if majority is None:
        majority, source = majority_class(labels), "scored split"
    constant = np.full(n, majority)
    scores = headline(class_counts(labels, constant, n_classes))
    model_correct, baseline_correct = predictions == labels, constant == labels
    p = mcnemar_exact(model_correct, baseline_correct)
    name = label_names[majority]
    baseline = {"label": name, "source": source, "accuracy": float(scores["accuracy"]),
                "f1_macro": float(scores["f1_macro"]), "mcnemar_p": p}
    warnings = []
    shares = np.bincount(predictions, minlength=n_classes) / n
    top = int(shares.argmax())
    if shares[top] >= ONE_CLASS_SHARE:
        warnings.append(f"The model predicts '{label_names[top]}' for {shares[top]:.1%} of the {n:,} rows: it has "
                        f"(almost) stopped telling the classes apart, whatever its accuracy says.")
    else:
        warnings += never_predicted(labels, predictions, label_names)
    warnings += not_beating("Accuracy", float(model_correct.mean()), baseline["accuracy"], p, f"'{name}'",
                            f"the most frequent class of the {source}")
    return {"baseline": baseline, "warnings": warnings}


def not_beating(measure: str, value: float, base: float, p: float, always: str, which: str) -> list[str]:
    """The warning when the model's ``measure`` does not beat always predicting ``always`` (``which``
    describes it), or beats it only within noise (McNemar's ``p``)."""
    if value <= base:
        return [f"{measure} {value:.3f} does not beat always predicting {always} ({base:.3f} on these rows; "
                f"{which})."]
    if p >= SIGNIFICANCE:
        return [f"{measure} {value:.3f} vs {base:.3f} for always predicting {always}: the difference is within "
                f"noise (McNemar exact p = {p:.2f}); the model is not shown to beat the baseline."]
    return []


def never_predicted(labels: np.ndarray, predictions: np.ndarray, label_names: tuple[str, ...]) -> list[str]:
    """A warning naming the classes of the scored rows the model never predicts, once one of them has enough rows
    to matter: their recall and F1 are 0, which caps the macro averages. Every such class counts in the cap."""
    support = np.bincount(labels, minlength=len(label_names))
    predicted = np.bincount(predictions, minlength=len(label_names)) > 0
    missed = [c for c in np.argsort(-support, kind="stable") if support[c] > 0 and not predicted[c]]
    if not any(support[c] >= NEVER_PREDICTED_SUPPORT for c in missed):
        return []
    present = int((support > 0).sum())
    named = ", ".join(f"'{label_names[c]}' ({support[c]:,} {'row' if support[c] == 1 else 'rows'})"
                      for c in missed[:5])
    more = f" and {len(missed) - 5:,} more" if len(missed) > 5 else ""
    their = "Its" if len(missed) == 1 else "Their"
    return [f"The model never predicts {len(missed):,} of the {present:,} classes in these rows: {named}{more}. "
            f"{their} recall and F1 are 0, so macro recall is at most {(present - len(missed)) / present:.3f}."]


# -- multi-label ------------------------------------------------------------------------


def majority_labels(labels) -> np.ndarray:
    """The multi-label baseline's one answer: each label that more than half the rows have (usually none)."""
    labels = np.asarray(labels, dtype=np.float64)
    return (labels.mean(axis=0) > 0.5).astype(np.float32)


def compare_multilabel(labels, predictions, label_names: tuple[str, ...], majority: np.ndarray | None = None,
                       source: str = "training split") -> dict[str, Any]:
    """The baseline and warnings of a multi-label report: ``predictions`` are (rows, labels) booleans.

    The baseline predicts, for every row, each label's majority value in the ``source`` split (usually no
    label at all); compared on subset accuracy (McNemar's exact test on whole-set correctness) and Hamming loss.
    """
    labels, predictions = np.asarray(labels) > 0.5, np.asarray(predictions, dtype=bool)
    n = len(labels)
    if not n:
        return {}
    if majority is None:
        majority, source = majority_labels(labels), "scored split"
    constant = np.broadcast_to(np.asarray(majority) > 0.5, labels.shape)
    model, base = score_sets(labels, predictions), score_sets(labels, constant)
    exact, base_exact = (predictions == labels).all(axis=1), (constant == labels).all(axis=1)
    p = mcnemar_exact(exact, base_exact)
    named = [label_names[j] for j in np.flatnonzero(constant[0])]
    shown = ", ".join(named) or "no label"
    baseline = {"labels": named, "source": source, "accuracy": float(base["accuracy"]),
                "hamming_loss": float(base["hamming_loss"]), "f1": float(base["f1"]),
                "f1_macro": float(base["f1_macro"]), "mcnemar_p": p}
    warnings = []
    sets, counts = np.unique(predictions, axis=0, return_counts=True)
    top = int(counts.argmax())
    if counts[top] / n >= ONE_CLASS_SHARE:
        which = ", ".join(label_names[j] for j in np.flatnonzero(sets[top]))
        what = f"the same labels ({which})" if which else "no label at all"
        warnings.append(f"The model predicts {what} for {counts[top] / n:.1%} of the {n:,} rows: it has (almost) "
                        "stopped telling the texts apart, whatever its scores say.")
    never = [label_names[j] for j in np.flatnonzero(labels.any(axis=0) & ~predictions.any(axis=0))]
    if never:
        warnings.append(f"The model never predicts {len(never):,} label(s) that the scored rows have: "
                        f"{', '.join(never[:10])}{', ...' if len(never) > 10 else ''} (their recall is 0).")
    warnings += not_beating("Subset accuracy", float(model["accuracy"]), baseline["accuracy"], p, shown,
                            f"each label's majority value in the {source}")
    if float(model["hamming_loss"]) >= baseline["hamming_loss"]:
        warnings.append(f"Hamming loss {float(model['hamming_loss']):.4f} is no lower than always predicting {shown} "
                        f"({baseline['hamming_loss']:.4f}): the model gets at least as many (row, label) cells wrong.")
    return {"baseline": baseline, "warnings": warnings}
