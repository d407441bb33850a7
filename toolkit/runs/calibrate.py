"""tk run's calibration step: fit a temperature on validation, bake it into the model, score it on test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.evaluation import calibration
from toolkit.runs.validation import validation_scores

MIN_VALIDATION_TEXTS = 20  # fewer: the fitted temperature is noise, and the model is saved as trained


@dataclass
class Fitted:
    temperature: float | np.ndarray | None  # None: the model is saved as trained
    validation: tuple[np.ndarray, np.ndarray] | None  # (labels, calibrated probabilities), per text, if predicted
    reason: str | None = None  # why not calibrated
    nll: tuple[float, float] | None = None  # validation NLL before, after


def fit(model: Any, prepared: Any, progress: Any) -> Fitted:
    """Fit the temperature on the validation split and bake it into ``model``'s classifier head."""
    task = prepared.task
    if task.calibration == "off":
        return Fitted(None, None, 'calibration = "off"')
    if task.select_on == "test":
        return Fitted(None, None, 'select_on = "test": the validation split is the test split, and a temperature '
                                  "fitted on it would make the test ECE optimistic")
    labels, probabilities = validation_scores(model, prepared)
    if len(labels) < MIN_VALIDATION_TEXTS:
        progress.note(f"Calibration skipped: {len(labels)} validation texts, fewer than {MIN_VALIDATION_TEXTS}.")
        return Fitted(None, (labels, probabilities), f"{len(labels)} validation texts (at least "
                                                     f"{MIN_VALIDATION_TEXTS} needed)")
    multi = task.multi_label
    temperature = calibration.fit_temperatures(probabilities, labels, multi)
    if not calibration.bake(model, temperature):
        return Fitted(None, (labels, probabilities), "no linear classifier head with one output per label")
    after = calibration.scaled(probabilities, temperature, multi)
    nll = (calibration.negative_log_likelihood(probabilities, labels, multi),
           calibration.negative_log_likelihood(after, labels, multi))
    shown = (f"{temperature:.3f}" if not multi else
             "per label " + ", ".join(f"{name} {t:.2f}" for name, t in zip(prepared.dataset.labels, temperature)))
    progress.note(f"Calibration: temperature {shown} fitted on {len(labels):,} validation texts (NLL {nll[0]:.4f} "
                  f"-> {nll[1]:.4f}), baked into the saved classifier head.")
    return Fitted(temperature, (labels, after), None, nll)


def on_test(fitted: Fitted, labels: np.ndarray, probabilities: np.ndarray, task: Any, progress: Any,
            scored_as: str = "the test split") -> dict:
    """metrics.json's ``calibration``: ECE before and after on the test split, with intervals, the reliability
    bins of each, and accuracy against coverage. ``probabilities``: the saved (calibrated) model's."""
    multi = task.multi_label
    result: dict[str, Any] = {"method": "temperature" if fitted.temperature is not None else "off"}
    if fitted.temperature is None:
        found = calibration.ece_with_intervals(probabilities, probabilities, labels)
        result.update({"reason": fitted.reason, "ece": found["ece_after"], "ece_ci": found.get("ece_after_ci"),
                       "bins": found["bins"], "n": found["n"], "interval": found.get("interval"),
                       "reliability": {"model": calibration.bin_stats(*calibration.confidence_and_hits(
                           probabilities, labels))}})
    else:
        temperature = fitted.temperature
        before = calibration.scaled(probabilities, 1 / np.asarray(temperature), multi)
        result.update({"temperature": (round(float(temperature), 6) if not multi else
                                       [round(float(t), 6) for t in temperature]),
                       "fitted_on": "validation", "validation_texts": len(fitted.validation[0]),
                       "validation_nll": [round(v, 6) for v in fitted.nll],
                       **calibration.ece_with_intervals(before, probabilities, labels),
                       "reliability": {name: calibration.bin_stats(*calibration.confidence_and_hits(p, labels))
                                       for name, p in (("before", before), ("after", probabilities))}})
        ci = result.get("ece_before_ci"), result.get("ece_after_ci")
        progress.note(f"Calibration on {scored_as} (ECE, {result['bins']} equal-width bins): "
                      f"{result['ece_before']:.3f}{_interval(ci[0])} before, "
                      f"{result['ece_after']:.3f}{_interval(ci[1])} after{_change(result)}.")
    result["selective"] = calibration.selective(probabilities, labels)
    return result


def _change(result: dict) -> str:
    """The paired change and what it says: the evidence docs/metrics.md points to."""
    ci = result.get("ece_change_ci")
    if not ci:
        return ""
    said = ("lower: calibration helped" if ci[1] < 0 else
            "higher: the temperature fitted on validation made test calibration worse (--set calibration=off "
            "keeps the model's own probabilities)" if ci[0] > 0 else
            "no measurable change")
    return f"; change {result['ece_after'] - result['ece_before']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}], {said}"


def _interval(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
