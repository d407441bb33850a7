"""Which precision and device a run uses."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from toolkit.training.distributed import world_size

_warm_up: threading.Thread | None = None


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


def start_gpu_warm_up() -> None:
    """Start the GPU libraries on a background thread while the CPU loads and tokenizes the data.

    A process's first CUDA kernels load and set up cuBLAS and the rest, time
    otherwise spent in the first training step with the GPU idle (on an
    H200 the first capture took 1.73 s with this head start and 2.16 s
    without, one run each). Single-process runs only: under torchrun every
    process would start on GPU 0. Call ``wait_for_gpu_warm_up`` before
    training: a CUDA graph capture must not overlap other CUDA work.
    """
    global _warm_up
    import torch

    if torch.cuda.is_available():
        use_precompiled_attention()
    if torch.cuda.is_available() and world_size() == 1 and _warm_up is None:
        _warm_up = threading.Thread(target=_exercise_gpu, name="tk-gpu-warm-up", daemon=True)
        _warm_up.start()


def use_precompiled_attention() -> None:
    """Keep PyTorch's SDPA off its cuDNN backend, whose kernels are compiled at run time.

    On a fresh H200 (driver kernel cache empty, as on every new cloud machine
    or container) the cuDNN backend spent about 2 s on its first call at each
    new sequence length, so every batch width and validation shape paid it
    once: a 2,000-review IMDB run took 6.7 s with it and 3.9 s without it
    (benchmarks/NOTES.md). The flash and memory-efficient backends are
    precompiled and take 1-8 ms for a first call.
    """
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)


def wait_for_gpu_warm_up() -> None:
    if _warm_up is not None:
        _warm_up.join()


def _exercise_gpu() -> None:
    """One small pass through the kinds of kernel a BERT training step uses, in bf16 and fp32."""
    import torch
    import torch.nn.functional as F

    try:
        for bf16 in (True, False):
            heads = torch.randn(2, 4, 64, 32, device="cuda", requires_grad=True)
            weight = torch.randn(128, 128, device="cuda", requires_grad=True)
            mask = torch.ones(2, 1, 64, 64, device="cuda", dtype=torch.bool)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                attended = F.scaled_dot_product_attention(heads, heads, heads, attn_mask=mask)
                hidden = F.layer_norm(attended.transpose(1, 2).flatten(2) @ weight, (128,))
                hidden = F.dropout(F.gelu(hidden), 0.1)
            loss = F.cross_entropy(hidden.float().flatten(0, 1), torch.zeros(128, dtype=torch.long, device="cuda"))
            loss.backward()
        torch.cuda.synchronize()
    except Exception:  # only a head start: a real problem shows up in the run itself
        pass
