"""Texts as 64-bit hashes in NumPy arrays, exactly or alike but for case, whitespace and HTML tags: how
duplicates, conflicts and leakage are found, and which rows a split leaves out, without a second copy
of the texts."""

from __future__ import annotations

import re

import numpy as np

HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case, whitespace and HTML tags do not make a text different."""
    return SPACE.sub(" ", HTML_TAG.sub(" ", text)).strip().lower()


def text_hashes(texts, normalised: bool = False) -> np.ndarray:
    import pandas as pd

    values = [normalise(t) for t in texts] if normalised else list(texts)
    return pd.util.hash_array(np.asarray(values, dtype=object))
