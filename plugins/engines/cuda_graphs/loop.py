"""The epoch loop around ``TrainStep``: what the Trainer does for a run, for fixed-shape graph replay.

Per epoch: replay the step over this epoch's batches, evaluate on the
validation split, keep the best weights in device memory, stop early after
``patience`` epochs without improvement, and keep a resume point (written
in the background on Ctrl-C, or once a minute of training would be lost
without one). It trains as the Trainer plugin does: AdamW without decay on
biases and LayerNorm weights, transformers' learning-rate schedules, gradient
norm clipped to 1, the same selection and early-stopping rules.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugins.engines.cuda_graphs import checkpoints as epoch_checkpoints
from plugins.engines.cuda_graphs.step import DeviceSplit, TrainStep, batch_width, epoch_batches
from toolkit.config import TaskConfig
from toolkit.training.device import attention_kernel, wait_for_gpu_warm_up
from toolkit.evaluation.inference import predict_probabilities
from toolkit.training.interrupt import RunInterrupted, interrupt_requested
from toolkit.records import EpochRecord, TrainResult
from toolkit.training.policy import best_epoch, group_by_length, improved

# Each epoch's resume state is copied in device memory, and written to disk on Ctrl-C or once
# there is a minute of training to lose: on a GPU a reference-protocol epoch takes about a
# second, and BERT-base's weights and optimizer state (1.3 GB) take longer than that to write.
CHECKPOINT_INTERVAL = 60.0


def build_optimizer(model: Any, task: TaskConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW as the Trainer builds it, with the learning rate held in a device tensor a graph can read."""
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], ["bias", "layernorm", "rmsnorm"]))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n in decay], "weight_decay": task.weight_decay},
              {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
    groups = [{**g, "lr": torch.tensor(task.learning_rate, device=device)} for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=task.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                             fused=True, capturable=device.type == "cuda")


class Schedule:
    """transformers' learning-rate schedule, written into the optimizer's device-tensor rates.

    Every schedule tk offers is a LambdaLR: a factor of the step number, read
    here directly (stepping a scheduler on tensor rates would read them back
    to the host every step).
    """

    def __init__(self, task: TaskConfig, total_steps: int, optimizer: torch.optim.Optimizer) -> None:
        from transformers import get_scheduler

        self.optimizer, self.peak = optimizer, task.learning_rate
        warmup = int(np.ceil(task.warmup_ratio * total_steps))
        stand_in = torch.optim.SGD([torch.zeros(1)], lr=1.0)
        self.factor = get_scheduler(task.lr_scheduler, stand_in, num_warmup_steps=warmup,
                                    num_training_steps=total_steps).lr_lambdas[0]

    def set(self, step: int) -> None:
        rate = self.peak * self.factor(step)
        for group in self.optimizer.param_groups:
            group["lr"].fill_(rate)


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
        self.train_data = DeviceSplit.from_split(splits["train"], task.max_length, tokenizer.pad_token_id or 0, device)
        self.grouped = group_by_length(task, self.train_data.host_lengths)
        self.steps_per_epoch = -(-len(self.train_data.host_lengths) // task.batch_size)
        self.optimizer = build_optimizer(self.model, task, device)
        self.schedule = Schedule(task, self.steps_per_epoch * task.epochs, self.optimizer)
        self.step = TrainStep(self.model, self.optimizer, self.train_data, task.batch_size, bf16, self.capture)
        self.checkpoints = epoch_checkpoints.CheckpointWriter(run_dir / "checkpoints")
        self.history: list[EpochRecord] = []
        self.best: EpochRecord | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_without_gain = 0
        self.global_step = 0
        self.resume_point: tuple[str, dict[str, Any]] | None = None
        self.seconds = {"evaluation": 0.0, "checkpoints": 0.0}  # where the time went, for the manifest

    def train(self, resume: bool) -> TrainResult:
        wait_for_gpu_warm_up()
        started = self.last_checkpoint = time.perf_counter()
        if resume:
            self._restore()
        else:
            torch.manual_seed(self.task.seed)
        self.progress.start(self.steps_per_epoch * self.task.epochs, self.global_step)
        try:
            for epoch in range(len(self.history) + 1, self.task.epochs + 1):
                record = self._train_epoch(epoch)
                self.progress.epoch(record)
                if self._should_stop() or epoch == self.task.epochs:
                    break
                self.resume_point = self._timed("checkpoints", self._resume_state, epoch)
                if time.perf_counter() - self.last_checkpoint >= CHECKPOINT_INTERVAL:
                    self._timed("checkpoints", self._write_resume_point)
        except (RunInterrupted, torch.OutOfMemoryError):
            self._write_resume_point()  # a Ctrl-C or running out of memory leaves the last epoch to resume from
            raise
        finally:
            self.progress.close()
            self._timed("checkpoints", self.checkpoints.wait)
        self.model.load_state_dict(self.best_state)
        return TrainResult(
            model=self.model,
            history=self.history,
            best_epoch=best_epoch(self.history, self.task.select_metric),
            train_seconds=time.perf_counter() - started,
            extra={"engine": "cuda-graphs" if self.capture else "static-eager", "bf16": self.bf16,
                   "group_by_length": self.grouped, "attention": self.model.config._attn_implementation,
                   "graph_widths": sorted(self.step.graphs), "global_steps": self.global_step,
                   "train_seconds_total": sum(r.seconds for r in self.history),
                   "seconds": {"capture": round(self.step.capture_seconds, 3),
                               **{key: round(value, 3) for key, value in self.seconds.items()}}},
        )

    def _train_epoch(self, epoch: int) -> EpochRecord:
        epoch_started = time.perf_counter()
        self.model.train()
        batches = epoch_batches(self.train_data.host_lengths, self.task.batch_size, self.task.seed, epoch,
                                self.grouped)
        on_device = torch.from_numpy(batches).to(self.device)
        for index, rows in enumerate(batches):
            width = batch_width(self.train_data.host_lengths, rows, self.task.max_length, self.task.dynamic_padding)
            self.schedule.set(self.global_step)
            self.step.run(on_device[index], width)
            self.global_step += 1
            self.progress.advance()
            if interrupt_requested():
                raise RunInterrupted(self.global_step)  # the last epoch checkpoint stays the resume point
        train_loss = self.step.take_loss_sum() / len(batches)
        record = self._timed("evaluation", self._evaluate, epoch, train_loss, time.perf_counter() - epoch_started)
        self.history.append(record)
        return record

    def _evaluate(self, epoch: int, train_loss: float, train_seconds: float) -> EpochRecord:
        evaluation_started = time.perf_counter()
        probabilities = predict_probabilities(self.model, self.validation, self.task.eval_batch_size, self.bf16)
        self.model.train()
        labels = np.asarray(self.validation["labels"])
        picked = probabilities[np.arange(len(labels)), labels]
        scores = self.compute_metrics(labels, probabilities)
        return EpochRecord(epoch=epoch, train_loss=train_loss,
                           validation_loss=float(-np.log(np.clip(picked, 1e-12, None)).mean()),
                           accuracy=float(scores.get("accuracy", float("nan"))),
                           f1=float(scores.get("f1", float("nan"))),
                           seconds=train_seconds + time.perf_counter() - evaluation_started)

    def _timed(self, what: str, function, *args):
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[what] += time.perf_counter() - started

    def _should_stop(self) -> bool:
        """Keep the best weights so far; True once ``patience`` epochs in a row brought no gain."""
        record = self.history[-1]
        if improved(record, self.best, self.task.select_metric):
            self.best, self.epochs_without_gain = record, 0
            self.best_state = epoch_checkpoints.snapshot(self.model.state_dict())
            return False
        self.epochs_without_gain += 1
        return bool(self.task.patience) and self.epochs_without_gain >= self.task.patience

    def _resume_state(self, epoch: int) -> tuple[str, dict[str, Any]]:
        """Everything a resume needs after ``epoch``, copied in device memory (fast) to write later."""
        state = {
            "epoch": epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": [r.as_dict() for r in self.history],
            "best_epoch": self.best.epoch,
            "epochs_without_gain": self.epochs_without_gain,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.capture else None,
        }
        state = epoch_checkpoints.snapshot(state)
        # best_state is already a private copy that training never changes: no second clone.
        state["best_model"] = self.best_state if self.best.epoch != epoch else None
        return f"checkpoint-{self.global_step}", state

    def _write_resume_point(self) -> None:
        if self.resume_point is not None:
            self.checkpoints.save(*self.resume_point)
            self.resume_point = None
            self.last_checkpoint = time.perf_counter()

    def _restore(self) -> None:
        path = epoch_checkpoints.latest(self.checkpoints.folder)
        state = epoch_checkpoints.load(path)
        self.model.load_state_dict(state["model"])
        rates = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"] = rate  # keep the device tensors the graphs will read, not the saved copies
        self.history = [EpochRecord(**entry) for entry in state["history"]]
        self.best = next(r for r in self.history if r.epoch == state["best_epoch"])
        best_model = state["best_model"] or state["model"]
        self.best_state = {key: value.to(self.device) for key, value in best_model.items()}
        self.epochs_without_gain = state["epochs_without_gain"]
        self.global_step = state["global_step"]
        torch.set_rng_state(state["rng"])
        if self.capture and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
