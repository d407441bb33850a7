"""The batch plan of a run: which rows each step trains on, and at which padded width.

The training split lives on the training device, padded once to
``max_length``. Each epoch's batches are drawn from ``(seed, epoch)``, so a
resumed run, every process of a data-parallel run, and every step strategy
see the same order. A batch is a row of ``batch_size x processes`` row
indices (-1 fills a short last batch); process ``rank`` trains its slice.
Its width is its longest text rounded up to the strategy's width step (few
distinct shapes: oneDNN builds kernels per shape, CUDA graphs capture per
shape), at most ``max_length``; padded positions are masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from toolkit.data.rows import column

MEGABATCH = 50  # length grouping sorts within windows of 50 batches, like transformers' length-grouped sampler

# The cost model plan_widths weighs, in units of a replayed step's fixed cost (its kernel launches). Measured on
# an H200 at BERT-base shape (benchmarks/NOTES.md): replayed steps of 16, 32 and 64 x 128 tokens took 8.4, 12.0 and
# 19.6 ms, i.e. 4.8 ms plus 1.8 us per padded token.
STEP_COST_PER_TOKEN = 0.75 / 2048


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

    def batch(self, rows: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids, attention mask and labels of ``rows`` (-1: a padding slot, read as row 0), ``width`` wide."""
        rows = rows.clamp(min=0)
        positions = torch.arange(width, device=self.ids.device)
        mask = (positions < self.lengths[rows, None]).long()
        return self.ids[rows, :width], mask, self.labels[rows]


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, grouped: bool) -> np.ndarray:
    """This epoch's batches as an (n_batches, batch_size) array of row indices, -1 where a batch is short."""
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


def batch_width(lengths: np.ndarray, rows: np.ndarray, max_length: int, dynamic_padding: bool, step: int) -> int:
    """The padded width of one batch: its longest text rounded up to ``step``, at most max_length."""
    real = rows[rows >= 0]
    if not dynamic_padding or len(real) == 0:
        return max_length
    longest = int(lengths[real].max())
    return min(max_length, -(-longest // step) * step)


def plan_widths(widths: np.ndarray, batch_size: int, capture_cost: float) -> list[int]:
    """The widths a run's steps run at, for steps that need ``widths`` (``batch_width`` of each step).

    Each step then runs at the smallest planned width that holds it. One more
    width costs ``capture_cost`` steps (a CUDA graph's capture); one fewer pads
    the steps it held to a wider one. The cheapest set under the cost model
    above is found exactly (a dynamic programme over the distinct widths).
    With ``capture_cost`` 0 (eager steps) every width is its own.
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


@dataclass(frozen=True)
class BatchPlan:
    """Every step of every epoch of one process: the global batches' rows and this process's widths."""

    lengths: np.ndarray
    batch_size: int  # per process
    processes: int
    rank: int
    seed: int
    grouped: bool
    widths: tuple[tuple[int, ...], ...]  # [epoch - 1][step]

    @classmethod
    def make(cls, lengths: np.ndarray, task: Any, processes: int, rank: int, grouped: bool, width_step: int,
             capture_cost: float) -> BatchPlan:
        plan = cls(lengths, task.batch_size, processes, rank, task.seed, grouped, ())
        needed = [np.array([batch_width(lengths, plan.local(rows), task.max_length, task.dynamic_padding, width_step)
                            for rows in plan.batches(epoch)]) for epoch in range(1, task.epochs + 1)]
        chosen = plan_widths(np.concatenate(needed), task.batch_size, capture_cost)
        widths = tuple(tuple(planned_width(chosen, int(width)) for width in epoch) for epoch in needed)
        return cls(lengths, task.batch_size, processes, rank, task.seed, grouped, widths)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.lengths) // (self.batch_size * self.processes))

    def batches(self, epoch: int) -> np.ndarray:
        """The global batches of ``epoch``: (steps, batch_size x processes) row indices."""
        return epoch_batches(self.lengths, self.batch_size * self.processes, self.seed, epoch, self.grouped)

    def local(self, rows: np.ndarray) -> np.ndarray:
        """This process's slice of a global batch."""
        return rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def distinct_widths(self) -> list[int]:
        return sorted({width for epoch in self.widths for width in epoch})
