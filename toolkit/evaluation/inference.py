"""Batched prediction with dynamic padding, longest texts first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np

MULTI_LABEL = "multi_label_classification"  # transformers' problem_type: sigmoid scores, BCE loss


class TokenRows:
    """Token ids of many rows as one flat array and offsets: any batch is padded with array indexing."""

    def __init__(self, input_ids: Any) -> None:
        if not type(input_ids).__module__.startswith("pyarrow"):  # a tokenizer's lists: pa.array would import
            # pandas, 0.2 s of a one-text tk predict
            self.lengths = np.fromiter(map(len, input_ids), dtype=np.int64, count=len(input_ids))
            self.values = np.fromiter(chain.from_iterable(input_ids), dtype=np.int64, count=int(self.lengths.sum()))
            self.starts = np.cumsum(self.lengths) - self.lengths
            return
        import pyarrow as pa

        column = input_ids.combine_chunks() if isinstance(input_ids, pa.ChunkedArray) else input_ids
        column = column.cast(pa.large_list(pa.int64()))
        self.values = column.flatten().to_numpy()
        offsets = column.offsets.to_numpy()
        self.starts, self.lengths = offsets[:-1] - offsets[0], np.diff(offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` padded to their longest: (input ids, attention mask)."""
        lengths = self.lengths[rows]
        positions = np.arange(lengths.max(initial=0))
        mask = positions < lengths[:, None]
        index = np.where(mask, self.starts[rows, None] + positions, 0)
        ids = np.where(mask, self.values[index] if len(self.values) else pad, pad)
        return ids, mask.astype(np.int64)


def input_ids_of(encoded: Any) -> Any:
    """The input_ids column with no Python list per row: Arrow for a datasets split, the lists of a tokenizer's
    output otherwise."""
    if hasattr(encoded, "with_format"):  # a datasets.Dataset, its row selection (indices) respected
        return encoded.with_format("arrow")["input_ids"]
    return encoded["input_ids"]


def predict_probabilities(model: Any, encoded: Any, batch_size: int = 64, bf16: bool = False,
                          on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities for already tokenized inputs, in input order: softmax over the classes, or a sigmoid
    per label for a model whose config says ``problem_type="multi_label_classification"``.

    Rows go longest first, so each batch is padded to little more than its
    own texts; ``on_batch(rows)`` is told after each batch (a progress bar).
    """
    import torch

    from toolkit.evaluation.cpu_inference import fused_cpu_inference

    tokens = TokenRows(input_ids_of(encoded))
    order = np.argsort(-tokens.lengths, kind="stable")
    device = next(model.parameters()).device
    pad = getattr(model.config, "pad_token_id", 0) or 0
    probabilities = np.zeros((len(tokens), model.config.num_labels), dtype=np.float32)
    multi_label = getattr(model.config, "problem_type", None) == MULTI_LABEL
    model.eval()
    with (torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
          fused_cpu_inference(model, enabled=bf16 and device.type == "cpu")):
        for batch in batches(order, batch_size):
            ids, mask = tokens.batch(batch, pad)
            logits = model(input_ids=torch.from_numpy(ids).to(device),
                           attention_mask=torch.from_numpy(mask).to(device)).logits.float()
            scores = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            probabilities[batch] = scores.cpu().numpy()
            if on_batch:
                on_batch(len(batch))
    return probabilities


def batches(order: np.ndarray, size: int) -> Sequence[np.ndarray]:
    return [order[start:start + size] for start in range(0, len(order), size)]
