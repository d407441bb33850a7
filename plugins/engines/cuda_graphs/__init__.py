"""Training on CUDA with each step replayed as a CUDA graph: the engine ``cuda-graphs``.

``engine = "auto"`` picks it on a CUDA GPU in a single process (``torchrun``
runs use the Trainer and its DistributedDataParallel). It runs the steps;
every decision comes from the shared training policy. A run it trained is
resumed by it on any machine: without CUDA the same loop runs eagerly.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.api import EngineInfo, Setting, hookimpl, policy, use_bf16, world_size

NAME = "cuda-graphs"


def unavailable(task) -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "it needs a CUDA GPU"
    if world_size() > 1:
        return "it runs in a single process (torchrun runs use the trainer engine)"
    return None


@hookimpl
def tk_register_engines(register):
    register(EngineInfo(NAME, "each batch shape's whole step captured once as a CUDA graph and replayed "
                              "(CUDA, one process)", unavailable=unavailable, auto_priority=10,
                        resume_required=("training_state.pt",)))


@hookimpl
def tk_register_settings(register):
    register(Setting(
        "resume_point_seconds", (int, float), 60,
        "cuda-graphs engine: each epoch's resume state is copied in GPU memory and written to disk (in the "
        "background) on Ctrl-C, on running out of memory, or once this many seconds of training would be "
        "lost without it"))


@hookimpl
def tk_train(model, tokenizer, splits, task, run_dir: Path, progress, compute_metrics, resume, engine):
    if engine != NAME:
        return None
    import torch

    from plugins.engines.cuda_graphs.loop import StaticLoop

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        progress.note("No CUDA GPU on this machine: the cuda-graphs loop runs eagerly on the CPU.")
    loop = StaticLoop(model, tokenizer, splits, task, run_dir, progress, compute_metrics, use_bf16(task.bf16), device)
    try:
        return loop.train(resume)
    except torch.OutOfMemoryError as error:
        raise policy.out_of_memory(task, error) from None
