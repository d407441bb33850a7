"""tk's attention in bf16, shared by prediction on the CPU and the eager engine's training steps.

torch is imported inside the functions: the plugin API re-exports them, and ``tk --help`` or
``tk list`` would otherwise pay torch's import (about 1.5 s here) before doing anything.
"""

from __future__ import annotations

from collections.abc import Callable


def bf16_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                   keep_weights: Callable | None = None, **kwargs):
    """transformers' eager attention with the batch x heads x length x length tensors kept in bf16.

    The float32 padding mask would promote the scores to float32 only for autocast to cast the
    probabilities back before the next product (two casts each way per layer); kept in the
    products' dtype, attention took 21 ms per layer at 16 x 128 tokens instead of 37 ms, as close
    to float32 attention (0.6-0.7% relative error in the output and gradients, both ways).
    In training, ``keep_weights(shape, p, dtype)`` draws the dropout mask as numbers; the 1 / (1 - p)
    then scales the much smaller product with ``value``. The probabilities returned are not rescaled.
    """
    import torch  # here: toolkit.api (every plugin imports it at start-up) stays free of torch
    from torch import nn

    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query * scaling, key.transpose(2, 3))  # scaled before: a quarter of the entries
    if attention_mask is not None:
        # float32's lowest value becomes -inf in bf16, and a row masked throughout (a padding position that
        # a sliding window leaves no key, as in ModernBERT) would softmax to NaN and spread; bf16's own
        # lowest value keeps that row finite, as float32 attention does
        weights = weights + attention_mask.to(weights.dtype).clamp(min=torch.finfo(weights.dtype).min)
    weights = nn.functional.softmax(weights, dim=-1)
    dropping = module.training and dropout > 0
    if dropping:
        weights = weights * keep_weights(weights.shape, dropout, weights.dtype)
    output = torch.matmul(weights, value)
    if dropping:
        output = output * (1.0 / (1.0 - dropout))
    return output.transpose(1, 2).contiguous(), weights


def register_attention(name: str, function: Callable) -> None:
    """Make ``function`` a transformers attention implementation, with eager attention's padding mask."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(name, function)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, eager_mask)
