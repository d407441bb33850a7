"""The training plugin's Trainer callback, imported only when training starts (it needs transformers)."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from toolkit.training.interrupt import RunInterrupted, interrupt_requested
from toolkit.records import EpochRecord


class ReportCallback(TrainerCallback):
    """Feeds the progress bar and the epoch table, and stops at a safe point on Ctrl-C."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.epoch_started = time.perf_counter()
        self.train_loss = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress.start(state.max_steps, state.global_step)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress.advance()
        if interrupt_requested():
            # Stop mid-epoch without saving: the last epoch checkpoint stays the resume point.
            raise RunInterrupted(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train_loss = float(logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        record = EpochRecord(
            epoch=round(state.epoch),
            train_loss=self.train_loss,
            validation_loss=float(metrics["eval_loss"]),
            accuracy=float(metrics.get("eval_accuracy", float("nan"))),
            f1=float(metrics.get("eval_f1", float("nan"))),
            seconds=time.perf_counter() - self.epoch_started,
        )
        # Kept in the Trainer's own log so the history survives a resume from a checkpoint.
        state.log_history.append({"tk_epoch": record.as_dict()})
        if state.is_world_process_zero:
            self.progress.epoch(record)
