"""Data-parallel runs under torchrun / accelerate launch: one run folder, metrics computed once."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def leave() -> None:
    """This process is done with the run's collective work: leave the process group now. A process that
    exited still in it sometimes aborted in the interpreter's teardown ("terminate called without an active
    exception", 1 run in 8 on 2 CPU processes), and torchrun then stopped the main process mid-evaluation."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shared(make: Callable[[], T]) -> T:
    """Call ``make`` on the main process only and hand its result to every process."""
    if world_size() == 1:
        return make()
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    # Joins the process group torchrun / accelerate launch set up (gloo on the CPU).
    state = PartialState(cpu=not torch.cuda.is_available())
    box = [make() if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]
