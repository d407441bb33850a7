"""Decisions every training plugin makes the same way: batching, model selection, out-of-memory advice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.config import TaskConfig
from toolkit.errors import TkError
from toolkit.records import EpochRecord

GROUPING_PAYS_OFF = 0.10  # group by length when random batches would be at least 10% padding


def group_by_length(task: TaskConfig, lengths: Sequence[int]) -> bool:
    """The task's group_by_length; "auto" groups only where random batches would carry much padding.

    Grouping changes which texts share a batch; where most texts are cut to
    max_length anyway (IMDB at 128) it saves nothing, so the order stays random.
    """
    if task.group_by_length != "auto":
        return bool(task.group_by_length)
    lengths = np.random.default_rng(task.seed).permutation(np.asarray(lengths))
    usable = len(lengths) - len(lengths) % task.batch_size
    if usable == 0 or not task.dynamic_padding:
        return False
    batches = lengths[:usable].reshape(-1, task.batch_size)
    padded = batches.max(axis=1).sum() * task.batch_size
    return bool(1 - batches.sum() / padded >= GROUPING_PAYS_OFF)


def best_epoch(history: list[EpochRecord], select_metric: str) -> int:
    """The first epoch with the best validation metric: the one a run keeps."""
    if select_metric == "loss":
        return min(history, key=lambda r: r.validation_loss).epoch
    return max(history, key=lambda r: getattr(r, select_metric)).epoch


def improved(record: EpochRecord, best: EpochRecord | None, select_metric: str) -> bool:
    """Strictly better than the best so far (ties keep the earlier epoch, as the Trainer does)."""
    if best is None:
        return True
    if select_metric == "loss":
        return record.validation_loss < best.validation_loss
    return getattr(record, select_metric) > getattr(best, select_metric)


def out_of_memory(task: TaskConfig, error: BaseException) -> TkError:
    return TkError(
        f"Out of memory training with batch_size = {task.batch_size} and max_length = {task.max_length} "
        f"({type(error).__name__}). Lower them, e.g. --set batch_size={max(1, task.batch_size // 2)}; "
        "the last finished epoch is saved (tk run --resume RUN)."
    )
