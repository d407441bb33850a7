"""Which precision and device a run uses."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matrix products run about twice as fast as fp32 there."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(setting: str) -> bool:
    """The task's ``bf16`` key: "on", "off" or "auto" (on where the hardware runs it fast)."""
    if setting in ("on", "off"):
        return setting == "on"
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def attention_kernel(setting: str, bf16: bool) -> str | None:
    """The task's ``attention`` key; None keeps the model's own choice.

    "auto" picks eager attention for bf16 on the CPU: there PyTorch's fused
    SDPA backward in bf16 takes about half of each training step, while eager
    attention runs as plain bf16 matrix products (about 2x faster steps here).
    """
    if setting != "auto":
        return setting
    import torch

    return "eager" if bf16 and not torch.cuda.is_available() else None
