"""The epoch loop around ``TrainStep``: the run-level work for fixed-shape graph replay.

Per epoch: replay the step over this epoch's batches, evaluate on the
validation split, keep the best weights in device memory, and keep a resume
point (written in the background on Ctrl-C, on running out of memory, or
once ``resume_point_seconds`` of training would be lost without one). What
it trains with and what it keeps (optimizer, schedule, clipping, validation
loss, best epoch, early stopping) comes from the shared training policy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugins.engines.cuda_graphs import checkpoints as resume_points
from plugins.engines.cuda_graphs.step import (
    CAPTURE_COST,
    DeviceSplit,
    TrainStep,
    batch_width,
    epoch_batches,
    plan_widths,
    planned_width,
)
from toolkit.api import (
    RunInterrupted,
    TaskConfig,
    TrainResult,
    attention_kernel,
    checkpoints,
    column,
    interrupt_requested,
    policy,
    predict_probabilities,
    wait_for_gpu_warm_up,
)


class StaticLoop:
    def __init__(self, model: Any, tokenizer: Any, splits: Any, task: TaskConfig, run_dir: Path, progress: Any,
                 compute_metrics: Any, bf16: bool, device: torch.device) -> None:
        self.task, self.progress, self.compute_metrics = task, progress, compute_metrics
        self.bf16, self.device, self.capture = bf16, device, device.type == "cuda"
        attention = attention_kernel(task.attention, bf16)
        if attention:
            model.set_attn_implementation(attention)
        self.model = model.to(device)
        self.validation = splits["validation"]
        self.documents = policy.validation_documents(self.validation)  # long_text = "chunks": pooled per text
        self.train_data = DeviceSplit.from_split(splits["train"], task.max_length, tokenizer.pad_token_id or 0, device)
        self.grouped = policy.group_by_length(task, self.train_data.host_lengths)
        self.steps_per_epoch = -(-len(self.train_data.host_lengths) // task.batch_size)
        # The widths of every epoch's steps are known up front (batches are seeded by epoch): capture few.
        needed = [self._step_widths(self._batches(epoch)) for epoch in range(1, task.epochs + 1)]
        plan = plan_widths(np.concatenate(needed), task.batch_size, CAPTURE_COST if self.capture else 0.0)
        self.epoch_widths = [[planned_width(plan, width) for width in epoch] for epoch in needed]
        self.optimizer = policy.build_optimizer(self.model, task, rate_on=device if self.capture else None)
        self.scheduler = policy.build_scheduler(self.optimizer, task, self.steps_per_epoch * task.epochs)
        self.loss_weights = policy.loss_weights(task, self.model, splits["train"])
        self.step = TrainStep(self.model, self.optimizer, self.train_data, task.batch_size, bf16, self.capture,
                              self.steps_per_epoch, task=task, loss_weights=self.loss_weights)
        self.checkpoints = resume_points.CheckpointWriter(run_dir / "checkpoints")
        self.selection = policy.Selection(task)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.global_step = 0
        self.resume_point: tuple[str, dict[str, Any], dict[str, Any]] | None = None
        self.seconds = {"evaluation": 0.0, "checkpoints": 0.0}  # where the time went, for the manifest

    def train(self, resume: bool) -> TrainResult:
        wait_for_gpu_warm_up()
        started = self.last_checkpoint = time.perf_counter()
        if resume:
            self._restore()
        else:
            torch.manual_seed(self.task.seed)
        self.progress.start(self.steps_per_epoch * self.task.epochs, self.global_step)
        interval = self.task.setting("resume_point_seconds")
        try:
            for epoch in range(len(self.selection.history) + 1, self.task.epochs + 1):
                record = self._train_epoch(epoch)
                decision = self.selection.end_epoch(record)
                if decision.improved:
                    self.best_state = policy.snapshot_weights(self.model)
                self.progress.epoch(record)
                if decision.stop:
                    break
                self.resume_point = self._timed("checkpoints", self._resume_state, epoch)
                if time.perf_counter() - self.last_checkpoint >= interval:
                    self._timed("checkpoints", self._write_resume_point)
        except (RunInterrupted, torch.OutOfMemoryError):
            self._write_resume_point()  # a Ctrl-C or running out of memory leaves the last epoch to resume from
            raise
        finally:
            self.progress.close()
            self._timed("checkpoints", self.checkpoints.wait)
        self.model.load_state_dict(self.best_state)
        history = self.selection.history
        return TrainResult(
            model=self.model,
            history=history,
            best_epoch=self.selection.best_epoch,
            train_seconds=time.perf_counter() - started,
            extra={"captured": self.capture, "bf16": self.bf16,
                   "group_by_length": self.grouped, "attention": self.model.config._attn_implementation,
                   "graph_widths": sorted(self.step.graphs), "global_steps": self.global_step,
                   "train_seconds_total": sum(r.seconds for r in history),
                   "seconds": {"capture": round(self.step.capture_seconds, 3),
                               **{key: round(value, 3) for key, value in self.seconds.items()}}},
        )

    def _batches(self, epoch: int) -> np.ndarray:
        return epoch_batches(self.train_data.host_lengths, self.task.batch_size, self.task.seed, epoch, self.grouped)

    def _step_widths(self, batches: np.ndarray) -> np.ndarray:
        return np.array([batch_width(self.train_data.host_lengths, rows, self.task.max_length,
                                     self.task.dynamic_padding) for rows in batches])

    def _train_epoch(self, epoch: int):
        epoch_started = time.perf_counter()
        self.model.train()
        batches = self._batches(epoch)
        on_device = torch.from_numpy(batches).to(self.device)
        for index, width in enumerate(self.epoch_widths[epoch - 1]):
            self.step.run(on_device[index], width)
            self.scheduler.step()
            self.global_step += 1
            self.progress.advance()
            if interrupt_requested():
                raise RunInterrupted(self.global_step)  # the last epoch checkpoint stays the resume point
        step_losses = self.step.take_step_losses()
        # The losses stay on the device until the epoch ends (no sync per step): the first bad step is named.
        policy.check_losses(step_losses, self.global_step - len(step_losses) + 1, self.task)
        return self._timed("evaluation", self._evaluate, epoch, step_losses, epoch_started)

    def _evaluate(self, epoch: int, step_losses: list[float], epoch_started: float):
        probabilities = predict_probabilities(self.model, self.validation, self.task.eval_batch_size, self.bf16)
        self.model.train()
        return policy.epoch_record(epoch, step_losses, np.asarray(column(self.validation, "labels")), probabilities,
                                   time.perf_counter() - epoch_started, self.compute_metrics,
                                   documents=self.documents, pooling=self.task.pooling,
                                   weights=None if self.loss_weights is None else self.loss_weights.cpu().numpy())

    def _timed(self, what: str, function, *args):
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[what] += time.perf_counter() - started

    def _resume_state(self, epoch: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Everything a resume needs after ``epoch``, copied in device memory (fast) to write later."""
        state = {
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.capture else None,
        }
        state = resume_points.snapshot(state)
        # best_state is already a private copy that training never changes: no second clone.
        state["best_model"] = self.best_state if self.selection.best_epoch != epoch else None
        return f"{checkpoints.PREFIX}{self.global_step}", state, self.selection.state()

    def _write_resume_point(self) -> None:
        if self.resume_point is not None:
            self.checkpoints.save(*self.resume_point)
            self.resume_point = None
            self.last_checkpoint = time.perf_counter()

    def _restore(self) -> None:
        path = checkpoints.latest(self.checkpoints.folder)
        checkpoints.prune(self.checkpoints.folder)  # partial and damaged ones included
        state = resume_points.load(path)
        self.selection.restore(checkpoints.read_state(path))
        self.model.load_state_dict(state["model"])
        rates = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, rate in zip(self.optimizer.param_groups, rates):
            if isinstance(rate, torch.Tensor):  # keep the device tensors the graphs read, holding the saved rate
                rate.copy_(group["lr"])
                group["lr"] = rate
        self.scheduler.load_state_dict(state["scheduler"])
        best_model = state["best_model"] or state["model"]
        self.best_state = {key: value.to(self.device) for key, value in best_model.items()}
        self.global_step = state["global_step"]
        torch.set_rng_state(state["rng"])
        if self.capture and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
