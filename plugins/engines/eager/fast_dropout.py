"""Dropout masks from NumPy's PCG64 when training on the CPU (the task key ``fast_dropout``).

On the CPU torch draws dropout masks one MT19937 number at a time: 25 ms for
one 16x12x128x128 attention-probability tensor here, about a third of an
IMDB training step. 16 raw PCG64 bits per entry, compared with a threshold,
give the same Bernoulli keep mask (the drop probability rounded to 1/65536)
in under 3 ms. Each call seeds PCG64 from torch's generator, so a run stays
reproducible from its seed and a resumed run draws the masks it would have.

For the length of training the model's ``nn.Dropout`` modules are swapped for
``FastDropout`` and eager attention for tk's bf16 attention dropping through
it; both are put back before the model is saved.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit.api import bf16_attention, register_attention

ATTENTION = "eager_fast_dropout"


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """True where an entry is kept: a Bernoulli(1 - p) draw per entry."""
    return torch.from_numpy(_kept(shape, p))


def _kept(shape: torch.Size, p: float) -> np.ndarray:
    seed = int(torch.randint(0, 2**62, (1,)))
    count = int(np.prod(shape))
    bits = np.random.PCG64(seed).random_raw(-(-count // 4)).view(np.int16)[:count]
    return bits.reshape(shape) >= -32768 + round(p * 65536)


def keep_weights(shape: torch.Size, p: float, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """The keep mask as numbers of ``dtype``: ``scale`` where kept, 0 where dropped.

    PyTorch multiplies by a mask of the tensor's own dtype in vectorized code, but by a bool mask one
    element at a time: 0.09 ms against 0.7 ms for a 16 x 128 x 384 bf16 tensor here (3.1 ms in float32).
    NumPy converts the bool mask to numbers fast; bf16, which NumPy lacks, is written as its bit pattern.
    """
    kept = _kept(shape, p)
    if dtype == torch.bfloat16 and scale == 1.0:
        return torch.from_numpy(np.multiply(kept, np.int16(0x3F80), dtype=np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.multiply(kept, np.float32(scale), dtype=np.float32)).to(dtype)


def drop(x: torch.Tensor, p: float) -> torch.Tensor:
    scale = 1.0 / (1.0 - p)
    if x.dtype == torch.bfloat16 and torch.is_autocast_enabled(x.device.type):
        # Dropout under autocast meets a bf16 layer output on its way into the float32 residual sum. Given
        # back in float32, that sum is float32 + float32: bf16 + float32 took 2.7 ms per 16 x 128 x 384
        # tensor here (no vectorized kernel for mixed dtypes), the cast and float32 sum 0.1 ms.
        x = x.float()
    if x.dtype == torch.float32:
        return x * keep_weights(x.shape, p, torch.float32, scale)
    return x * keep_weights(x.shape, p, x.dtype) * scale  # the scale is not rounded to a low-precision dtype


class FastDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop(x, self.p) if self.training and self.p > 0 else x


eager_attention = functools.partial(bf16_attention, keep_weights=keep_weights)  # dropout drawn by PCG64


@contextlib.contextmanager
def fast_dropout(model: Any):
    """Train ``model`` with PCG64 dropout masks; its own modules and attention come back afterwards."""
    swapped = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p).train(child.training))
                swapped.append((parent, name, child))
    attention = model.config._attn_implementation
    if attention == "eager":
        register_attention(ATTENTION, eager_attention)
        model.set_attn_implementation(ATTENTION)
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        if attention == "eager":
            model.set_attn_implementation(attention)
