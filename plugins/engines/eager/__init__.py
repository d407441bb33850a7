"""Eager training steps, on the CPU or a GPU: the engine ``eager``.

Each step runs as PyTorch runs it, one kernel at a time: forward under bf16
autocast where the hardware runs it fast, the loss, backward, the gradients
summed across processes under torchrun, clipping, fused AdamW. On the CPU,
the levers that pay there (docs/speed.md): batch widths in steps of 4 tokens,
dropout masks from NumPy's PCG64 and bf16-resident attention (its own task key
``fast_dropout``), and one word-embedding gradient buffer.
"""

from __future__ import annotations

from toolkit.api import EngineInfo, Setting, hookimpl

NAME = "eager"


def strategy(task):
    from plugins.engines.eager.step import EagerSteps

    return EagerSteps(fast_dropout=task.setting("fast_dropout"))


@hookimpl
def tk_register_engines(register):
    register(EngineInfo(NAME, "eager PyTorch steps: CPU or GPU, one process or several under torchrun",
                        strategy=strategy))


@hookimpl
def tk_register_settings(register):
    register(Setting(
        "fast_dropout", (bool,), True,
        "eager engine, on the CPU: draw dropout masks from NumPy's PCG64 instead of torch's "
        "one-number-at-a-time generator, for faster training steps: the same Bernoulli masks (drop probability "
        "rounded to 1/65536); with eager attention it also keeps the attention probabilities in bf16 and gives "
        "dropout's output in float32 under autocast (docs/speed.md); `false` keeps torch's dropout and "
        "transformers' attention"))
