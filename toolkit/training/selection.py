"""Which epoch is kept, and when to stop: model selection and early stopping over the epochs of one run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from toolkit.config import TaskConfig
from toolkit.records import EpochRecord
from toolkit.training.epochs import paired_rise_se


@dataclass(frozen=True)
class Decision:
    improved: bool  # keep this epoch's weights: the best so far
    stop: bool  # no further epoch: the last one, or patience ran out


class Selection:
    """Model selection and early stopping over the epochs of one run.

    The best epoch is the one with the best validation ``select_metric``;
    ties keep the earlier epoch. Training stops after ``patience`` epochs in a
    row without improvement (0 or None: never early). Its state goes into
    every checkpoint, so a resumed run decides exactly as an uninterrupted one.
    """

    def __init__(self, task: TaskConfig) -> None:
        self.metric, self.patience, self.epochs = task.select_metric, task.patience, task.epochs
        self.history: list[EpochRecord] = []
        self.best: EpochRecord | None = None
        self.epochs_without_gain = 0
        self.lowest: EpochRecord | None = None  # the lowest validation loss so far, with its per-row losses

    def end_epoch(self, record: EpochRecord) -> Decision:
        record = self._paired_with_lowest(record)
        self.history.append(record)
        improved = self.best is None or self._better(record, self.best)
        if improved:
            self.best, self.epochs_without_gain = record, 0
        else:
            self.epochs_without_gain += 1
        out_of_patience = bool(self.patience) and self.epochs_without_gain >= self.patience
        return Decision(improved, out_of_patience or record.epoch >= self.epochs)

    def _paired_with_lowest(self, record: EpochRecord) -> EpochRecord:
        """``record`` with the standard error of its rise over the lowest validation loss before it."""
        rows, lowest = record.validation_rows, self.lowest
        se = None
        if rows is not None and lowest is not None and len(rows[0]) == len(lowest.validation_rows[0]):
            se = paired_rise_se(rows, lowest.validation_rows)
        if rows is not None and (lowest is None or record.validation_loss < lowest.validation_loss):
            self.lowest = record
        return replace(record, loss_rise_se=se, validation_rows=None)

    @property
    def finished(self) -> bool:
        """No epoch left to train: the last one is done, or patience ran out (a run resumed after training)."""
        out_of_patience = bool(self.patience) and self.epochs_without_gain >= self.patience
        return bool(self.history) and (self.history[-1].epoch >= self.epochs or out_of_patience)

    @property
    def best_epoch(self) -> int:
        return self.best.epoch

    def _better(self, record: EpochRecord, best: EpochRecord) -> bool:
        if self.metric == "loss":
            return record.validation_loss < best.validation_loss
        return getattr(record, self.metric) > getattr(best, self.metric)

    def state(self) -> dict[str, Any]:
        lowest = self.lowest
        return {"history": [r.as_dict() for r in self.history], "best_epoch": self.best.epoch if self.best else None,
                "epochs_without_gain": self.epochs_without_gain,
                "lowest": None if lowest is None else {"epoch": lowest.epoch,
                                                       "rows": [row.tolist() for row in lowest.validation_rows]}}

    def restore(self, state: dict[str, Any]) -> None:
        self.history = [EpochRecord(**{**row, "step_losses": tuple(row.get("step_losses", ()))})
                        for row in state["history"]]
        self.best = next((r for r in self.history if r.epoch == state["best_epoch"]), None)
        self.epochs_without_gain = state["epochs_without_gain"]
        lowest = state.get("lowest")  # absent from checkpoints written before it was kept
        if lowest:
            record = next(r for r in self.history if r.epoch == lowest["epoch"])
            self.lowest = replace(record, validation_rows=tuple(np.asarray(row) for row in lowest["rows"]))


def snapshot_weights(model: Any) -> dict[str, Any]:
    """A private copy of the model's weights, on their device (the best epoch's, kept for the end)."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}
