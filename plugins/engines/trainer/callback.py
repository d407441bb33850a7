"""The Trainer callback that takes every decision from the training policy, and reports progress."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from toolkit.api import RunInterrupted, checkpoints, interrupt_requested, policy


class PolicyCallback(TrainerCallback):
    """Builds each epoch's history row, keeps the best weights, stops early, prunes checkpoints; Ctrl-C."""

    def __init__(self, task, progress, compute_metrics, folder: Path, resume_from: Path | None,
                 step_losses: list, documents=None, weights=None) -> None:
        self.task, self.progress, self.compute_metrics = task, progress, compute_metrics
        self.weights = weights  # class_weights, which weigh the validation loss as training weighs its loss
        self.documents = documents  # long_text = "chunks": each validation window's text, in evaluation order
        self.folder, self.resume_from, self.step_losses = folder, resume_from, step_losses
        self.selection = policy.Selection(task)
        self.best_weights: dict | None = None
        self.best_step = 0
        self.validation: tuple[np.ndarray, np.ndarray] | None = None
        self.epoch_started = time.perf_counter()

    def keep_validation_predictions(self, prediction) -> dict:
        """The Trainer's compute_metrics: the row of the epoch is built in on_evaluate, by the policy."""
        self.validation = (prediction.label_ids, policy.probabilities_of(prediction.predictions, self.task))
        return {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.resume_from is not None:  # the Trainer has loaded the checkpoint's weights by now
            saved = checkpoints.read_state(self.resume_from)
            self.selection.restore(saved)
            best = self.folder / saved["best_checkpoint"]
            self.best_step = checkpoints.step_of(best)
            if best == self.resume_from:
                self.best_weights = policy.snapshot_weights(model)
            else:
                self.best_weights = load_file(best / "model.safetensors", device=str(model.device))
            checkpoints.prune(self.folder)  # partial and damaged ones included
        if state.is_world_process_zero:
            self.progress.start(state.max_steps, state.global_step)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.step_losses and self.step_losses[-1].device.type == "cpu":  # free on the CPU: no device sync
            policy.check_losses([float(self.step_losses[-1])], state.global_step, self.task)
        if state.is_world_process_zero:
            self.progress.advance()
        if interrupt_requested():
            # Stop mid-epoch without saving: the last committed checkpoint stays the resume point.
            raise RunInterrupted(state.global_step)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        labels, probabilities = self.validation
        losses = torch.stack(self.step_losses).float().tolist() if self.step_losses else []
        self.step_losses.clear()
        policy.check_losses(losses, state.global_step - len(losses) + 1, self.task)  # on a GPU: once an epoch
        record = policy.epoch_record(round(state.epoch), losses, labels, probabilities,
                                     time.perf_counter() - self.epoch_started, self.compute_metrics,
                                     documents=self.documents, pooling=self.task.pooling, weights=self.weights)
        decision = self.selection.end_epoch(record)
        if decision.improved:
            self.best_weights, self.best_step = policy.snapshot_weights(model), state.global_step
        if decision.stop:
            control.should_training_stop = True
            control.should_save = False  # nothing left to resume
        if state.is_world_process_zero:
            self.progress.epoch(record)

    def checkpoint_state(self) -> dict:
        """What the checkpoint being saved commits: the policy's state and the best epoch's checkpoint."""
        return {**self.selection.state(), "best_checkpoint": f"{checkpoints.PREFIX}{self.best_step}"}

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # PolicyTrainer._save_checkpoint has committed the checkpoint
            checkpoints.prune(self.folder)
