"""tk run's calibration step: fit a temperature, bake it into the model, score it on test.

The temperature is fitted on spare training rows where train_size left some (up to 2,000): they played no
part in training or in choosing the epoch. The validation split did choose the epoch (the one of lowest
validation loss), so a temperature fitted on it inherits that choice, and at 500 texts it is noisy too:
on IMDB (2,000 training reviews) it was 1.04 where 2,000 spare training reviews and the test split
both gave 1.16 (benchmarks/NOTES.md). Without spare rows, the validation split is used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.data.tokens import tokenize_splits
from toolkit.evaluation import calibration
from toolkit.runs.validation import split_scores, validation_scores

MIN_VALIDATION_TEXTS = 20  # fewer: the fitted temperature is noise, and the model is saved as trained
FEW_TEXTS = 1000  # fewer validation texts: the console says the temperature is noisy (IMDB's 500 gave 1.04 for 1.16)


@dataclass
class Fitted:
    temperature: float | np.ndarray | None  # None: the model is saved as trained
    validation: tuple[np.ndarray, np.ndarray] | None  # (labels, calibrated probabilities), per text, if predicted
    reason: str | None = None  # why not calibrated
    nll: tuple[float, float] | None = None  # NLL before, after, on the texts the temperature was fitted on
    fitted_on: str = "validation"  # or "spare training rows"
    texts: int = 0  # how many it was fitted on


def fit(model: Any, prepared: Any, progress: Any) -> Fitted:
    """Fit the temperature on the validation split and bake it into ``model``'s classifier head."""
    task = prepared.task
    if task.calibration == "off":
        return Fitted(None, None, 'calibration = "off"')
    if task.select_on == "test":
        return Fitted(None, None, 'select_on = "test": the validation split is the test split, and a temperature '
                                  "fitted on it would make the test ECE optimistic")
    spare = spare_scores(model, prepared)
    on_validation = spare is None  # then its scores, calibrated, are what the thresholds are tuned on
    labels, probabilities = validation_scores(model, prepared) if on_validation else spare
    what = "validation texts" if on_validation else "training texts that train_size left unused"
    scored = (labels, probabilities) if on_validation else None
    if len(labels) < MIN_VALIDATION_TEXTS:
        progress.note(f"Calibration skipped: {len(labels)} {what}, fewer than {MIN_VALIDATION_TEXTS}.")
        return Fitted(None, scored, f"{len(labels)} {what} (at least {MIN_VALIDATION_TEXTS} needed)")
    multi = task.multi_label
    temperature = calibration.fit_temperatures(probabilities, labels, multi)
    if not calibration.bake(model, temperature):
        return Fitted(None, scored, "no linear classifier head with one output per label")
    after = calibration.scaled(probabilities, temperature, multi)
    nll = (calibration.negative_log_likelihood(probabilities, labels, multi),
           calibration.negative_log_likelihood(after, labels, multi))
    shown = (f"{temperature:.3f}" if not multi else
             "per label " + ", ".join(f"{name} {t:.2f}" for name, t in zip(prepared.dataset.labels, temperature)))
    caveat = (f" The validation split also chose the epoch, and {len(labels):,} texts give a noisy temperature: "
              "a train_size below the training rows leaves spare rows to fit it on (docs/metrics.md#calibration)."
              if on_validation and len(labels) < FEW_TEXTS else "")
    progress.note(f"Calibration: temperature {shown} fitted on {len(labels):,} {what} (NLL {nll[0]:.4f} "
                  f"-> {nll[1]:.4f}), baked into the saved classifier head.{caveat}")
    return Fitted(temperature, (labels, after) if on_validation else None, None, nll,
                  "validation" if on_validation else "spare training rows", len(labels))


def spare_scores(model: Any, prepared: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, probabilities) of the spare training rows, per text; None where there are none (or too few)."""
    import datasets  # heavy: imported when a run calibrates, not at tk's start

    spare, task = prepared.spare, prepared.task
    if spare is None or len(spare) < MIN_VALIDATION_TEXTS:
        return None
    tokenized = tokenize_splits(datasets.DatasetDict({"spare": spare}), prepared.tokenizer, task.max_length,
                                task.truncation, task.window_stride if task.reads_in_windows else None)["spare"]
    return split_scores(model, tokenized, task)


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
        progress.note(f"Calibration: not applied ({fitted.reason}); ECE on {scored_as} {result['ece']:.3f}"
                      f"{_interval(result['ece_ci'])} ({result['bins']} equal-width bins).")
    else:
        temperature = fitted.temperature
        before = calibration.scaled(probabilities, 1 / np.asarray(temperature), multi)
        result.update({"temperature": (round(float(temperature), 6) if not multi else
                                       [round(float(t), 6) for t in temperature]),
                       "fitted_on": fitted.fitted_on, "fitted_texts": fitted.texts,
                       "fitted_nll": [round(v, 6) for v in fitted.nll],
                       **calibration.ece_with_intervals(before, probabilities, labels),
                       "reliability": {name: calibration.bin_stats(*calibration.confidence_and_hits(p, labels))
                                       for name, p in (("before", before), ("after", probabilities))}})
        ci = result.get("ece_before_ci"), result.get("ece_after_ci")
        progress.note(f"Calibration on {scored_as} (ECE, {result['bins']} equal-width bins): "
                      f"{result['ece_before']:.3f}{_interval(ci[0])} before, "
                      f"{result['ece_after']:.3f}{_interval(ci[1])} after{_change(result)}.")
    result["selective"] = calibration.selective(probabilities, labels)
    result["highest_confidence"] = calibration.highest_confidence(probabilities, multi)
    result["miscalibrated_bins"] = calibration.miscalibrated_bins(*calibration.confidence_and_hits(probabilities,
                                                                                                    labels))
    for sentence in calibration.bins_in_words(result["miscalibrated_bins"], multi):
        progress.note(f"Calibration on {scored_as}: {sentence} ({bin_test(result['miscalibrated_bins'])}).")
    return result


def bin_test(found: list[dict]) -> str:
    """How a miscalibrated bin was found, for the line that names it."""
    level = found[0]["level"] if found else 0.95
    return (f"Wilson interval at {level:.1%}, 95% over every bin of {calibration.MIN_BIN_ROWS}+ rows tested; "
            "ECE can stay small while one bin is off")


def _change(result: dict) -> str:
    """The paired change and what it says: the evidence docs/metrics.md points to."""
    ci = result.get("ece_change_ci")
    if result.get("ece_change_note"):
        return f"; change {result['ece_after'] - result['ece_before']:+.3f}, {result['ece_change_note']}"
    if not ci:
        return ""
    said = ("lower: calibration helped" if ci[1] < 0 else
            "higher: the fitted temperature made test calibration worse (--set calibration=off "
            "keeps the model's own probabilities)" if ci[0] > 0 else
            "no measurable change")
    return f"; change {result['ece_after'] - result['ece_before']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}], {said}"


def _interval(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
