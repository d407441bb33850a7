"""From a dataset name and a source to labelled splits: the loading and label-mapping stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.data.labels import apply_label_mapping
from toolkit.data.sources import resolve_source
from toolkit.errors import TkError
from toolkit.records import DatasetInfo, DataSource, LabelMapping


@dataclass
class Labelled:
    """A dataset's labelled splits, where they came from, and what loading left out."""

    dataset: DatasetInfo
    source: DataSource
    splits: Any  # DatasetDict with text and class-id label columns
    notes: list[str] = field(default_factory=list)

    def split(self, name: str):
        if name not in self.splits:
            raise TkError(f"{self.dataset.name} from {self.source.describe()} has no '{name}' split. "
                          f"Splits: {', '.join(self.splits)}.")
        return self.splits[name]


def load_named(pm, name: str, data: str | None = None, task_data: str | None = None,
               base: Path | None = None) -> Labelled:
    """Resolve the dataset and its source (--data, task data key, TK_DATA_DIR, Hub), then load and map labels."""
    dataset = pm.dataset(name)
    source = resolve_source(dataset.name, data, task_data, base)
    notes: list[str] = []
    return Labelled(dataset, source, load_labelled(pm, dataset, source, notes), notes)


def load_labelled(pm, dataset: DatasetInfo, source: DataSource, notes: list[str]):
    """Run ``tk_load_dataset`` and ``tk_label_mapping``; drop empty texts; check the labels."""
    splits = pm.first("tk_load_dataset", f"dataset '{dataset.name}' from {source.describe()}", dataset.plugin,
                      dataset=dataset, source=source)
    if "train" not in splits:
        raise TkError(f"{dataset.name}: {source.describe()} has no training split.")
    mapping = pm.hook.tk_label_mapping(dataset=dataset)
    if mapping is None:
        mapping = LabelMapping({i: i for i in range(len(dataset.labels))})
    splits = drop_empty_texts(splits, notes)
    return apply_label_mapping(splits, dataset, mapping, notes)


def drop_empty_texts(splits, notes: list[str]):
    """Empty or whitespace-only texts teach nothing: leave them out and say how many."""
    kept = {}
    for name, split in splits.items():
        before = len(split)
        split = split.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
        if len(split) < before:
            notes.append(f"{name}: left out {before - len(split)} empty or whitespace-only texts.")
        if len(split) == 0:
            raise TkError(f"The {name} split has no rows with text. Check the text column of the data.")
        kept[name] = split
    return type(splits)(kept)
