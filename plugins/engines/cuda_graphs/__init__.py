"""Training steps captured once per batch shape as CUDA graphs and replayed: the engine ``cuda-graphs``.

``engine = "auto"`` picks it on a CUDA GPU, in one process or several under
torchrun (the gradients are summed by an all-reduce inside the captured
graph). A run it trained is resumed by it on any machine: without CUDA the
same step runs eagerly.
"""

from __future__ import annotations

from toolkit.api import EngineInfo, Setting, hookimpl

NAME = "cuda-graphs"


def unavailable(task) -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "it needs a CUDA GPU"
    return None


def strategy(task):
    from plugins.engines.cuda_graphs.step import GraphSteps

    return GraphSteps(task.setting("resume_point_seconds"))


@hookimpl
def tk_register_engines(register):
    register(EngineInfo(NAME, "each batch shape's whole step captured once as a CUDA graph and replayed (CUDA)",
                        strategy=strategy, unavailable=unavailable, auto_priority=10))


@hookimpl
def tk_register_settings(register):
    register(Setting(
        "resume_point_seconds", (int, float), 60,
        "cuda-graphs engine: each epoch's resume state is copied in GPU memory and written to disk (in the "
        "background) on Ctrl-C, on running out of memory, or once this many seconds of training would be "
        "lost without it"))
