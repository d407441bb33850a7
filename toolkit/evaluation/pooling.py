"""long_text = "chunks": a text's windows' probabilities pooled into the text's own, in one place.

Validation (the policy's epoch row), test predictions (tk run), tk predict,
tk evaluate and ``toolkit.longdocs.predict_long`` all pool here, so every
number tk reports for a chunked task is per text (document), not per window.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POOLINGS = ("mean", "max", "logits")
TINY = 1e-7  # probabilities are clipped to [TINY, 1 - TINY] before their logarithm


def documents_of(split: Any) -> np.ndarray | None:
    """The ``document`` column of a tokenized split (a window's text), or None when texts were truncated."""
    names = getattr(split, "column_names", None) or (list(split) if isinstance(split, dict) else [])
    return np.asarray(split["document"][:]) if "document" in names else None  # a slice: read at once


def pool(probabilities: np.ndarray, documents: Any, method: str = "mean", multi_label: bool = False) -> np.ndarray:
    """One row of class probabilities per document, in ascending document order.

    ``mean``: the average of the document's window probabilities. ``max``: each
    class's highest window probability, the row then renormalised to sum to 1
    (a class one window is sure of wins even when the other windows say nothing);
    ``multi_label``: each label's own probability, so the row is not renormalised
    (a label any window finds is on). ``logits``: the softmax of the mean of the
    windows' logits, computed from their probabilities (softmax(z) determines z up
    to a per-window constant, which the softmax ignores); multi-label: the sigmoid
    of each label's mean log-odds. Sure windows weigh more than with ``mean``.
    """
    if method not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {method!r}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    _, inverse, counts = np.unique(np.asarray(documents), return_inverse=True, return_counts=True)
    pooled = np.zeros((len(counts), probabilities.shape[1]))
    if method == "logits":
        clipped = np.clip(probabilities, TINY, 1 - TINY)
        logits = np.log(clipped) - (np.log1p(-clipped) if multi_label else 0)
        np.add.at(pooled, inverse, logits)
        pooled /= counts[:, None]
        if multi_label:
            return (1 / (1 + np.exp(-pooled))).astype(np.float32)
        pooled = np.exp(pooled - pooled.max(axis=1, keepdims=True))
        pooled /= pooled.sum(axis=1, keepdims=True)
    elif method == "mean":
        np.add.at(pooled, inverse, probabilities)
        pooled /= counts[:, None]
    else:
        np.maximum.at(pooled, inverse, probabilities)
        if not multi_label:
            pooled /= pooled.sum(axis=1, keepdims=True)
    return pooled.astype(np.float32)


def pool_labels(labels: Any, documents: Any) -> np.ndarray:
    """Each document's label (every window carries its document's), in ascending document order."""
    labels = np.asarray(labels)
    _, first, inverse = np.unique(np.asarray(documents), return_index=True, return_inverse=True)
    pooled = labels[first]
    if not np.array_equal(pooled[inverse], labels):
        raise ValueError("windows of one document carry different labels")
    return pooled


def pool_rows(labels: Any, probabilities: np.ndarray, documents: Any, method: str = "mean"):
    """``(labels, probabilities)`` per document; both unchanged when ``documents`` is None. Multi-hot
    ``labels`` (an (n, labels) array) make it multi-label."""
    labels = np.asarray(labels)
    if documents is None:
        return labels, probabilities
    return pool_labels(labels, documents), pool(probabilities, documents, method, multi_label=labels.ndim == 2)
