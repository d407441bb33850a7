"""Overfitting: validation loss rising while training loss keeps falling."""

from __future__ import annotations

from typing import Any

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
