"""Tokenizing once, without padding; truncation from the head, the tail or both ends, or overlapping windows."""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.config import CORE_SETTINGS
from toolkit.errors import TkError
from toolkit.models import model_limit
from toolkit.records import WithNotes


def tokenize_splits(splits, tokenizer: Any, max_length: int, truncation: str = "head", stride: int | None = None):
    """Add ``input_ids``, ``attention_mask``, ``length`` and ``labels``; drop ``text``.

    With ``stride`` (long_text = "chunks") each row is a window of a text and
    carries ``document``: the index of its text in the split; a text of
    ``max_length`` tokens or fewer is one window. Padding happens per batch in
    the collator. ``datasets`` caches the result for file-backed data, so a
    second run with the same tokenizer skips this.
    """
    columns = next(iter(splits.values())).column_names
    if stride is None:
        def encode(batch):
            return encode_texts(tokenizer, batch["text"], max_length, truncation)

        encoded = splits.map(encode, batched=True, batch_size=1000,
                             remove_columns=[c for c in columns if c != "label"], desc="Tokenizing")
        return encoded.rename_column("label", "labels")

    def windows(batch, indices):
        out = encode_windows(tokenizer, batch["text"], max_length, stride)
        rows = out.pop("document")
        return {**out, "document": [indices[r] for r in rows], "labels": [batch["label"][r] for r in rows]}

    return splits.map(windows, batched=True, batch_size=1000, with_indices=True, remove_columns=columns,
                      desc="Tokenizing into windows")


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


HEAD_CHARS_PER_TOKEN = 6  # English averages 4-5 characters per token: a head this long nearly always fills max_length


def text_head(text: str, chars: int) -> str:
    """``text`` up to its last space within ``chars`` characters; the text itself when shorter, or with no
    space there. Cut before a space, a text's words are whole, so they tokenize as at the text's start."""
    if len(text) <= chars:
        return text
    cut = text.rfind(" ", 0, chars)
    return text[:cut] if cut > 0 else text


def head_token_ids(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """``tokenizer(texts, truncation=True, max_length=...)``'s ids, tokenizing only a head of each long text
    (an IMDB review's 1,265 characters on average, where 128 tokens need about 600: 25,000 reviews took
    9.4 s instead of 15.8 s on one core). A head whose tokens do not reach ``max_length`` is tokenized again
    whole: every answer is the whole text's."""
    def token_ids(some: list[str]) -> list[list[int]]:
        return tokenizer(some, truncation=True, max_length=max_length)["input_ids"]

    heads = [text_head(text, HEAD_CHARS_PER_TOKEN * max_length) for text in texts]
    ids = token_ids(heads)
    short = [i for i, (head, text, row) in enumerate(zip(heads, texts, ids))
             if head is not text and len(row) < max_length]
    for i, row in zip(short, token_ids([texts[i] for i in short]) if short else []):
        ids[i] = row
    return ids


def encode_texts(tokenizer: Any, texts: list[str], max_length: int, truncation: str = "head") -> dict[str, list]:
    texts = cut_long_texts(texts, max_length, truncation)
    if truncation == "head":
        ids = head_token_ids(tokenizer, texts, max_length)
    else:
        prefix, suffix = special_tokens(tokenizer)
        budget = max_length - len(prefix) - len(suffix)
        raw = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        ids = [prefix + _keep(row, budget, truncation) + suffix for row in raw]
    return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids], "length": [len(row) for row in ids]}


def encode_as_task(tokenizer: Any, texts: list[str], task: Any) -> dict[str, list]:
    """Texts encoded as ``task`` reads them: windows for long_text = "chunks", else cut as ``truncation`` says
    (a saved run and its ONNX export score through this one function, so they read the same tokens)."""
    if task.reads_in_windows:
        return encode_windows(tokenizer, texts, task.max_length, task.window_stride)
    return encode_texts(tokenizer, texts, task.max_length, task.truncation)


def cut_flags(tokenizer: Any, texts: list[str], task: Any, lengths: list[int]) -> list[bool]:
    """Whether each text lost tokens to ``max_length`` (``lengths``: its encoded rows' lengths, as
    ``encode_as_task`` made them). Only a row that fills ``max_length`` can have lost any: those texts are
    tokenized again one token longer. long_text = "chunks" reads a text whole, up to ``CHUNKED_CHARS``."""
    if task.reads_in_windows:
        return [len(text) > CHUNKED_CHARS for text in texts]
    full = [i for i, length in enumerate(lengths) if length >= task.max_length]
    flags = [False] * len(texts)
    if full:
        longer = encode_texts(tokenizer, [texts[i] for i in full], task.max_length + 1, task.truncation)["length"]
        for i, length in zip(full, longer):
            flags[i] = length > task.max_length
    return flags


CHUNKED_CHARS = 100_000  # long_text = "chunks": windows cover a text's first 100,000 characters (~20,000 tokens)


def encode_windows(tokenizer: Any, texts: list[str], max_length: int, stride: int) -> dict[str, list]:
    """Every text as windows of ``max_length`` tokens (special tokens included), each sharing ``stride``
    tokens with the one before; ``document`` is the index of each window's text in ``texts``.

    What a fast tokenizer's ``return_overflowing_tokens=True, stride=...`` makes, for any tokenizer.
    """
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    check_stride(stride, budget, max_length)
    texts = [text[:CHUNKED_CHARS] for text in texts]
    # verbose=False: whole texts longer than the model takes are the point here, not a mistake to warn about
    raw = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"] if texts else []
    ids, documents = [], []
    for document, row in enumerate(raw):
        for start in window_starts(len(row), budget, stride):
            ids.append(prefix + row[start:start + budget] + suffix)
            documents.append(document)
    return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids], "length": [len(row) for row in ids],
            "document": documents}


def count_windows(texts: list[str], tokenizer: Any, max_length: int, stride: int) -> int:
    """How many windows ``encode_windows`` cuts ``texts`` into: the rows a chunks task's batches are drawn from."""
    return len(encode_windows(tokenizer, texts, max_length, stride)["document"])


def window_starts(tokens: int, budget: int, stride: int) -> range:
    """Where each window of a text of ``tokens`` tokens (no special tokens) starts; the last one reaches its end."""
    return range(0, max(1, tokens - stride), budget - stride) if tokens > budget else range(1)


def window_counts(tokens: np.ndarray, budget: int, stride: int) -> np.ndarray:
    """How many windows texts of ``tokens`` tokens each (no special tokens) make: ``len(window_starts(...))``."""
    tokens = np.asarray(tokens, dtype=np.int64)
    return np.where(tokens > budget, -(-(tokens - budget) // (budget - stride)) + 1, 1)


def check_max_length(task: Any, tokenizer: Any, model_name: str, model_config: Any = None) -> int:
    """max_length leaves room for text and is within what the model takes (its tokenizer's limit; with
    ``model_config``, capped by its position embeddings). Returns the shortest max_length that holds text."""
    prefix, suffix = special_tokens(tokenizer)
    shortest = len(prefix) + len(suffix) + 1  # below this, transformers turns truncation off
    if task.max_length < shortest:
        raise TkError(f"task '{task.name}': max_length = {task.max_length} leaves no room for text: model "
                      f"'{model_name}' adds {shortest - 1} special tokens to every text. "
                      f"Use --set max_length={shortest} or more (the length report: tk analyze-lengths).")
    limit = model_limit(tokenizer, model_config)
    if task.max_length > limit:
        raise TkError(f"task '{task.name}': max_length = {task.max_length} is above the {limit} tokens "
                      f"model '{model_name}' can take. Use --set max_length={limit} or less.")
    return shortest


def window_stride(task: Any, tokenizer: Any, model_name: str) -> WithNotes:
    """The chunks windows' stride (None for truncation), once max_length leaves room for text and the stride
    lets windows move forward (``task``: a TaskConfig), with warnings: a stride that re-reads every token more
    than twice, or a stride or pooling that a truncating task does not use. tk run and tk check call it before
    loading any data."""
    shortest = check_max_length(task, tokenizer, model_name)
    if not task.reads_in_windows:
        note = unused_window_keys(task)
        return WithNotes(None, (note,) if note else ())
    budget = task.max_length - shortest + 1  # the text tokens a window holds
    try:
        check_stride(task.window_stride, budget, task.max_length)
    except TkError as error:
        raise TkError(f"task '{task.name}', key 'stride'") from error
    heavy = stride_warning(task.window_stride, budget, task.max_length)
    return WithNotes(task.window_stride, (heavy,) if heavy else ())


def unused_window_keys(task: Any) -> str | None:
    """A note when a truncating task sets stride or pooling, which only long_text = "chunks" uses."""
    unused = [key for key, given in (("stride", task.stride is not None),
                                     ("pooling", task.pooling != CORE_SETTINGS["pooling"].default)) if given]
    if not unused:
        return None
    return (f"Note: {' and '.join(unused)} appl{'ies' if len(unused) == 1 else 'y'} only with long_text = "
            f"\"chunks\"; this task truncates long texts (truncation = \"{task.truncation}\"), so "
            f"{'it is' if len(unused) == 1 else 'they are'} not used.")


def check_stride(stride: int, budget: int, max_length: int) -> None:
    if not 0 <= stride < budget:
        raise TkError(f"stride = {stride} must be at least 0 and below {budget}: max_length ({max_length}) minus the "
                      f"model's {max_length - budget} special tokens, or windows would not move forward. "
                      f"Use --set stride={min(max_length // 4, budget - 1)} (the default, max_length // 4).")


def stride_warning(stride: int, budget: int, max_length: int) -> str | None:
    """A warning when windows overlap so much that each token is read more than twice (``budget``: the text
    tokens a window holds): training and prediction time grow with it."""
    if stride * 2 <= budget:
        return None
    return (f"WARNING: stride = {stride} moves each window only {budget - stride} of its {budget} text tokens "
            f"forward, so every token is read about {budget / (budget - stride):.0f} times, and a long text costs "
            f"that many times the training and prediction time of truncating it. The default stride is "
            f"max_length // 4 ({max_length // 4}).")


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
