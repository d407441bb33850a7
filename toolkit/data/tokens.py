"""Tokenizing once, without padding; truncation from the head, the tail or both ends."""

from __future__ import annotations

from typing import Any


def tokenize_splits(splits, tokenizer: Any, max_length: int, truncation: str = "head"):
    """Add ``input_ids``, ``attention_mask``, ``length`` and ``labels``; drop ``text``.

    Padding happens per batch in the collator. ``datasets`` caches the result
    for file-backed data, so a second run with the same tokenizer skips this.
    """

    def encode(batch):
        return encode_texts(tokenizer, batch["text"], max_length, truncation)

    columns = next(iter(splits.values())).column_names
    encoded = splits.map(encode, batched=True, batch_size=1000, remove_columns=[c for c in columns if c != "label"],
                         desc="Tokenizing")
    return encoded.rename_column("label", "labels")


CHARS_PER_TOKEN = 20  # far more than any real text needs (English averages 4-5 characters per token)


def cut_long_texts(texts: list[str], max_length: int, truncation: str = "head") -> list[str]:
    """Texts cut to ``CHARS_PER_TOKEN * max_length`` characters at the end(s) truncation keeps.

    Tokenizing costs memory per character (a 200 MB line took 23 GB); beyond this many
    characters the tokens would be truncated away anyway.
    """
    limit = CHARS_PER_TOKEN * max_length
    if truncation == "head":
        return [text[:limit] if len(text) > limit else text for text in texts]
    if truncation == "tail":
        return [text[-limit:] if len(text) > limit else text for text in texts]
    return [text[:limit] + " " + text[-limit:] if len(text) > 2 * limit else text for text in texts]


def encode_texts(tokenizer: Any, texts: list[str], max_length: int, truncation: str = "head") -> dict[str, list]:
    texts = cut_long_texts(texts, max_length, truncation)
    if truncation == "head":
        out = tokenizer(texts, truncation=True, max_length=max_length)
        ids = out["input_ids"]
    else:
        prefix, suffix = special_tokens(tokenizer)
        budget = max_length - len(prefix) - len(suffix)
        raw = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        ids = [prefix + _keep(row, budget, truncation) + suffix for row in raw]
    return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids], "length": [len(row) for row in ids]}


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text ([CLS] and [SEP] for BERT)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def _keep(row: list[int], budget: int, truncation: str) -> list[int]:
    if len(row) <= budget:
        return row
    if truncation == "tail":
        return row[-budget:]
    # head+tail (Sun et al., 2019): a quarter of the budget from the start, the rest from the end.
    head = budget // 4
    return row[:head] + row[len(row) - (budget - head):]
