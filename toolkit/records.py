"""Typed records that plugins hand to the engine and the engine hands to plugins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset a plugin can load: its name, its classes and where it lives on the Hub.

    ``labels`` are the class names in class-id order, declared up front (like
    ``datasets.ClassLabel``) so ids and names never drift.
    """

    name: str
    labels: tuple[str, ...]
    description: str = ""
    hub_id: str | None = None  # shown by tk list; None for a dataset read from local files only
    plugin: str = ""  # filled in by the plugin manager


@dataclass(frozen=True)
class ModelInfo:
    """A pretrained model a plugin can load, by a short name used in tasks.toml."""

    name: str
    source: str  # Hub id or local folder
    description: str = ""
    offline: bool = False  # True when it needs no network (bundled weights): named in offline advice
    plugin: str = ""
    # For the model card: the Hub id the weights come from (a bundled copy too), their license and language;
    # None where unknown (the card then says "unknown").
    hub_id: str | None = None
    license: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class DataSource:
    """Where a dataset's rows come from.

    ``path`` is None for the Hub. ``origin`` says how it was chosen
    (``--data``, the task's ``data`` key, ``TK_DATA_DIR`` or the Hub).
    """

    path: Path | None
    origin: str
    base: Path | None = None  # the folder of tasks.toml: other paths a task names (test_data) are relative to it

    def describe(self) -> str:
        return f"{self.path} (from {self.origin})" if self.path else "the Hugging Face Hub"


@dataclass(frozen=True)
class WithNotes:
    """An answer and what to tell the user about it, one line each (which file was picked, which rows were left
    out): what ``tk_load_dataset`` and the file readers of the plugin API return instead of appending to a list."""

    value: Any
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelMapping:
    """Raw label values (as stored in the data) to class ids.

    A raw value mapped to None is dropped on purpose (Sentiment140's neutral
    test rows in a binary task); a raw value absent from ``ids`` is an error.
    """

    ids: dict[Any, int | None]


@dataclass(frozen=True)
class EpochRecord:
    """One row of the per-epoch table, and the epoch's training-loss curve.

    ``train_loss`` is the mean of the epoch's ``steps`` step losses;
    ``step_losses`` is that curve in at most a few hundred points (each the
    mean of an equal run of steps). Multi-label: ``accuracy`` is subset accuracy
    and ``f1`` micro F1; ``f1_macro`` is the macro F1 of either problem.
    """

    epoch: int
    train_loss: float | None
    validation_loss: float
    accuracy: float
    f1: float
    seconds: float
    steps: int = 0
    step_losses: tuple[float, ...] = ()
    f1_macro: float | None = None  # added after the first release: None in older histories
    # The standard error of this epoch's rise in validation loss over the lowest one before it, from the
    # paired per-row differences (the same rows both times); None for the first epoch and in older histories.
    loss_rise_se: float | None = None
    # (per-row validation losses, row weights): what the next epochs are paired with; in memory only.
    validation_rows: Any = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        values = {**self.__dict__, "step_losses": list(self.step_losses)}
        del values["validation_rows"]
        return values


@dataclass(frozen=True)
class TrainResult:
    """What a training engine returns: the selected (best) model and its history."""

    model: Any
    history: list[EpochRecord]
    best_epoch: int
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)  # engine details for manifest.json
    # After training, before the run is saved: writes the trained state as the last resume point (an interrupt
    # while scoring or saving then resumes without training again). None where it cannot (data-parallel).
    keep_for_resume: Any = None


@dataclass(frozen=True)
class Setting:
    """A task key: its type, default, allowed values and help.

    The core declares its own keys this way; a plugin declares the keys it
    reads with ``tk_register_settings`` and reads them with ``task.setting(name)``.
    """

    name: str
    types: tuple[type, ...]  # e.g. (bool,), (int, type(None))
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    plugin: str = ""  # "" for core keys; filled in by the plugin manager


@dataclass(frozen=True)
class EngineInfo:
    """A training engine: how steps run. tk's training loop (toolkit.training.loop) runs the epochs and takes
    every decision; the engine's ``strategy(task)`` returns a ``StepStrategy`` that runs each optimizer step.

    ``unavailable(task)`` returns why the engine cannot train ``task`` on this
    machine, or None. ``engine = "auto"`` picks the available engine with the
    highest ``auto_priority``.
    """

    name: str
    description: str
    strategy: Callable[[Any], Any] | None = field(default=None, compare=False)
    unavailable: Callable[[Any], str | None] = field(default=lambda task: None, compare=False)
    auto_priority: int = 0
    plugin: str = ""


@dataclass(frozen=True)
class LengthStats:
    """Token-length statistics of one dataset split under one tokenizer."""

    model: str
    count: int
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: int
    model_limit: int
    coverage: float
    recommended_max_length: int
    truncated_share: dict[int, float]
    padding_share: dict[int, float]
    seconds: float = 0.0
    cut: int = 0  # texts longer than analyze-lengths' character cap: their lengths are lower bounds
    # long_text = "chunks" at each cut-off up to the model's limit: {max_length: {"stride", "windows",
    # "per_text" (windows / texts: training and prediction time relative to truncation), "tokens_ratio"}}
    windows: dict[int, dict[str, float]] = field(default_factory=dict)
