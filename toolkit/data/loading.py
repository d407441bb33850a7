"""From a dataset name and a source to labelled splits: the loading and label-mapping stages."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toolkit.data.labels import apply_label_mapping
from toolkit.data.multilabel import apply_multilabel_mapping, is_list_feature
from toolkit.data.rows import column, number_rows, row_numbers, rows_named
from toolkit.data.sources import resolve_source
from toolkit.errors import TkError
from toolkit.plugins import wrong_answer
from toolkit.records import DatasetInfo, DataSource, LabelMapping, WithNotes


@dataclass
class Labelled:
    """A dataset's labelled splits, where they came from, and what loading left out."""

    dataset: DatasetInfo
    source: DataSource
    splits: Any  # DatasetDict with text and class-id label columns
    notes: tuple[str, ...] = ()  # what loading tells the user: which file, which rows were left out
    rows_read: dict[str, int] = field(default_factory=dict)  # each split's rows as the plugin gave them

    def split(self, name: str):
        if name not in self.splits:
            raise TkError(f"{self.dataset.name} from {self.source.describe()} has no '{name}' split. "
                          f"Splits: {', '.join(self.splits)}.")
        return self.splits[name]


def load_named(pm, name: str, data: str | None = None, task_data: str | None = None,
               base: Path | None = None, task=None, classes: bool = True) -> Labelled:
    """Resolve the dataset and its source (--data, task data key, TK_DATA_DIR, Hub), then load and map labels.

    ``classes``: check the classes for training (False for tk analyze-lengths, which reads only texts).
    """
    dataset = pm.dataset(name)
    source = resolve_source(dataset.name, data, task_data, base)
    return load_with_labels(pm, dataset, source, task, classes=classes)


def load_with_labels(pm, dataset: DatasetInfo, source: DataSource, task=None,
                     labels: tuple[str, ...] | None = None, classes: bool = True) -> Labelled:
    """Load (``tk_load_dataset``), learn the label names (``tk_dataset_labels``, unless ``labels`` fixes them),
    drop empty texts, map and check (``classes``: the classes, for training; off where labels are fixed:
    scoring a saved model).

    Returns the dataset record with its labels, and the labelled splits: class ids, or for a multi-label
    task (``problem = "multi-label"``; with no task, label lists in the data) multi-hot rows; with what
    each stage said.
    """
    loaded = pm.first("tk_load_dataset", f"dataset '{dataset.name}' from {source.describe()}", dataset.plugin,
                      dataset=dataset, source=source, task=task)
    splits, notes = (loaded.value, loaded.notes) if isinstance(loaded, WithNotes) else (loaded, ())
    if isinstance(notes, str) or not all(isinstance(note, str) for note in notes):
        raise wrong_answer("tk_load_dataset", dataset.plugin, loaded,
                           "a DatasetDict, or WithNotes(splits, notes) with notes a tuple of lines (str)")
    notes = list(notes)
    if "train" not in splits:
        raise TkError(f"{dataset.name}: {source.describe()} has no training split.")
    splits = type(splits)({name: number_rows(split) for name, split in splits.items()})  # before any row is left out
    rows_read = {name: len(split) for name, split in splits.items() if hasattr(split, "__len__")}
    fixed = labels is not None  # scoring a saved model: its labels, and a split may lack some classes
    from_data = False
    if labels is None:
        labels = pm.hook.tk_dataset_labels(dataset=dataset, splits=splits, task=task)
        if labels is not None and (isinstance(labels, (str, bytes)) or not isinstance(labels, (list, tuple))):
            raise wrong_answer("tk_dataset_labels", dataset.plugin, labels,
                               f"a tuple of label names for dataset '{dataset.name}', or None")
        from_data = labels is not None
        if from_data and not labels:
            raise TkError(f"{dataset.name} from {source.describe()}: no row has a label (plugin "
                          f"'{dataset.plugin}' found no label values in the data). Check the label column.")
        if from_data and classes:
            check_label_count(len(labels), len(splits["train"]), f"{dataset.name} from {source.describe()}", task)
    if labels is not None:
        dataset = replace(dataset, labels=tuple(str(label) for label in labels))
    if not dataset.labels:
        raise TkError(f"Dataset '{dataset.name}' (plugin '{dataset.plugin}') declares no labels and no plugin "
                      "answered tk_dataset_labels for it. Declare labels in DatasetInfo or answer that hook.")
    if len(set(dataset.labels)) != len(dataset.labels):
        raise TkError(f"Dataset '{dataset.name}': label names repeat: {list(dataset.labels)}.")
    mapping = pm.hook.tk_label_mapping(dataset=dataset)
    if mapping is None:
        mapping = LabelMapping({i: i for i in range(len(dataset.labels))})
    multi_label = task.multi_label if task is not None else holds_label_lists(splits)
    typed = check_column_types(splits, f"{dataset.name} from {source.describe()}", multi_label)
    with_text = drop_empty_texts(typed.value)
    splits, notes = with_text.value, [*notes, *typed.notes, *with_text.notes]
    if multi_label:
        mapped = apply_multilabel_mapping(splits, dataset, mapping, every_label=classes and not fixed)
    else:
        mapped = apply_label_mapping(splits, dataset, mapping, every_class=classes and not fixed, source=source,
                                     from_data=from_data, said=tuple(notes), scoring=fixed)
    return Labelled(dataset, source, mapped.value, (*notes, *mapped.notes), rows_read)


# A label column with more distinct values than this share of the training rows holds texts, not classes.
MOST_ROWS_DISTINCT = 0.5
FEW_LABELS = 20  # below this many distinct values the share says nothing (a 30-row toy set may have 16 classes)


def check_label_count(distinct: int, rows: int, where: str, task=None) -> None:
    """Refuse a label column that names nearly every row differently: texts read as labels (swapped columns)."""
    if distinct < FEW_LABELS or distinct <= MOST_ROWS_DISTINCT * rows:
        return
    named = task.settings.get("label_column") if task is not None else None  # the files plugin's key
    column = f"column '{named}'" if named else "the label column"
    raise TkError(f"{where}: {column} has {distinct:,} distinct values in {rows:,} training rows, so most classes "
                  "would have a single row: it looks like texts, not labels. Check text_column and label_column "
                  "(are they swapped?).")


def holds_label_lists(splits) -> bool:
    """Whether a split's label column holds a list per row: multi-label data (when no task says)."""
    return any(getattr(split, "features", None) is not None and "label" in split.column_names
               and is_list_feature(split.features["label"]) for split in splits.values())


def check_column_types(splits, where: str, multi_label: bool = False) -> WithNotes:
    """Texts must be strings and labels single values (multi-label: lists of values, or single values).

    A text column of numbers (a CSV or parquet column the reader typed as int or float) is
    read as text, with a note: numbers are odd texts but valid ones, and a CSV gives no way
    to make the reader type them as strings. Objects or lists are refused: there is no one
    right way to turn them into text or a label.
    """
    import datasets

    kept, notes = {}, []
    for name, split in splits.items():
        if getattr(split, "features", None) is None:  # untyped (e.g. iterable) splits: nothing to check here
            kept[name] = split
            continue
        for needed in ("text", "label"):
            if needed not in split.column_names:
                raise TkError(f"{where}: the {name} split has no '{needed}' column (columns: "
                              f"{', '.join(split.column_names)}).")
        text, label = split.features["text"], split.features["label"]
        if isinstance(text, datasets.Value) and text.dtype not in ("string", "large_string"):
            if not (text.dtype.startswith(("int", "uint", "float")) or text.dtype == "bool"):
                raise TkError(f"{where}: the text column of the {name} split holds {text.dtype} values, not text.")
            split = split.cast_column("text", datasets.Value("string"))
            notes.append(f"{name}: the text column holds numbers ({text.dtype}), not words; they are read as "
                         f"text (e.g. {_first_value(split['text'])!r}). Check that it is the right column.")
        elif not isinstance(text, datasets.Value):
            raise TkError(f"{where}: the text column of the {name} split holds {_kind(split['text'])}, not text "
                          f"({_first_bad(split, 'text', str)}). Each row's text must be a string.")
        if is_list_feature(label) and not multi_label:
            example = _first_bad(split, "label", (str, int, float, bool))
            raise TkError(f"{where}: the label column of the {name} split holds lists ({example}): several labels "
                          "per text. Set problem = \"multi-label\" in the task (or --set problem=multi-label); "
                          "docs/multi-label.md.")
        if multi_label and is_list_feature(label):
            inner = getattr(label, "feature", None) or (label[0] if isinstance(label, list) and label else None)
            if isinstance(inner, (datasets.Value, datasets.ClassLabel)):
                kept[name] = split
                continue
        if not isinstance(label, (datasets.Value, datasets.ClassLabel)):
            raise TkError(f"{where}: the label column of the {name} split holds {_kind(split['label'])} "
                          f"({_first_bad(split, 'label', (str, int, float, bool))}). Each row needs one label "
                          "value, like \"pos\" or 1.")
        kept[name] = split
    return WithNotes(type(splits)(kept), tuple(notes))


def _first_value(values) -> object:  # read lazily: up to the first one
    return next((v for v in values if v is not None), None)


def _first_bad(split, name: str, allowed) -> str:
    for row, value in zip(row_numbers(split), column(split, name)):
        if value is not None and not isinstance(value, allowed):
            shown = repr(value)
            return f"e.g. row {row}: {shown[:60] + '...' if len(shown) > 60 else shown}"
    return "mixed types"


def _kind(values) -> str:
    bad = next((v for v in values if v is not None and not isinstance(v, (str, int, float, bool))), None)
    return {dict: "objects", list: "lists"}.get(type(bad), "values of mixed types")


def drop_empty_texts(splits) -> WithNotes:
    """Empty or whitespace-only texts teach nothing: leave them out and say how many."""
    kept, notes = {}, []
    import numpy as np

    for name, split in splits.items():
        keep = np.array([bool(t and t.strip()) for t in column(split, "text")], dtype=bool)
        if not keep.all():
            empty = row_numbers(split)[~keep]
            notes.append(f"{name}: left out {len(empty):,} empty or whitespace-only texts: {rows_named(empty)}.")
            split = split.select(np.flatnonzero(keep))
        if len(split) == 0:
            raise TkError(f"The {name} split has no rows with text. Check the text column of the data.")
        kept[name] = split
    return WithNotes(type(splits)(kept), tuple(notes))
