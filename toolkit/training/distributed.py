"""Data-parallel runs under torchrun: one run folder, metrics computed once, every strategy's speed.

Each process trains its slice of every global batch; after the backward pass
the gradients are summed across processes in one all-reduce of a flat
buffer (each process's loss is its rows' share of the global batch mean, so
the sum is the global batch's gradient: no scaling by the number of
processes). The same all-reduce carries each process's Ctrl-C / SIGTERM
flag, so every process stops at the same step. gloo on the CPU, NCCL on CUDA.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from toolkit.errors import TkError

T = TypeVar("T")

TIMEOUT = datetime.timedelta(minutes=10)  # a process that died leaves the others waiting this long at most
_joined = False  # whether this process has joined the process group (join), for error_line


class ProcessLost(TkError):
    """Another process of the data-parallel run died or stopped answering: the collective call failed."""


@contextlib.contextmanager
def collective() -> Iterator[None]:
    """gloo and NCCL report a process that died as a RuntimeError in the others' next collective call."""
    try:
        yield
    except RuntimeError as error:
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ProcessLost(f"Another process of this data-parallel run stopped ({cause[:200]}). The run folder keeps "
                          "its last checkpoint: resume it with the same torchrun command and tk run --resume RUN.") \
            from None


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def join() -> None:
    """Join the process group torchrun set up (once); nothing in a single process."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    global _joined
    _joined = True


def error_line(message: str, error: BaseException) -> str | None:
    """What this process prints for an error that ends it, or None to leave it to another process. Before
    the processes join, those on one machine ran the same checks on the same files: the first on each machine
    speaks for them (the others' lines would repeat its own). After, an error may be this process's alone (its
    GPU out of memory), so it is printed with the process's number, unless it is another process's death
    (ProcessLost), which the process that saw it first says."""
    if world_size() == 1 or is_main():
        return message
    if not _joined:
        return message if local_rank() == 0 else None
    if isinstance(error, ProcessLost):
        return None
    return f"process {rank() + 1} of {world_size()}: {message}"


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
    import torch.distributed as dist

    join()
    box = [make() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order, on every process."""
    if world_size() == 1:
        return [value]
    import torch.distributed as dist

    found: list[Any] = [None] * world_size()
    with collective():
        dist.all_gather_object(found, value)
    return found


def sum_gradients(parameters: list[Any], flag: Any) -> None:
    """Sum the gradients of ``parameters`` and the 1-element ``flag`` across processes, in one all-reduce.
    Nothing in a single process. Works inside a captured CUDA graph (NCCL)."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1).to(flag.dtype) for g in grads] + [flag.reshape(-1)])
    with collective():
        dist.all_reduce(flat)
    offset = 0
    for p, g in zip(parameters, grads):
        count = g.numel()
        g.copy_(flat[offset:offset + count].view_as(g))
        p.grad = g
        offset += count
    flag.copy_(flat[offset:offset + 1].view_as(flag))


def sum_losses(losses: list[float]) -> list[float]:
    """Each step's loss summed across processes (each held its rows' share of the global batch mean)."""
    if world_size() == 1:
        return losses
    import torch
    import torch.distributed as dist

    total = torch.tensor(losses, dtype=torch.float64)
    if torch.cuda.is_available():
        total = total.cuda()
    with collective():
        dist.all_reduce(total)
    return total.cpu().tolist()
