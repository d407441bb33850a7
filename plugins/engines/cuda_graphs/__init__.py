"""Training on CUDA with the whole step replayed as a CUDA graph (the task key ``cuda_graphs``).

Answers ``tk_train`` before the Trainer plugin where graphs apply: a CUDA
device in a single process (``torchrun`` runs stay with the Trainer and its
DistributedDataParallel). Elsewhere it returns None and the Trainer plugin
trains. A run whose checkpoints this plugin wrote is also resumed here, on
any device (without CUDA the same loop runs eagerly).
"""

from __future__ import annotations

from pathlib import Path

from toolkit import hookimpl
from toolkit.training import distributed
from toolkit.training.device import use_bf16
from toolkit.errors import TkError


@hookimpl(tryfirst=True)
def tk_train(model, tokenizer, splits, task, run_dir: Path, progress, compute_metrics, resume):
    import torch

    if resume:
        if not wrote_checkpoints(run_dir):
            return None  # the Trainer wrote them: the Trainer resumes them
    elif not graphs_wanted(task):
        return None
    from plugins.engines.cuda_graphs.loop import StaticLoop
    from toolkit.training.policy import out_of_memory

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loop = StaticLoop(model, tokenizer, splits, task, run_dir, progress, compute_metrics, use_bf16(task.bf16), device)
    try:
        return loop.train(resume)
    except torch.OutOfMemoryError as error:
        raise out_of_memory(task, error) from None


def graphs_wanted(task) -> bool:
    """``cuda_graphs``: "auto" uses graphs on CUDA in a single process; "on" insists; "off" never."""
    import torch

    if task.cuda_graphs == "off":
        return False
    usable = torch.cuda.is_available() and distributed.world_size() == 1
    if task.cuda_graphs == "on" and not usable:
        where = "several processes" if torch.cuda.is_available() else "a machine without a CUDA GPU"
        raise TkError(f"task '{task.name}': cuda_graphs = \"on\" cannot run on {where}. "
                      "Use --set cuda_graphs=auto (graphs where they apply, the Trainer elsewhere).")
    return usable


def wrote_checkpoints(run_dir: Path) -> bool:
    from plugins.engines.cuda_graphs.checkpoints import STATE_FILE, latest

    found = latest(run_dir / "checkpoints")
    return found is not None and (found / STATE_FILE).is_file()
