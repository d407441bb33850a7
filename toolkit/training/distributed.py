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
