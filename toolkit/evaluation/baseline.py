"""The majority-class baseline every test report is compared with, and the warnings it leads to.

The baseline always predicts the most frequent class of the training split
(the scored split's when the training labels are not known; ties go to the
lower class id). The model and the baseline are compared on the same rows
with McNemar's exact test, as ``tk compare`` compares two runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.evaluation.counts import class_counts, headline
from toolkit.evaluation.intervals import mcnemar_exact

ONE_CLASS_SHARE = 0.95  # warn when one class gets at least this share of the predictions
NEVER_PREDICTED_SUPPORT = 5  # warn about a class the model never predicts when it has at least this many rows
SIGNIFICANCE = 0.05


def majority_class(labels) -> int:
    return int(np.bincount(np.asarray(labels, dtype=np.int64)).argmax())


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
    present = np.bincount(labels, minlength=n_classes) > 0
    scores = headline(class_counts(labels, constant, n_classes), present, None)
    model_correct, baseline_correct = predictions == labels, constant == labels
    p = mcnemar_exact(model_correct, baseline_correct)
    name = label_names[majority]
    baseline = {"label": name, "source": source, "accuracy": float(scores["accuracy"]),
                "f1_macro": float(scores["f1_macro"]), "mcnemar_p": p}
    warnings = []
    shares = np.bincount(predictions, minlength=n_classes) / n
    top = int(shares.argmax())
    if shares[top] >= ONE_CLASS_SHARE:
        warnings.append(f"The model predicts '{label_names[top]}' for {shares[top]:.1%} of the {n} rows: it has "
                        f"(almost) stopped telling the classes apart, whatever its accuracy says.")
    else:
        warnings += never_predicted(labels, predictions, label_names)
    accuracy, base = float(model_correct.mean()), baseline["accuracy"]
    if accuracy <= base:
        warnings.append(f"Accuracy {accuracy:.3f} does not beat always predicting '{name}' ({base:.3f} on these "
                        f"rows; the most frequent class of the {source}).")
    elif p >= SIGNIFICANCE:
        warnings.append(f"Accuracy {accuracy:.3f} vs {base:.3f} for always predicting '{name}': the difference is "
                        f"within noise (McNemar exact p = {p:.2f}); the model is not shown to beat the baseline.")
    return {"baseline": baseline, "warnings": warnings}


def never_predicted(labels: np.ndarray, predictions: np.ndarray, label_names: tuple[str, ...]) -> list[str]:
    """A warning naming the classes of the scored rows the model never predicts (with enough rows to matter):
    their recall and F1 are 0, which caps the macro averages."""
    support = np.bincount(labels, minlength=len(label_names))
    predicted = np.bincount(predictions, minlength=len(label_names)) > 0
    missed = [c for c in np.argsort(-support, kind="stable") if support[c] >= NEVER_PREDICTED_SUPPORT and not predicted[c]]
    if not missed:
        return []
    present = int((support > 0).sum())
    named = ", ".join(f"'{label_names[c]}' ({support[c]} rows)" for c in missed[:5])
    more = f" and {len(missed) - 5} more" if len(missed) > 5 else ""
    return [f"The model never predicts {len(missed)} of the {present} classes in these rows: {named}{more}. Their "
            f"recall and F1 are 0, so macro recall is at most {(present - len(missed)) / present:.3f}."]
