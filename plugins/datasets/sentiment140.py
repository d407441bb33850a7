"""Sentiment140 tweets (Go, Bhayani & Huang, 2009): polarity 0 = negative, 4 = positive.

The manual test set also holds neutral tweets (polarity 2); the binary task
drops them, and the run says how many. Reads the raw published CSVs (no
header, six quoted fields, latin-1), CSVs with ``polarity,text`` columns, and
the Hub, through the Parquet conversion of ``stanfordnlp/sentiment140``
(its loading script no longer runs on current ``datasets``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from toolkit.api import (
    DatasetInfo,
    DataSource,
    LabelMapping,
    TkError,
    builder_for,
    hookimpl,
    load_builder,
    load_table,
    require_hub,
)

NAME = "sentiment140"
HUB_ID = "stanfordnlp/sentiment140"
HUB_PARQUET_REVISION = "refs/convert/parquet"
LABELS = ("negative", "positive")
RAW_COLUMNS = ["polarity", "id", "date", "query", "user", "text"]
# Preferred training file first: the full published file, then samples of it.
TRAIN_FILES = ("training.1600000.processed.noemoticon.csv", "training*.csv", "train*.csv")
TEST_FILES = ("testdata.manual.2009.06.14.csv", "test*.csv")


@hookimpl
def tk_register_datasets(register):
    register(DatasetInfo(NAME, LABELS, "Sentiment140 tweets, binary sentiment (Go et al., 2009)", HUB_ID))


@hookimpl
def tk_label_mapping(dataset):
    if dataset.name == NAME:
        return LabelMapping({0: 0, 4: 1, 2: None})  # 2 = neutral: test set only, not in a binary task
    return None


@hookimpl
def tk_load_dataset(dataset: DatasetInfo, source: DataSource):
    if dataset.name != NAME:
        return None
    if source.path is None:
        import datasets

        require_hub(f"the dataset {HUB_ID}")
        splits = datasets.load_dataset(HUB_ID, revision=HUB_PARQUET_REVISION)
        return splits.select_columns(["text", "sentiment"]).rename_column("sentiment", "label")
    files = find_files(source.path)
    return load_files(files)


def find_files(path: Path) -> dict[str, Path]:
    if path.is_file():
        return {"train": path}
    files = {}
    for split, patterns in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        for pattern in patterns:
            matches = sorted(p for p in path.glob(pattern) if builder_for(p))
            if matches:
                files[split] = matches[0]
                break
    if "train" not in files:
        raise TkError(
            f"{path}: no Sentiment140 training file. Expected {TRAIN_FILES[0]} (or a sample of it, "
            "training*.csv) and optionally testdata.manual.2009.06.14.csv."
        )
    return files


def load_files(files: dict[str, Path]):
    import datasets

    loaded = {}
    for split, path in files.items():
        if is_raw(path):
            raw = load_builder("csv", {split: path}, column_names=RAW_COLUMNS, encoding="latin-1",
                               header=None, features=raw_features())
            loaded[split] = raw[split].select_columns(["text", "polarity"]).rename_column("polarity", "label")
        else:
            loaded[split] = load_table({split: path})[split]
    return datasets.DatasetDict(loaded)


def raw_features():
    import datasets

    return datasets.Features({name: datasets.Value("int64" if name == "polarity" else "string")
                              for name in RAW_COLUMNS})


def is_raw(path: Path) -> bool:
    """The published files have no header: six quoted fields, the first a polarity digit."""
    if path.suffix.lower() != ".csv":
        return False
    with open(path, encoding="latin-1", newline="") as handle:
        first = next(csv.reader(handle), [])
    return len(first) == 6 and first[0].strip().isdigit()
