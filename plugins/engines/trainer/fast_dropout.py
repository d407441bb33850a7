"""Dropout masks from NumPy's PCG64 when training on the CPU (the task key ``fast_dropout``).

On the CPU torch draws dropout masks one MT19937 number at a time: 25 ms for
one 16x12x128x128 attention-probability tensor here, about a third of an
IMDB training step. 16 raw PCG64 bits per entry, compared with a threshold,
give the same Bernoulli keep mask (the drop probability rounded to 1/65536)
in under 3 ms. Each call seeds PCG64 from torch's generator, so a run stays
reproducible from its seed and a resumed run draws the masks it would have.

For the length of training the model's ``nn.Dropout`` modules are swapped for
``FastDropout`` and eager attention for a copy that drops through it; both
are put back before the model is saved.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

ATTENTION = "eager_fast_dropout"


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    seed = int(torch.randint(0, 2**62, (1,)))
    count = int(np.prod(shape))
    bits = np.random.PCG64(seed).random_raw(-(-count // 4)).view(np.int16)[:count]
    return torch.from_numpy(bits.reshape(shape) >= -32768 + round(p * 65536))


def drop(x: torch.Tensor, p: float) -> torch.Tensor:
    return x * keep_mask(x.shape, p) * (1.0 / (1.0 - p))


class FastDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop(x, self.p) if self.training and self.p > 0 else x


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' BERT eager attention, with the attention-probability dropout drawn by ``drop``."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    if module.training and dropout > 0:
        weights = drop(weights, dropout)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ATTENTION, eager_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)


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
        _register_attention()
        model.set_attn_implementation(ATTENTION)
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        if attention == "eager":
            model.set_attn_implementation(attention)
