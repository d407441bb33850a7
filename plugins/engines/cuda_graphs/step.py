"""The training step at a few fixed batch shapes, captured once per shape as a CUDA graph.

An eager BERT step on a big GPU spends most of its time launching kernels
(about 35 ms per step on an H200 whatever the batch size, against under 9 ms
replayed as a graph). A graph replays fixed shapes at fixed addresses; the
core loop's batch plan gives them: the training split on the device padded
once, each global batch a fixed row of row indices (-1 slots weigh 0 in the
loss), and a few widths (multiples of ``WIDTH_STEP``, chosen for the whole run
under ``CAPTURE_COST``). Each width's whole step (forward, loss, backward, the
all-reduce of the gradients under torchrun, clipping, AdamW) is captured the
first time it is needed.

Without CUDA the same step runs eagerly (that is how the tests check it).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from toolkit.api import StepPlan, StepStrategy, policy, sum_gradients

WIDTH_STEP = 32  # few enough shapes to capture, little enough padding at these widths
# A width's capture (two eager warm-up passes, then the recording) took about 0.2 s on an H200, about 40 replayed
# steps' fixed cost (benchmarks/NOTES.md).
CAPTURE_COST = 40.0


class GraphSteps(StepStrategy):
    """Each step eager, or a replayed CUDA graph per width on a GPU (the batch's rows in ``self.slots``)."""

    name = "cuda-graphs"
    width_step = WIDTH_STEP

    def __init__(self, resume_point_seconds: float = 60) -> None:
        self.resume_point_seconds = resume_point_seconds
        self.capture = torch.cuda.is_available()
        self.capture_cost = CAPTURE_COST if self.capture else 0.0
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.capture_seconds = 0.0

    def checkpoint_seconds(self) -> float:
        return self.resume_point_seconds  # a resume point costs a copy of the whole state: not every short epoch

    def optimizer_on_device(self, device: torch.device) -> bool:
        return self.capture

    def setup(self, model: Any, optimizer: torch.optim.Optimizer, plan: StepPlan) -> None:
        super().setup(model, optimizer, plan)
        device = plan.data.ids.device
        self.slots = torch.full((plan.batch_size * plan.processes,), -1, dtype=torch.long, device=device)
        # Each step's loss, written on the device (no sync per step) and read once an epoch.
        self.step_losses = torch.zeros(plan.steps_per_epoch, device=device)
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)

    def train_step(self, rows: torch.Tensor, width: int) -> None:
        self.slots.copy_(rows, non_blocking=True)
        if not self.capture:
            self.optimizer.zero_grad(set_to_none=True)
            self._step(width)
            return
        if width not in self.graphs:
            started = time.perf_counter()
            self.graphs[width] = self._capture(width)
            self.capture_seconds += time.perf_counter() - started
        self.graphs[width].replay()

    def take_losses(self) -> list[float]:
        count = int(self.cursor)
        losses = self.step_losses[:count].tolist()
        self.cursor.zero_()
        return losses

    def facts(self) -> dict[str, Any]:
        return {"captured": self.capture, "graph_widths": sorted(self.graphs)}

    def seconds(self) -> dict[str, float]:
        return {"capture": self.capture_seconds}

    def _forward_backward(self, width: int) -> torch.Tensor:
        loss = self.plan.loss(self.model, self.slots, width)
        loss.backward()
        sum_gradients(self.params, self.plan.flag)
        policy.clip_gradients(self.params)
        return loss.detach()

    def _step(self, width: int) -> None:
        loss = self._forward_backward(width)
        self.optimizer.step()
        self.step_losses.index_copy_(0, self.cursor, loss.view(1))
        self.cursor += 1

    def _capture(self, width: int) -> torch.cuda.CUDAGraph:
        prime_optimizer_state(self.optimizer, self.params)
        # Warm up on a side stream first: cuBLAS handles and other lazy set-up must not happen during capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward_backward(width)
        torch.cuda.current_stream().wait_stream(side)
        for p in self.params:
            p.grad = None  # the graph's backward then writes fresh gradients at its own addresses
        graph = torch.cuda.CUDAGraph()
        # One memory pool for all widths: each replay writes everything it reads, so graphs may share memory.
        with torch.cuda.graph(graph, pool=self.pool):
            self._step(width)
        self.pool = graph.pool()
        return graph


def prime_optimizer_state(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Create AdamW's moment buffers before capture, leaving weights and step counts as they were.

    Created during capture, their zero-fill would be recorded and repeated on
    every replay. A step with zero gradients at learning rate 0 creates them
    (all zero) and moves nothing; its step count is then set back to 0.
    """
    if optimizer.state:
        return
    rates = [group["lr"].clone() for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"].zero_()
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for state in optimizer.state.values():
        state["step"].zero_()
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"].copy_(rate)
    for p in params:
        p.grad = None
