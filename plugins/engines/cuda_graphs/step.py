"""The training step at a few fixed batch shapes, captured once per shape as a CUDA graph.

An eager BERT step on a big GPU spends most of its time launching kernels
(about 35 ms per step on an H200 whatever the batch size, against under 9 ms
replayed as a graph). A graph replays fixed shapes at fixed addresses, so:

- the training split lives on the device, padded once to ``max_length``;
- each batch is a row of ``batch_size`` row indices (-1 fills a short last
  batch: those slots get weight 0 in the loss, so it equals the mean over the
  real rows);
- a batch is cut to one of a few widths (multiples of ``WIDTH_STEP`` tokens up
  to ``max_length``, chosen for the whole run by ``plan_widths``), and each
  width's whole step (forward, loss, backward, gradient clipping, AdamW) is
  captured the first time it is needed.

Without CUDA the same step runs eagerly (that is how the tests check it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from toolkit.api import column, policy

WIDTH_STEP = 32  # few enough shapes to capture, little enough padding at these widths
MEGABATCH = 50  # length grouping sorts within windows of 50 batches, like the Trainer's sampler

# The cost model plan_widths weighs, in units of a replayed step's fixed cost (its kernel launches). Measured on
# an H200 at BERT-base shape (benchmarks/NOTES.md): replayed steps of 16, 32 and 64 x 128 tokens took 8.4, 12.0 and
# 19.6 ms, i.e. 4.8 ms plus 1.8 us per padded token; a width's capture (two eager warm-up passes, then the
# recording) took about 0.2 s, about 40 fixed costs.
STEP_COST_PER_TOKEN = 0.75 / 2048
CAPTURE_COST = 40.0


@dataclass
class DeviceSplit:
    """A tokenized split as padded tensors on the training device."""

    ids: torch.Tensor  # (rows, max_length), padded with the pad id
    lengths: torch.Tensor  # (rows,)
    labels: torch.Tensor  # (rows,) class ids; multi-label: (rows, labels) multi-hot floats
    host_lengths: np.ndarray

    @classmethod
    def from_split(cls, split: Any, max_length: int, pad_id: int, device: torch.device) -> DeviceSplit:
        lengths = np.asarray(column(split, "length"), dtype=np.int64)
        ids = np.full((len(lengths), max_length), pad_id, dtype=np.int64)
        for row, tokens in enumerate(column(split, "input_ids")):
            ids[row, :len(tokens)] = tokens
        labels = np.asarray(column(split, "labels"))
        labels = labels.astype(np.float32 if labels.ndim == 2 else np.int64)
        return cls(torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device),
                    torch.from_numpy(labels).to(device), lengths)


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, grouped: bool) -> np.ndarray:
    """This epoch's batches as an (n_batches, batch_size) array of row indices, -1 where a batch is short.

    Seeded by (seed, epoch), so a resumed run sees the same order.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if grouped:
        window = MEGABATCH * batch_size
        order = np.concatenate([chunk[np.argsort(-lengths[chunk], kind="stable")]
                                for chunk in np.split(order, range(window, len(order), window))])
    batches = np.full((-(-len(order) // batch_size), batch_size), -1, dtype=np.int64)
    batches.flat[:len(order)] = order
    if grouped:
        rng.shuffle(batches)  # similar lengths share a batch; the batches still come in random order
    return batches


def batch_width(lengths: np.ndarray, rows: np.ndarray, max_length: int, dynamic_padding: bool) -> int:
    """The padded width of one batch: its longest text rounded up to WIDTH_STEP, at most max_length."""
    if not dynamic_padding:
        return max_length
    longest = int(lengths[rows[rows >= 0]].max())
    return min(max_length, -(-longest // WIDTH_STEP) * WIDTH_STEP)


def plan_widths(widths: np.ndarray, batch_size: int, capture_cost: float = CAPTURE_COST) -> list[int]:
    """The widths to capture for a run whose steps need ``widths`` (``batch_width`` of each step).

    Each step then runs at the smallest planned width that holds it. One more
    width costs a capture; one fewer pads the steps it held to a wider one.
    The cheapest set under the cost model above is found exactly (a dynamic
    programme over the distinct widths, at most max_length / WIDTH_STEP of
    them). With ``capture_cost`` 0 (eager steps: nothing to capture) every
    width is its own.
    """
    candidates, counts = np.unique(widths, return_counts=True)

    def steps_cost(upto: int, since: int) -> float:  # candidates since..upto-1 all run at candidates[upto-1]
        return counts[since:upto].sum() * (1.0 + STEP_COST_PER_TOKEN * batch_size * candidates[upto - 1])

    # best[j]: the cheapest plan for the steps of the j narrowest widths, candidates[j-1] planned; chosen[j] its set.
    best, chosen = [0.0], [[]]
    for upto in range(1, len(candidates) + 1):
        since = min(range(upto), key=lambda s: best[s] + steps_cost(upto, s))
        best.append(best[since] + capture_cost + steps_cost(upto, since))
        chosen.append(chosen[since] + [int(candidates[upto - 1])])
    return chosen[-1]


def planned_width(plan: list[int], width: int) -> int:
    return next(planned for planned in plan if planned >= width)


class TrainStep:
    """One optimizer step on the batch in ``self.slots``, eager or as a replayed CUDA graph per width.

    ``task`` decides the loss (``policy.training_loss``: cross-entropy, or multi-label BCE).
    """

    def __init__(self, model: Any, optimizer: torch.optim.Optimizer, data: DeviceSplit, batch_size: int,
                 bf16: bool, capture: bool, steps_per_epoch: int = 1024, *, task: Any,
                 loss_weights: torch.Tensor | None = None) -> None:
        device = data.ids.device
        self.model, self.optimizer, self.data, self.task = model, optimizer, data, task
        self.loss_weights = loss_weights  # class_weights on the device, or None
        self.bf16, self.capture = bf16, capture
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.slots = torch.full((batch_size,), -1, dtype=torch.long, device=device)
        self.positions = torch.arange(data.ids.shape[1], device=device)
        # Each step's loss, written on the device (no sync per step) and read once an epoch.
        self.step_losses = torch.zeros(steps_per_epoch, device=device)
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.capture_seconds = 0.0

    def run(self, rows: torch.Tensor, width: int) -> None:
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

    def take_step_losses(self) -> list[float]:
        """The losses of the steps since the last call, in order."""
        count = int(self.cursor)
        losses = self.step_losses[:count].tolist()
        self.cursor.zero_()
        return losses

    def _forward_backward(self, width: int) -> torch.Tensor:
        valid = self.slots >= 0
        rows = self.slots.clamp(min=0)
        input_ids = self.data.ids[rows, :width]
        mask = (self.positions[:width] < self.data.lengths[rows, None]).long()
        # cache_enabled=False: autocast's weight cache would hold tensors from outside the graph.
        with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits
        loss = policy.training_loss(logits, self.data.labels[rows], self.task, self.loss_weights, valid)
        loss.backward()
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
