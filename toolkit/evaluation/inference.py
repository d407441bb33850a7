"""Batched prediction with dynamic padding, longest texts first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np

MULTI_LABEL = "multi_label_classification"  # transformers' problem_type: sigmoid scores, BCE loss
CPU_EVAL_BATCH = 64  # rows on the CPU, as before "auto" (benchmarks/NOTES.md's measurements used it)
GPU_EVAL_TOKENS = 32_768  # on a GPU fewer, larger batches launch fewer kernels per row: 64 rows of 512 tokens


def rows_per_batch(setting: int | str, device: Any, longest: int) -> int:
    """The eval_batch_size key as a number of rows: as set, or for "auto" what suits ``device`` for texts of
    at most ``longest`` tokens.

    On one H200, tk evaluated 25,000 IMDB reviews at 128 tokens at 4,886
    rows/s in batches of 64 (about 3.2 s of it the model's, 1.9 s tokenizing),
    and the model alone took 2.5 s in batches of 256 (benchmarks/NOTES.md). The
    token budget keeps a batch's memory at most that of 64 rows of 512 tokens.
    """
    if setting != "auto":
        return int(setting)
    if getattr(device, "type", device) == "cpu":
        return CPU_EVAL_BATCH
    return max(CPU_EVAL_BATCH, GPU_EVAL_TOKENS // max(longest, 1))


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

    def batch(self, rows: np.ndarray, pad: int, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` padded to their longest, rounded up to a ``multiple`` of tokens: (input ids, attention mask)."""
        lengths = self.lengths[rows]
        positions = np.arange(-(-lengths.max(initial=0) // multiple) * multiple)
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


def predict_probabilities(model: Any, encoded: Any, batch_size: int | str = "auto", bf16: bool = False,
                          on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities for already tokenized inputs, in input order: softmax over the classes, or a sigmoid
    per label for a model whose config says ``problem_type="multi_label_classification"``.

    Rows go longest first, so each batch is padded to little more than its
    own texts; ``on_batch(rows)`` is told after each batch (a progress bar).
    ``batch_size``: rows per batch, or "auto" (``rows_per_batch``).
    """
    import torch

    from toolkit.evaluation.cpu_inference import fused_cpu_inference  # torch: imported when used, not at tk's start

    tokens = TokenRows(input_ids_of(encoded))
    order = np.argsort(-tokens.lengths, kind="stable")
    device = next(model.parameters()).device
    batch_size = rows_per_batch(batch_size, device, int(tokens.lengths.max(initial=1)))
    pad = getattr(model.config, "pad_token_id", 0) or 0
    probabilities = np.zeros((len(tokens), model.config.num_labels), dtype=np.float32)
    multi_label = getattr(model.config, "problem_type", None) == MULTI_LABEL
    on_cpu = device.type == "cpu"
    # On a GPU, inputs go up from pinned memory without waiting and scores come back once at the end, so the
    # CPU pads the next batches while the GPU runs this one (a blocking copy per batch made each side wait).
    # Widths in multiples of 8 suit its tensor cores and leave 16 shapes at 128 tokens, not 128, each one's
    # kernels chosen on first use.
    multiple = 1 if on_cpu else 8
    pending_rows, pending_scores = [], []
    model.eval()
    with (torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
          fused_cpu_inference(model, enabled=bf16 and on_cpu)):
        for batch in batches(order, batch_size):
            ids, mask = (torch.from_numpy(array) for array in tokens.batch(batch, pad, multiple))
            if not on_cpu:
                ids, mask = (tensor.pin_memory().to(device, non_blocking=True) for tensor in (ids, mask))
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            scores = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            if on_cpu:
                probabilities[batch] = scores.numpy()
            else:
                pending_rows.append(batch)
                pending_scores.append(scores)
            if on_batch:
                on_batch(len(batch))
        if pending_rows:
            probabilities[np.concatenate(pending_rows)] = torch.cat(pending_scores).cpu().numpy()
    return probabilities


def batches(order: np.ndarray, size: int) -> Sequence[np.ndarray]:
    return [order[start:start + size] for start in range(0, len(order), size)]
