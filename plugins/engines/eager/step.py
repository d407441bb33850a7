"""The eager step, and the CPU levers around it (imported when training starts: it needs torch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from plugins.engines.eager.embedding_gradient import reused_embedding_gradient
from plugins.engines.eager.fast_dropout import fast_dropout
from toolkit.api import StepStrategy, policy, sum_gradients

# On the CPU each batch width a run meets for the first time costs oneDNN about 47 ms of kernel creation in a
# MiniLM step (16 x 20-60 tokens, bf16), and Sentiment140's length-grouped batches meet about 55 widths, more
# kernels than its cache keeps: widths in steps of 4 tokens (benchmarks/NOTES.md). On a GPU, multiples of 8 suit
# the tensor cores.
CPU_WIDTH_STEP = 4
GPU_WIDTH_STEP = 8


class EagerSteps(StepStrategy):
    name = "eager"

    def __init__(self, fast_dropout: bool = True) -> None:
        self.use_fast_dropout = fast_dropout
        self.on_cpu = not torch.cuda.is_available()
        self.width_step = CPU_WIDTH_STEP if self.on_cpu else GPU_WIDTH_STEP
        self.losses: list[torch.Tensor] = []
        self.gradient = None  # the reused embedding gradient, while training on the CPU in one process

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        dropout = self.use_fast_dropout and self.on_cpu
        one_cpu_process = self.on_cpu and self.plan.processes == 1
        with (fast_dropout(self.model) if dropout else contextlib.nullcontext(),
              (reused_embedding_gradient(self.model) if one_cpu_process else contextlib.nullcontext()) as gradient):
            self.gradient = gradient
            try:
                yield
            finally:
                self.gradient = None

    def train_step(self, rows: torch.Tensor, width: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.plan.loss(self.model, rows, width)
        loss.backward()
        sum_gradients(self.params, self.plan.flag)
        if self.on_cpu:  # a branch on the norm is free on the CPU; on a GPU it would wait for the device
            policy.clip_gradients_if_needed(self.params, self.gradient.rows_of() if self.gradient else None)
        else:
            policy.clip_gradients(self.params)
        self.optimizer.step()
        self.losses.append(loss.detach())

    def take_losses(self) -> list[float]:
        losses = torch.stack(self.losses).float().tolist() if self.losses else []
        self.losses.clear()
        return losses

    def facts(self) -> dict[str, Any]:
        return {"fast_dropout": self.use_fast_dropout and self.on_cpu}
