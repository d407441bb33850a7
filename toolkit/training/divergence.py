"""What stops a run that went wrong: settings outside the sane range said before training, a loss of nan or
inf at the first step it appears, running out of memory; each with the likely cause and what to change."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.config import TaskConfig
from toolkit.errors import TkError

# Outside these, fine-tuning an encoder almost always diverges (too high) or learns nothing (too low):
# tk warns before training, and trains anyway (docs/tasks-toml.md). BERT's own range is 1e-5 to 5e-5.
SANE_LEARNING_RATES = (1e-7, 1e-2)
SANE_CLASS_WEIGHTS = (1e-3, 1e3)  # each weight; and the largest at most this many times the smallest


def range_warnings(task: TaskConfig, weights: np.ndarray | None = None) -> list[str]:
    """What tk says before training about a learning rate or class weights outside the sane ranges."""
    said = []
    low, high = SANE_LEARNING_RATES
    if not low <= task.learning_rate <= high:
        said.append(f"learning_rate = {task.learning_rate:g} is outside the usual range {low:g} to {high:g}; "
                    f"{'training is likely to diverge (a loss of nan stops the run)' if task.learning_rate > high else 'the model will barely change'}. "
                    "Fine-tuning usually takes 1e-5 to 5e-5 (--set learning_rate=2e-5).")
    if weights is not None and len(weights):
        low, high = SANE_CLASS_WEIGHTS
        smallest, largest = float(np.min(weights)), float(np.max(weights))
        if smallest < low or largest > high or (smallest > 0 and largest / smallest > high):
            said.append(f"class_weights range from {smallest:g} to {largest:g}, beyond the usual {low:g} to {high:g} "
                        "(or a ratio over 1000); the loss can overflow and training diverge. "
                        "class_weights = \"balanced\" weighs classes by their counts.")
    return said


class NonFiniteLoss(TkError):
    """Training produced a loss of nan or inf: the weights are garbage from that step on."""


def check_losses(losses: Sequence[float], first_step: int, task: TaskConfig, what: str = "Training loss") -> None:
    """Stop the run at the first non-finite loss of ``losses`` (steps ``first_step``, ``first_step + 1``...)."""
    values = np.asarray(losses, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise NonFiniteLoss(f"{what} became {values[bad[0]]} at step {first_step + int(bad[0])}: training "
                            f"diverged, and nothing it learnt can be used. {likely_cause(task)} The run is "
                            "marked failed and has no metrics.")


def likely_cause(task: TaskConfig) -> str:
    """Which settings to blame for a diverged run, most likely first."""
    causes = []
    if task.learning_rate > SANE_LEARNING_RATES[1] / 10:
        causes.append(f"learning_rate = {task.learning_rate:g} is too high (try --set learning_rate=2e-5)")
    if isinstance(task.class_weights, dict) and any(
            not SANE_CLASS_WEIGHTS[0] <= float(w) <= SANE_CLASS_WEIGHTS[1] for w in task.class_weights.values()):
        causes.append("class_weights hold an extreme weight (keep each within 1e-3 to 1e3)")
    if not causes:
        causes.append(f"the learning rate ({task.learning_rate:g}) is too high for this model and data, or the data "
                      "holds broken texts; lower learning_rate")
    return "Likely cause: " + "; ".join(causes) + "."



def out_of_memory(task: TaskConfig, error: BaseException) -> TkError:
    return TkError(
        f"Out of memory training with batch_size = {task.batch_size} and max_length = {task.max_length} "
        f"({type(error).__name__}). Lower them, e.g. --set batch_size={max(1, task.batch_size // 2)}; "
        "the last finished epoch is saved (tk run --resume RUN)."
    )
