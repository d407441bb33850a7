"""The training loop: one for every engine, which only provides a step strategy.

Per epoch: the batch plan's steps (each through the strategy), the losses
checked, evaluation on the validation split (sharded across processes and
gathered exactly), the epoch record, selection and early stopping, the best
weights kept in device memory, and a resume point (written in the
background each epoch, or as the strategy's ``checkpoint_seconds`` asks, and
always on Ctrl-C or running out of memory). Every task key is read here or
in the policy; events go to listeners (``toolkit.training.events``).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.config import TaskConfig
from toolkit.data.rows import column
from toolkit.errors import TkError
from toolkit.evaluation.inference import predict_probabilities
from toolkit.records import EpochRecord, TrainResult
from toolkit.training import checkpoints, distributed, policy, resume_points
from toolkit.training.batches import BatchPlan, DeviceSplit
from toolkit.training.device import attention_kernel, use_bf16, wait_for_gpu_warm_up
from toolkit.training.events import Events
from toolkit.training.interrupt import RunInterrupted, interrupt_requested
from toolkit.training.strategy import StepPlan, StepStrategy


class TrainingLoop:
    def __init__(self, model: Any, tokenizer: Any, splits: Any, task: TaskConfig, run_dir: Path,
                 strategy: StepStrategy, events: Events, compute_metrics: Any) -> None:
        distributed.join()
        self.processes, self.rank = distributed.world_size(), distributed.rank()
        self.main = self.rank == 0
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{distributed.local_rank()}" if cuda else "cpu")
        self.task, self.strategy, self.events, self.compute_metrics = task, strategy, events, compute_metrics
        self.bf16 = use_bf16(task.bf16)
        attention = attention_kernel(task.attention, self.bf16)
        if attention:
            model.set_attn_implementation(attention)
        self.model = model.to(self.device)
        self.validation = splits["validation"]
        self.documents = policy.validation_documents(self.validation)  # long_text = "chunks": pooled per text
        data = DeviceSplit.from_split(splits["train"], task.max_length, tokenizer.pad_token_id or 0, self.device)
        self.grouped = policy.group_by_length(task, data.host_lengths)
        self.plan = BatchPlan.make(data.host_lengths, task, self.processes, self.rank, self.grouped,
                                   strategy.width_step, strategy.capture_cost)
        steps = self.plan.steps_per_epoch
        rate_on = self.device if strategy.optimizer_on_device(self.device) else None
        self.optimizer = policy.build_optimizer(self.model, task, rate_on=rate_on)
        self.scheduler = policy.build_scheduler(self.optimizer, task, steps * task.epochs)
        self.loss_weights = policy.loss_weights(task, self.model, splits["train"])
        self.step_plan = StepPlan(data, task.batch_size, self.processes, self.rank, self.bf16, steps,
                                  partial(policy.training_loss, task=task, weights=self.loss_weights),
                                  partial(policy.batch_weight, task=task, weights=self.loss_weights),
                                  torch.zeros(1, device=self.device))
        strategy.setup(self.model, self.optimizer, self.step_plan)
        self.writer = resume_points.CheckpointWriter(run_dir / "checkpoints")
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
            torch.manual_seed(self.task.seed + self.rank)  # each process its own dropout masks
        self.events.emit("start", self.plan.steps_per_epoch * self.task.epochs, self.global_step)
        try:
            with self.strategy.training():
                self._epochs()
        except (RunInterrupted, torch.OutOfMemoryError, distributed.ProcessLost):
            # A Ctrl-C, running out of memory or a process of the job that died: the last epoch to resume from.
            self._write_resume_point()
            raise
        finally:
            self.events.emit("end")
            self._timed("checkpoints", self.writer.wait)
        self.model.load_state_dict(self.best_state)
        return TrainResult(model=self.model, history=self.selection.history, best_epoch=self.selection.best_epoch,
                           train_seconds=time.perf_counter() - started, extra=self._facts(),
                           keep_for_resume=self._keep_trained if self.processes == 1 else None)

    def _keep_trained(self) -> None:
        """The trained run as its last resume point: the best weights (as the model, kept from before any
        calibration changed the live one), the history that chose them; tk run --resume then trains no
        further epoch and goes straight to scoring and saving."""
        name = f"{checkpoints.PREFIX}{self.global_step}"
        if (self.writer.folder / name).is_dir():  # resumed from this very point and interrupted again
            return
        cuda = self.device.type == "cuda"
        state = resume_points.snapshot({
            "global_step": self.global_step, "processes": 1, "model": self.best_state,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": [torch.get_rng_state()], "cuda_rng": [torch.cuda.get_rng_state() if cuda else None]})
        state["best_model"] = None
        self.writer.save(name, state, self.selection.state())
        self.writer.wait()

    def _epochs(self) -> None:
        if self.selection.finished:  # resumed after the last epoch: nothing left to train
            return
        for epoch in range(len(self.selection.history) + 1, self.task.epochs + 1):
            record = self._train_epoch(epoch)
            decision = self.selection.end_epoch(record)
            if decision.improved:
                self.best_state = policy.snapshot_weights(self.model)
            self.events.emit("epoch", record)  # a listener may end the run here (EndedEarly)
            if decision.stop:
                return
            self.resume_point = self._timed("checkpoints", self._resume_state, epoch)
            if time.perf_counter() - self.last_checkpoint >= self.strategy.checkpoint_seconds():
                self._timed("checkpoints", self._write_resume_point)

    def _train_epoch(self, epoch: int) -> EpochRecord:
        epoch_started = time.perf_counter()
        self.model.train()
        several = self.processes > 1
        on_device = torch.from_numpy(self.plan.batches(epoch)).to(self.device)
        for index, width in enumerate(self.plan.widths[epoch - 1]):
            if several:  # summed with the gradients: every process stops at the same step
                self.step_plan.flag.fill_(float(interrupt_requested()))
            self.strategy.train_step(on_device[index], width)
            self.scheduler.step()
            self.global_step += 1
            self.events.emit("step", self.global_step)
            if (bool(self.step_plan.flag.item()) if several else interrupt_requested()):
                raise RunInterrupted(self.global_step)  # the last checkpoint stays the resume point
        # The losses stay on the device until the epoch ends (no sync per step): the first bad step is named.
        losses = distributed.sum_losses(self.strategy.take_losses())
        policy.check_losses(losses, self.global_step - len(losses) + 1, self.task)
        return self._timed("evaluation", self._evaluate, epoch, losses, epoch_started)

    def _evaluate(self, epoch: int, step_losses: list[float], epoch_started: float) -> EpochRecord:
        probabilities = self._validation_probabilities()
        self.model.train()
        weights = None if self.loss_weights is None else self.loss_weights.cpu().numpy()
        return policy.epoch_record(epoch, step_losses, np.asarray(column(self.validation, "labels")), probabilities,
                                   time.perf_counter() - epoch_started, self.compute_metrics,
                                   documents=self.documents, pooling=self.task.pooling, weights=weights)

    def _validation_probabilities(self) -> np.ndarray:
        """Each process scores every ``processes``-th row; the parts are put back in row order on every process
        (each row scored once: no padded duplicates)."""
        score = partial(predict_probabilities, batch_size=self.task.eval_batch_size, bf16=self.bf16)
        if self.processes == 1:
            return score(self.model, self.validation)
        rows = len(self.validation)
        parts = distributed.gather(score(self.model, self.validation.select(range(self.rank, rows, self.processes))))
        probabilities = np.empty((rows, parts[0].shape[1]), dtype=parts[0].dtype)
        for rank, part in enumerate(parts):
            probabilities[rank::self.processes] = part
        return probabilities

    def _timed(self, what: str, function, *args):
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[what] += time.perf_counter() - started

    def _resume_state(self, epoch: int) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """Everything a resume needs after ``epoch``, copied in device memory (fast) to write later; every
        process's random state is gathered to the main process, which alone writes."""
        cuda = self.device.type == "cuda"
        randomness = distributed.gather((torch.get_rng_state(), torch.cuda.get_rng_state() if cuda else None))
        if not self.main:
            return None
        state = resume_points.snapshot({
            "global_step": self.global_step,
            "processes": self.processes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": [cpu for cpu, _ in randomness],
            "cuda_rng": [gpu for _, gpu in randomness],
        })
        # best_state is already a private copy that training never changes: no second clone.
        state["best_model"] = self.best_state if self.selection.best_epoch != epoch else None
        return f"{checkpoints.PREFIX}{self.global_step}", state, self.selection.state()

    def _write_resume_point(self) -> None:
        if self.resume_point is not None:
            self.writer.save(*self.resume_point)
            self.events.emit("checkpoint", self.writer.folder / self.resume_point[0])
            self.resume_point = None
        self.last_checkpoint = time.perf_counter()

    def _restore(self) -> None:
        path = checkpoints.latest(self.writer.folder)
        if self.main:
            checkpoints.prune(self.writer.folder)  # partial and damaged ones included
        state = resume_points.load(path)
        trained_by = state.get("processes", 1)
        if trained_by != self.processes:
            raise TkError(f"This run was trained by {trained_by} process(es) and is being resumed by "
                          f"{self.processes}: each step's global batch would change. Resume it with "
                          f"torchrun --nproc_per_node {trained_by} (or without torchrun for 1).")
        self.selection.restore(checkpoints.read_state(path))
        self.model.load_state_dict(state["model"])
        rates = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, rate in zip(self.optimizer.param_groups, rates):
            if isinstance(rate, torch.Tensor):  # keep the device tensors a captured graph reads, holding the saved rate
                rate.copy_(group["lr"])
                group["lr"] = rate
        self.scheduler.load_state_dict(state["scheduler"])
        best_model = state["best_model"] or state["model"]
        self.best_state = {key: value.to(self.device) for key, value in best_model.items()}
        self.global_step = state["global_step"]
        rng, cuda_rng = state["rng"], state.get("cuda_rng")
        torch.set_rng_state(rng[self.rank] if isinstance(rng, list) else rng)
        if isinstance(cuda_rng, torch.Tensor):
            cuda_rng = [cuda_rng]
        if self.device.type == "cuda" and cuda_rng and cuda_rng[self.rank] is not None:
            torch.cuda.set_rng_state(cuda_rng[self.rank])

    def _facts(self) -> dict[str, Any]:
        history = self.selection.history
        return {"strategy": self.strategy.name, "processes": self.processes,
                "global_batch": self.task.batch_size * self.processes, "bf16": self.bf16,
                "group_by_length": self.grouped, "attention": self.model.config._attn_implementation,
                "widths": self.plan.distinct_widths(), "global_steps": self.global_step,
                "train_seconds_total": sum(r.seconds for r in history),
                **self.strategy.facts(),
                "seconds": {**{key: round(value, 3) for key, value in self.strategy.seconds().items()},
                            **{key: round(value, 3) for key, value in self.seconds.items()}}}


def train(model: Any, tokenizer: Any, splits: Any, task: TaskConfig, run_dir: Path, strategy: StepStrategy,
          listeners: list[Any], compute_metrics: Any, resume: bool) -> TrainResult:
    """Fine-tune ``model`` on ``splits["train"]`` with ``strategy``'s steps; the best epoch's weights."""
    loop = TrainingLoop(model, tokenizer, splits, task, run_dir, strategy, Events(listeners), compute_metrics)
    try:
        return loop.train(resume)
    except torch.OutOfMemoryError as error:
        raise policy.out_of_memory(task, error) from None
