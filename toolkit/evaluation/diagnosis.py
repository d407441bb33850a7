"""Overfitting: validation loss rising while training loss keeps falling."""

from __future__ import annotations

from typing import Any

from toolkit.records import EpochRecord

RISE_TOLERANCE = 0.01  # relative rise in validation loss treated as noise

ADVICE = (
    "train for fewer epochs (tk kept the best epoch for you)",
    "lower the learning rate (e.g. --set learning_rate=1e-5)",
    "train on more data (raise train_size)",
    "regularise more (e.g. --set weight_decay=0.1)",
)


def diagnose_overfitting(history: list[EpochRecord]) -> dict[str, Any]:
    """Return {"overfitting": bool, ...}; when true, from which epoch, by how much, and advice."""
    if len(history) < 2:
        return {"overfitting": False}
    best = min(history, key=lambda r: r.validation_loss)
    later = [r for r in history if r.epoch > best.epoch]
    rising = [r for r in later if r.validation_loss > best.validation_loss * (1 + RISE_TOLERANCE)
              and r.train_loss is not None and best.train_loss is not None and r.train_loss < best.train_loss]
    if not rising:
        return {"overfitting": False}
    worst = max(rising, key=lambda r: r.validation_loss)
    rise = worst.validation_loss - best.validation_loss
    message = (
        f"Overfitting from epoch {rising[0].epoch}: validation loss rose from {best.validation_loss:.4f} "
        f"(epoch {best.epoch}) to {worst.validation_loss:.4f} (epoch {worst.epoch}, +{rise / best.validation_loss:.0%}) "
        f"while training loss fell from {best.train_loss:.4f} to {worst.train_loss:.4f}. "
        "The model is memorising the training set rather than generalising."
    )
    return {
        "overfitting": True,
        "from_epoch": rising[0].epoch,
        "best_epoch": best.epoch,
        "best_validation_loss": best.validation_loss,
        "worst_validation_loss": worst.validation_loss,
        "rise": rise,
        "message": message,
        "advice": list(ADVICE),
    }


def explain(diagnosis: dict[str, Any], kept_epoch: int) -> list[str]:
    if not diagnosis.get("overfitting"):
        return []
    lines = [diagnosis["message"], f"tk kept the weights of epoch {kept_epoch}. To try:"]
    return lines + [f"  - {advice}" for advice in diagnosis["advice"]]
