"""Every hook a tk plugin can implement, grouped by pipeline stage.

A plugin implements only the hooks it needs, with the ``tk.hookimpl`` marker,
and may leave out arguments it does not use. Specs only ever grow by adding
arguments. Hooks marked ``firstresult`` stop at the first non-None result:
a plugin answers for the names it owns and returns None for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from toolkit.records import (
    DatasetInfo,
    DataSource,
    EngineInfo,
    LabelMapping,
    LengthStats,
    ModelInfo,
    Setting,
    WithNotes,
)

if TYPE_CHECKING:
    import numpy as np
    from datasets import DatasetDict

    from toolkit.config import TaskConfig

hookspec = pluggy.HookspecMarker("tk")


# --------------------------------------------------------------------------
# Registration: called once when the plugin manager starts
# --------------------------------------------------------------------------


@hookspec
def tk_register_datasets(register: Callable[[DatasetInfo], None]) -> None:
    """Declare the datasets this plugin can load.

    Called once, when tk first needs the list of datasets. Call
    ``register(DatasetInfo(...))`` once per dataset; the label names given
    there fix the class ids. Two plugins registering one name is an error.
    """


@hookspec
def tk_register_models(register: Callable[[ModelInfo], None]) -> None:
    """Declare the pretrained models this plugin can load, by short name.

    Called once, when tk first needs the list of models. Call
    ``register(ModelInfo(...))`` once per model. Two plugins registering one
    name is an error.
    """


@hookspec
def tk_register_engines(register: Callable[[EngineInfo], None]) -> None:
    """Declare the training engines this plugin provides.

    Called once, when tk first needs the list of engines. Call
    ``register(EngineInfo(name, description, strategy=...))`` once per engine:
    ``strategy(task)`` returns a ``toolkit.api.StepStrategy`` that runs each
    optimizer step; tk's training loop runs everything else (epochs,
    evaluation, selection, checkpoints, resume, data-parallel processes). Two
    plugins registering one name is an error.
    """


@hookspec
def tk_register_settings(register: Callable[[Setting], None]) -> None:
    """Declare the task keys this plugin reads.

    Called once, before a tasks.toml is checked. Call ``register(Setting(...))``
    once per key; tk validates the key in every task, documents it in
    ``tk list`` and hands its value to the plugin as ``task.setting(name)``.
    A key declared twice, or named like a core key, is an error.
    """


@hookspec
def tk_register_commands(cli: Any) -> None:
    """Add commands to the ``tk`` command line.

    Called once when the CLI starts, before arguments are parsed. ``cli`` is
    the ``click.Group`` of ``tk``: decorate new commands with ``@cli.command()``.
    """


# --------------------------------------------------------------------------
# Dataset loading
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def tk_load_dataset(
    dataset: DatasetInfo, source: DataSource, task: TaskConfig | None
) -> DatasetDict | WithNotes | None:
    """Load the raw rows of ``dataset`` from ``source``.

    Called by ``tk run``, ``tk check``, ``tk analyze-lengths`` and
    ``tk evaluate``. Return a ``datasets.DatasetDict`` with a ``train`` and a
    ``test`` split (``test`` may be absent when the source has only one
    file; a ``validation`` split, when present, is used instead of carving
    one), each with a ``text`` column (str) and a ``label`` column holding
    the raw label values as stored in the data (for a multi-label task, a
    list of raw values per row, possibly empty). Raise ``TkError`` for a
    source that cannot be read. ``task`` is the task being run (None for
    ``tk check DATASET`` and ``tk analyze-lengths DATASET`` without
    ``--set``): read your own keys with ``task.setting(name)``; it was added
    in this version: leave it out if you do not use it. To tell the user
    something about the data (which file was picked, rows left out), return
    ``WithNotes(splits, notes)``: tk prints each line and records them in
    the run. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def tk_dataset_labels(dataset: DatasetInfo, splits: DatasetDict, task: TaskConfig | None) -> tuple[str, ...] | None:
    """The label names of ``dataset``, in class-id order, read from its loaded ``splits``.

    Called right after ``tk_load_dataset``, before ``tk_label_mapping``.
    Answer for a dataset you registered with no labels (``DatasetInfo.labels
    == ()``) because they come from the data: tk then uses a copy of the
    ``DatasetInfo`` with these labels for the rest of the run (label mapping,
    model head, metrics, the saved model's ``id2label``). Return them in a
    stable order (sorted, or as the task fixes them). Not called when the
    labels are already fixed (``tk evaluate`` uses the run's). Stops at
    first non-None result.
    """


# --------------------------------------------------------------------------
# Label mapping
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def tk_label_mapping(dataset: DatasetInfo) -> LabelMapping | None:
    """Map the raw label values of ``dataset`` to class ids.

    Called after loading, before any check or training. Return a
    ``LabelMapping`` whose ids index ``dataset.labels``; map a raw value to
    None to drop its rows on purpose (multi-label: to drop it from each row's
    label list). tk checks the mapping against every row
    and stops with examples when a value is missing from it. Stops at first
    non-None result.
    """


# --------------------------------------------------------------------------
# Model loading
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def tk_resolve_model(name: str, base: Path | None) -> ModelInfo | None:
    """A ``ModelInfo`` for a model name no plugin registered, or None.

    Called when a task names a model that is not in the registry (e.g.
    ``hf:ORG/NAME`` or a folder path): a plugin that recognises the name
    answers with a ``ModelInfo`` (its ``plugin`` field set to its own name),
    then loads it in ``tk_load_tokenizer`` / ``tk_load_model`` as usual.
    ``base`` is the folder of tasks.toml (relative paths), or None. Raise
    ``TkError`` for a name you recognise but cannot use. Stops at first
    non-None result.
    """


@hookspec(firstresult=True)
def tk_load_tokenizer(model: ModelInfo) -> Any | None:
    """Return the (fast) tokenizer of ``model``.

    Called before tokenizing, by ``tk run`` and ``tk analyze-lengths``.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def tk_load_model(model: ModelInfo, labels: tuple[str, ...]) -> Any | None:
    """Return ``model`` with a fresh classification head for ``labels``.

    Called once per run, after the data is ready. The returned
    ``PreTrainedModel`` must carry ``id2label``/``label2id`` built from
    ``labels``. Stops at first non-None result.
    """


# --------------------------------------------------------------------------
# Tokenization-length analysis
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def tk_analyze_lengths(
    lengths: Sequence[int], model: ModelInfo, model_limit: int, coverage: float
) -> LengthStats | None:
    """Summarise token ``lengths`` (special tokens included) of one split.

    Called by ``tk analyze-lengths`` once per model. ``model_limit`` is the
    model's maximum sequence length; ``coverage`` the share of texts the
    recommended ``max_length`` must hold whole. Stops at first non-None result.
    """


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


@hookspec
def tk_compute_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    label_names: tuple[str, ...],
    confidence: bool,
    positive_label: int | None,
    problem: str,
    thresholds: np.ndarray | None,
) -> dict[str, Any]:
    """Score predictions: ``labels`` are true class ids, ``probabilities`` an (n, classes) array.

    Called after every epoch on the validation split (``confidence`` False:
    be quick) and once on the test split (``confidence`` True: add 95%
    intervals). ``positive_label`` is the class id a two-class task scores
    as positive (the task key of that name), None for the default (the
    second label). ``problem`` is ``"single-label"`` or ``"multi-label"``:
    then ``labels`` is an (n, labels) 0/1 array, ``probabilities`` a sigmoid
    per label, and a label is predicted where its probability reaches its
    entry of ``thresholds`` (0.5 per epoch, the tuned ones on the test
    split; None for single-label). ``problem`` and ``thresholds`` were added
    in this version. Every plugin's dict is merged into ``metrics.json``; a
    headline number is a float, its interval goes under ``<name>_ci``.
    """
