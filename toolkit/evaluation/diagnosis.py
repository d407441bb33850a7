"""Overfitting (validation loss rising while training loss keeps falling) and underfitting (a model that learned
too little: no better than the base rates, still learning fast at the end, or blind to most classes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.records import EpochRecord

RISE_STANDARD_ERRORS = 2.0  # a rise in validation loss counts when it is this many paired standard errors
RISE_TOLERANCE = 0.01  # histories without those standard errors (older runs): a relative rise above this

MORE_DATA = "train on more data (raise train_size)"
CHECK_LABELS = ("train on more data, and check the labels: a model memorises wrong labels too (tk check shows "
                "texts with conflicting labels)")
ADVICE = (
    "train for fewer epochs (tk kept the best epoch for you)",
    "lower the learning rate (e.g. --set learning_rate=1e-5)",
    MORE_DATA,
    "regularise more (e.g. --set weight_decay=0.1)",
)


def diagnose_overfitting(history: list[EpochRecord], train_size: int | None = 0) -> dict[str, Any]:
    """Return {"overfitting": bool, ...}; when true, from which epoch, by how much, and advice.

    ``train_size``: the task's; None (every training row used) turns "raise train_size" into other advice."""
    if len(history) < 2:
        return {"overfitting": False}
    best = min(history, key=lambda r: r.validation_loss)
    later = [r for r in history if r.epoch > best.epoch]
    falling_train = [r for r in later if r.train_loss is not None and best.train_loss is not None
                     and r.train_loss < best.train_loss]
    rising = [r for r in falling_train if _rose(r, best)]
    if not rising:
        return {"overfitting": False, **_within_noise(falling_train, best)}
    worst = max(rising, key=lambda r: r.validation_loss)
    rise = worst.validation_loss - best.validation_loss
    beyond_noise = (f"; {rise / worst.loss_rise_se:.1f} standard errors, too large a rise for chance"
                    if worst.loss_rise_se else "")
    first = rising[0]
    onset = (f" ({(first.validation_loss - best.validation_loss) / first.loss_rise_se:.1f} standard errors above "
             f"epoch {best.epoch})" if first.loss_rise_se and first is not worst else "")
    message = (
        f"Overfitting from epoch {first.epoch}{onset}: validation loss rose from {best.validation_loss:.4f} "
        f"(epoch {best.epoch}) to {worst.validation_loss:.4f} (epoch {worst.epoch}, +{rise / best.validation_loss:.0%}"
        f"{beyond_noise}) while training loss fell from {best.train_loss:.4f} to {worst.train_loss:.4f}. "
        "The model is memorising the training set rather than generalising."
    )
    return {
        "overfitting": True,
        "from_epoch": first.epoch,
        "best_epoch": best.epoch,
        "best_validation_loss": best.validation_loss,
        "worst_validation_loss": worst.validation_loss,
        "rise": rise,
        "rise_standard_errors": rise / worst.loss_rise_se if worst.loss_rise_se else None,
        "message": message,
        "advice": [CHECK_LABELS if advice == MORE_DATA and train_size is None else advice for advice in ADVICE],
    }


def _within_noise(later: list[EpochRecord], best: EpochRecord) -> dict[str, str]:
    """A note when validation loss rose visibly (above RISE_TOLERANCE) but within its standard errors."""
    seen = [r for r in later if r.loss_rise_se and r.validation_loss > best.validation_loss * (1 + RISE_TOLERANCE)]
    if not seen:
        return {}
    worst = max(seen, key=lambda r: r.validation_loss)
    rise = worst.validation_loss - best.validation_loss
    return {"note": f"Validation loss rose from {best.validation_loss:.4f} (epoch {best.epoch}) to "
                    f"{worst.validation_loss:.4f} (epoch {worst.epoch}, +{rise / best.validation_loss:.0%}) while "
                    f"training loss fell, but by {rise / worst.loss_rise_se:.1f} standard errors only: within the "
                    "noise of this validation set, not evidence of overfitting."}


def _rose(record: EpochRecord, best: EpochRecord) -> bool:
    """Validation loss above the lowest by more than noise: RISE_STANDARD_ERRORS paired standard errors (the
    same validation rows both times), or, where a history lacks them, RISE_TOLERANCE of the lowest."""
    if record.loss_rise_se is not None:
        return record.validation_loss - best.validation_loss > RISE_STANDARD_ERRORS * record.loss_rise_se
    return record.validation_loss > best.validation_loss * (1 + RISE_TOLERANCE)


def explain(diagnosis: dict[str, Any], kept_epoch: int) -> list[str]:
    if not diagnosis.get("overfitting"):
        return [diagnosis["note"]] if diagnosis.get("note") else []
    lines = [diagnosis["message"], f"tk kept the weights of epoch {kept_epoch}. To try:"]
    return lines + [f"  - {advice}" for advice in diagnosis["advice"]]


# -- underfitting ------------------------------------------------------------------------

PRIOR_MARGIN = 0.10  # a validation loss less than 10% below the prior's has learned little beyond the base rates
STEEP_FALL = 0.10  # training loss still falling by this share from one epoch (or quarter of an epoch) to the next
FEW_CLASSES = 0.5  # a model that predicts at most half the classes present (three or more) has not learned them
CUT_SHARE = 0.2  # a longer max_length is worth trying when this share of training texts was cut


def prior_loss(train_labels, validation_labels, weights=None) -> float | None:
    """The validation loss of predicting the base rates: each class's share of the training rows (with
    ``class_weights``, weighted: the best constant answer to the weighted loss), or each label's (multi-label,
    the mean binary cross-entropy). None without rows."""
    train, validation = np.asarray(train_labels), np.asarray(validation_labels)
    if not len(train) or not len(validation):
        return None
    if validation.ndim == 2:
        rates = np.clip(train.astype(np.float64).mean(axis=0), 1e-6, 1 - 1e-6)
        cells = validation * np.log(rates) + (1 - validation) * np.log(1 - rates)
        return float(-cells.mean())
    classes = max(int(train.max()), int(validation.max())) + 1
    counts = np.bincount(train.astype(np.int64), minlength=classes).astype(np.float64)
    class_weight = np.ones(classes) if weights is None else np.asarray(weights, dtype=np.float64)[:classes]
    rates = np.clip(counts * class_weight / (counts * class_weight).sum(), 1e-12, None)
    row_weight = class_weight[validation.astype(np.int64)]
    return float((row_weight * -np.log(rates[validation.astype(np.int64)])).sum() / row_weight.sum())


def beats_prior(loss: float, prior: float | None) -> bool:
    """Whether a validation loss is clearly below the prior's (by more than PRIOR_MARGIN of it)."""
    return prior is None or loss < prior * (1 - PRIOR_MARGIN)


def still_falling(history: list[EpochRecord]) -> float | None:
    """How much the training loss fell at the end, as a share, when that is steep (at least STEEP_FALL): the last
    epoch against the one before, or with one epoch, its last quarter of steps against the quarter before."""
    last = history[-1]
    if len(history) >= 2 and history[-2].train_loss and last.train_loss is not None:
        before, after = history[-2].train_loss, last.train_loss
    elif len(last.step_losses) >= 8:
        quarter = len(last.step_losses) // 4
        before = float(np.mean(last.step_losses[-2 * quarter:-quarter]))
        after = float(np.mean(last.step_losses[-quarter:]))
    else:
        return None
    fall = (before - after) / before if before > 0 else 0.0
    return fall if fall >= STEEP_FALL else None


def diagnose_underfitting(history: list[EpochRecord], prior: float | None,
                          predicted_classes: int | None, present_classes: int | None, settings: dict[str, Any],
                          cut_share: float | None = None) -> dict[str, Any]:
    """Return {"underfitting": bool, ...}; when true, the signs with their figures, a message and advice.

    ``settings``: the task's epochs, learning_rate, max_length, epochs_run; ``cut_share``: the share of training
    texts cut at max_length (None: not known, or read in windows); ``settings["unit"]``: "class" or "label"."""
    if not history:
        return {"underfitting": False}
    best = min(history, key=lambda r: r.validation_loss)
    signs, advice = [], []
    if not beats_prior(best.validation_loss, prior):
        gap = 1 - best.validation_loss / prior
        gap = 0.0 if abs(gap) < 0.0005 else gap  # "0.0% lower" would say less than "no lower"
        signs.append(f"the lowest validation loss, {best.validation_loss:.4f} (epoch {best.epoch}), is not clearly "
                     f"below the {prior:.4f} of predicting each {settings.get('unit', 'class')}'s base rate ("
                     + (f"only {gap:.1%} lower" if gap > 0 else f"{-gap:.1%} higher" if gap < 0 else "no lower")
                     + "; a model that learned should be well below)")
    fall = still_falling(history) if best.epoch == history[-1].epoch else None
    if fall is not None:
        signs.append(f"training loss was still falling steeply at the end ({fall:.0%} in the last "
                     f"{'epoch' if len(history) >= 2 else 'quarter of the epoch'}) and validation loss was lowest "
                     "at the last epoch")
    if predicted_classes is not None and present_classes and present_classes >= 3 \
            and predicted_classes <= FEW_CLASSES * present_classes:
        signs.append(f"it predicts only {predicted_classes} of the {present_classes} classes in the test rows")
    if not signs:
        return {"underfitting": False}
    epochs, rate = settings.get("epochs"), settings.get("learning_rate")
    if signs == [signs[0]] and fall is not None:  # learned (below the base rate) and still learning: not underfit
        more = f" (e.g. --set epochs={2 * epochs})" if settings.get("epochs_run") == epochs and epochs else ""
        return {"underfitting": False, "still_improving": True, "train_loss_fall": fall,
                "message": f"Still improving: {signs[0]}. More epochs may give a better model{more}; tk keeps "
                           "the best epoch, so they cost time, not quality."}
    if settings.get("epochs_run") == epochs and epochs:
        advice.append(f"train longer (e.g. --set epochs={2 * epochs}); tk keeps the best epoch, so more epochs "
                      "cost time, not quality")
    if rate:
        advice.append(f"raise the learning rate (e.g. --set learning_rate={3 * rate:.0e})")
    if cut_share is not None and cut_share >= CUT_SHARE:
        length = settings.get("max_length")
        advice.append(f"read more of each text: {cut_share:.0%} of the training texts were cut at max_length = "
                      f"{length} tokens (e.g. --set max_length={2 * length}, or --set long_text=chunks; "
                      "tk analyze-lengths recommends one)")
    if predicted_classes is not None and present_classes and predicted_classes <= FEW_CLASSES * present_classes:
        advice.append("weigh the rare classes more (--set class_weights=balanced)")
    message = "Underfitting: " + "; ".join(signs) + ". The model has learned too little from the training data."
    return {"underfitting": True, "signs": signs, "prior_loss": prior, "best_validation_loss": best.validation_loss,
            "train_loss_fall": fall, "predicted_classes": predicted_classes, "present_classes": present_classes,
            "cut_share": cut_share, "message": message, "advice": advice}


def explain_underfitting(diagnosis: dict[str, Any]) -> list[str]:
    if not diagnosis.get("underfitting"):
        return [diagnosis["message"]] if diagnosis.get("still_improving") else []
    return [diagnosis["message"], "To try:", *[f"  - {advice}" for advice in diagnosis["advice"]]]
