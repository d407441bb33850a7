"""What a training engine provides: a step strategy, not a loop.

The core loop (``toolkit.training.loop``) decides everything a run decides:
epochs, the batch plan, evaluation, selection, stopping, checkpoints,
resume, events. A strategy knows one thing: how to run an optimizer step
fast on its device. It is given a ``StepPlan`` (the training data on the
device, the loss, the batch layout) and asked for one step per global batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the plugin API is imported by every command: torch only once training starts
    import torch

    from toolkit.training.batches import DeviceSplit


@dataclass
class StepPlan:
    """What every step trains with, decided by the core loop from the task."""

    data: DeviceSplit
    batch_size: int  # rows per process
    processes: int
    rank: int
    bf16: bool
    steps_per_epoch: int
    training_loss: Callable[..., torch.Tensor]  # policy.training_loss with the task and its class weights bound
    batch_weight: Callable[..., torch.Tensor]  # policy.batch_weight, likewise
    flag: torch.Tensor  # 1 element: summed across processes with the gradients (a stop asked for anywhere)

    def loss(self, model: Any, rows: torch.Tensor, width: int) -> torch.Tensor:
        """This process's share of the loss of the global batch ``rows`` (row indices, -1 for none), its
        slice of the rows ``width`` tokens wide. Summed over processes it is the global batch's mean loss."""
        import torch

        valid = rows >= 0
        total = self.batch_weight(self.data.labels[rows.clamp(min=0)], valid)
        local = rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        ids, mask, labels = self.data.batch(local, width)
        # cache_enabled=False: autocast's weight cache would hold tensors from outside a captured graph.
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            logits = model(input_ids=ids, attention_mask=mask).logits
        return self.training_loss(logits, labels, valid=local >= 0, total=total)


class StepStrategy:
    """One optimizer step per call of ``train_step``; subclass it in an engine plugin.

    ``width_step``: batch widths are multiples of it (fewer shapes to build
    kernels for). ``capture_cost``: what one more width costs, in steps (a
    CUDA graph's capture; 0 for eager steps). ``checkpoint_seconds``: 0 writes
    a checkpoint after every epoch; more writes one only when that much
    training would otherwise be lost (and always on Ctrl-C or out of memory).
    """

    name = ""
    width_step = 1
    capture_cost = 0.0

    def checkpoint_seconds(self) -> float:
        return 0.0

    def optimizer_on_device(self, device: torch.device) -> bool:
        """Whether the learning rate lives in a device tensor (a captured graph reads it there)."""
        return False

    def setup(self, model: Any, optimizer: torch.optim.Optimizer, plan: StepPlan) -> None:
        self.model, self.optimizer, self.plan = model, optimizer, plan
        self.params = [p for p in model.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Held for the whole of training (a strategy swaps in its own layers here, and puts them back)."""
        yield

    def train_step(self, rows: torch.Tensor, width: int) -> None:
        """One optimizer step on the global batch ``rows`` (on the device), this process's slice ``width``
        wide: ``plan.loss``, backward, ``distributed.sum_gradients``, ``policy.clip_gradients``, the step."""
        raise NotImplementedError

    def take_losses(self) -> list[float]:
        """This process's share of the loss of each step since the last call, in order."""
        raise NotImplementedError

    def facts(self) -> dict[str, Any]:
        """What the run's manifest records about how the steps ran."""
        return {}

    def seconds(self) -> dict[str, float]:
        """Where the strategy's own time went beyond its steps (a graph's capture), for the manifest."""
        return {}
