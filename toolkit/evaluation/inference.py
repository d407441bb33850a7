"""Batched prediction with dynamic padding, longest texts first."""

from __future__ import annotations

from typing import Any

import numpy as np

MULTI_LABEL = "multi_label_classification"  # transformers' problem_type: sigmoid scores, BCE loss


def predict_probabilities(model: Any, encoded: dict[str, list], batch_size: int = 64, bf16: bool = False) -> np.ndarray:
    """Class probabilities for already tokenized inputs, in input order: softmax over the classes, or a sigmoid
    per label for a model whose config says ``problem_type="multi_label_classification"``."""
    import torch

    ids = list(encoded["input_ids"])  # one conversion: indexing a datasets column row by row is slow
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    device = next(model.parameters()).device
    pad = getattr(model.config, "pad_token_id", 0) or 0
    probabilities = np.zeros((len(ids), model.config.num_labels), dtype=np.float32)
    multi_label = getattr(model.config, "problem_type", None) == MULTI_LABEL
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                mask[row, :len(ids[i])] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            logits = logits.float()
            scores = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            probabilities[batch] = scores.cpu().numpy()
    return probabilities
