"""The word-embedding gradient in one buffer kept for the whole run (CPU, one process).

PyTorch's embedding backward allocates a dense gradient for the whole
vocabulary every step (30,522 x 384 floats, 47 MB, for MiniLM) and frees it at
the next ``zero_grad``. On the CPU each fresh allocation of that size is new
memory the kernel faults in and zeroes page by page before PyTorch zeroes it
again: 7-30 ms of a training step here. With ``sparse=True`` the backward
returns only the rows a batch used, and a hook adds them into a buffer that
lives as long as the run: the same sums, one memset of memory already mapped.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def reused_embedding_gradient(model: Any):
    """While open, ``model``'s input-embedding gradient is written into one buffer kept across steps."""
    embedding = model.get_input_embeddings()
    if type(embedding) is not nn.Embedding or embedding.sparse or not embedding.weight.requires_grad:
        yield model
        return
    buffer = torch.empty_like(embedding.weight)

    def densify(weight: torch.Tensor) -> None:
        if weight.grad is None or not weight.grad.is_sparse:
            return  # already dense: a later micro-batch's rows were added into the buffer
        rows = weight.grad
        buffer.zero_()
        buffer.index_add_(0, rows._indices()[0], rows._values())
        weight.grad = buffer

    embedding.sparse = True
    hook = embedding.weight.register_post_accumulate_grad_hook(densify)
    try:
        yield model
    finally:
        hook.remove()
        embedding.sparse = False
