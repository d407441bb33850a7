"""`tk analyze-lengths`: token lengths under each model's own tokenizer."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.tokens import check_stride, special_tokens, window_counts, window_stride
from toolkit.errors import TkError, user_message
from toolkit.models import model_limit
from toolkit.records import LengthStats
from toolkit.saving import save_png

CHUNK = 20_000


MAX_CHARS = 100_000  # ~5,000+ tokens, ten times any BERT's limit: longer texts are measured on their start
BATCH_CHARS = 5_000_000  # characters per tokenizer call: memory grows with them


def token_lengths(tokenizer: Any, texts, chunk: int = CHUNK) -> tuple[np.ndarray, int]:
    """Lengths with special tokens, untruncated up to ``MAX_CHARS`` characters (a lower bound beyond), and how
    many texts were that long; batched through the Rust tokenizer, chunk by chunk."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TkError("tk analyze-lengths needs a fast (Rust) tokenizer; this model has only a slow one.")
    backend = backend.__class__.from_str(backend.to_str())  # a copy we can change
    backend.no_truncation()
    backend.no_padding()
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # fast: no character offsets
    lengths = np.empty(len(texts), dtype=np.int32)
    too_long = 0
    for start in range(0, len(texts), chunk):
        batch = list(texts[start:start + chunk])
        too_long += sum(len(text) > MAX_CHARS for text in batch)
        batch = [text[:MAX_CHARS] for text in batch]
        done = 0
        for part in _by_characters(batch):
            lengths[start + done:start + done + len(part)] = [len(encoding.ids) for encoding in encode(part)]
            done += len(part)
    return lengths, too_long


def _by_characters(texts: list[str]):
    part, size = [], 0
    for text in texts:
        if part and size + len(text) > BATCH_CHARS:
            yield part
            part, size = [], 0
        part.append(text)
        size += len(text)
    if part:
        yield part


@dataclass(frozen=True)
class Measured:
    """One model's token lengths of a split, their statistics, and what tk run would say about the task's
    windows and a ``stride`` the recommended max_length cannot take (``window_warnings``)."""

    stats: LengthStats
    lengths: np.ndarray
    warnings: tuple[str, ...] = ()


def analyze(pm, model_info, split, coverage: float, stride: int | None = None, task=None) -> Measured:
    """The statistics and the lengths of ``split``'s texts as ``model_info``'s tokenizer counts them."""
    started = time.perf_counter()
    tokenizer = pm.first("tk_load_tokenizer", f"model '{model_info.name}'", model_info.plugin, model=model_info)
    lengths, cut = token_lengths(tokenizer, split["text"])
    stats = pm.first("tk_analyze_lengths", f"model '{model_info.name}'", "lengths", lengths=lengths,
                     model=model_info, model_limit=model_limit(tokenizer), coverage=coverage)
    prefix, suffix = special_tokens(tokenizer)
    windows = chunk_costs(lengths, len(prefix) + len(suffix), stats.truncated_share, stats.model_limit, stride)
    return Measured(replace(stats, seconds=round(time.perf_counter() - started, 2), cut=cut, windows=windows), lengths,
                    tuple(window_warnings(task, tokenizer, model_info.name, stride, stats.recommended_max_length)))


def window_warnings(task, tokenizer, model_name: str, stride: int | None, recommended: int) -> list[str]:
    """What tk run would say about ``task``'s max_length, stride and pooling with this tokenizer (its error,
    as a warning: this command only measures), and, for chunks, a ``stride`` the recommended max_length
    cannot take (its chunks row is then missing, and tk run would stop with it)."""
    said: list[str] = []
    if task is not None:
        try:
            said += window_stride(task, tokenizer, model_name).notes
        except TkError as error:
            said.append(f"WARNING: tk run {task.name} would stop: {user_message(error)}")
    truncates = task is not None and not task.reads_in_windows
    said_above = task is not None and (task.max_length, task.window_stride) == (recommended, stride)
    if stride is None or truncates or said_above:
        return said
    try:
        check_stride(stride, recommended - sum(map(len, special_tokens(tokenizer))), recommended)
    except TkError as error:
        said.append(f"WARNING: {model_name}: with the recommended max_length ({recommended}) and long_text = "
                    f"\"chunks\", tk run would stop: {error}")
    return said


def chunk_costs(lengths: np.ndarray, specials: int, cutoffs, limit: int, stride: int | None) -> dict:
    """long_text = "chunks" at each cut-off (max_length) the model takes: how many windows the texts make
    (stride: ``stride``, or max_length // 4), per text, and the tokens they hold relative to truncation's."""
    lengths = np.asarray(lengths, dtype=np.int64)
    costs = {}
    for max_length in cutoffs:
        budget, overlap = max_length - specials, max_length // 4 if stride is None else stride
        if max_length > limit or not 0 <= overlap < budget or lengths.size == 0:
            continue
        counts = window_counts(np.maximum(lengths - specials, 0), budget, overlap)
        tokens = np.minimum(np.maximum(lengths - specials, 0), budget).sum() + specials * lengths.size
        window_tokens = (np.maximum(lengths - specials, 0) + (counts - 1) * overlap + specials * counts).sum()
        costs[int(max_length)] = {"stride": overlap, "windows": int(counts.sum()),
                                  "per_text": round(float(counts.sum() / lengths.size), 3),
                                  "tokens_ratio": round(float(window_tokens / max(1, tokens)), 3)}
    return costs


def format_report(stats: list[LengthStats]) -> str:
    names = [s.model for s in stats]
    rows = [("texts", [f"{s.count:,}" for s in stats])]
    for key in ("mean", "median", "p90", "p95", "p99"):
        rows.append((key, [f"{getattr(s, key):.1f}" for s in stats]))
    rows.append(("max", [f"≥ {s.max:,}" if s.cut else f"{s.max:,}" for s in stats]))
    for cut in sorted(set().union(*(s.truncated_share for s in stats))):  # models may recommend different ones
        rows.append((f"cut at {cut}", [f"{s.truncated_share[cut]:.1%} of texts, {s.padding_share[cut]:.0%} padding"
                                       if cut in s.truncated_share else "-" for s in stats]))
    # long_text = "chunks" rows only where some text needs more than one window: elsewhere chunks change nothing
    chunked = sorted(max_length for max_length in set().union(*(s.windows for s in stats))
                     if any(s.windows.get(max_length, {}).get("windows", 0) > s.count for s in stats))
    for max_length in chunked:
        stride = next(s.windows[max_length]["stride"] for s in stats if max_length in s.windows)
        rows.append((f"chunks at {max_length} (stride {stride})",
                     [f"{s.windows[max_length]['windows']:,} windows ({s.windows[max_length]['per_text']:.2f}/text, "
                      f"{s.windows[max_length]['tokens_ratio']:.2f}x tokens)"
                      if max_length in s.windows else "-" for s in stats]))
    rows.append((f"recommended ({stats[0].coverage:.0%})", [str(s.recommended_max_length) for s in stats]))
    rows.append(("model limit", [str(s.model_limit) for s in stats]))
    rows.append(("seconds", [f"{s.seconds:.1f}" for s in stats]))
    width = max(len(r[0]) for r in rows)
    col = max(max(len(v) for r in rows for v in r[1]), max(len(n) for n in names))
    lines = [f"{'':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names)]
    lines += [f"{label:<{width}}  " + "  ".join(f"{v:>{col}}" for v in values) for label, values in rows]
    lines.append("cut at N: the texts longer than N tokens, and the share of tokens that would be padding if every "
                 "text were padded to N. tk pads each batch only to its longest text (and groups texts of like "
                 "length), so its own padding is far less: max_length costs little where it is not reached.")
    if chunked:
        lines.append("chunks at N: long_text = \"chunks\" with max_length = N; windows per text is about how many "
                     "times longer training and prediction take than truncating at N (x tokens: with padding per "
                     "batch, the same ratio in tokens). Lengths where every text fits in one window are left out.")
    if stats[0].cut:
        lines.append(f"{stats[0].cut:,} texts are longer than {MAX_CHARS:,} characters and were measured on their "
                     f"first {MAX_CHARS:,}: their lengths (and the max) are at least the numbers shown.")
    for s in stats:
        if s.recommended_max_length == s.model_limit and s.truncated_share.get(s.model_limit, 0) > 1 - s.coverage:
            lines.append(f"{s.model}: even the model's limit of {s.model_limit} tokens cuts "
                         f"{s.truncated_share[s.model_limit]:.0%} of texts; truncation = \"head+tail\" keeps "
                         "both ends of long texts, long_text = \"chunks\" reads all of them (the chunks rows).")
    return "\n".join(lines)


def plot_histogram(path: Path, lengths_by_model: dict[str, np.ndarray], stats: list[LengthStats], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    top = max(int(np.percentile(lengths, 99.5)) for lengths in lengths_by_model.values()) + 1
    for (name, lengths), stat in zip(lengths_by_model.items(), stats):
        ax.hist(np.minimum(lengths, top), bins=min(100, top), alpha=0.5, label=f"{name} (mean {stat.mean:.0f})")
        ax.axvline(stat.recommended_max_length, linestyle="--", label=f"{name}: max_length {stat.recommended_max_length}")
    ax.set_xlabel("tokens per text")
    ax.set_ylabel("texts")
    ax.set_title(title)
    ax.legend()
    save_png(fig, path)
