"""IMDB movie reviews (Maas et al., 2011): 25,000 train and 25,000 test reviews, neg/pos.

Reads the Hub (``stanfordnlp/imdb``), a local copy in the Hub layout, the
``aclImdb`` folder or its ``aclImdb_v1.tar.gz`` as Stanford distributes them,
and CSV / JSON Lines / Parquet files with text and label columns.
"""

from __future__ import annotations

import re
import tarfile
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
    split_files,
    standard_columns,
)

NAME = "imdb"
HUB_ID = "stanfordnlp/imdb"
LABELS = ("neg", "pos")
ACL_FILE = re.compile(r"(?:^|/)(train|test)/(pos|neg)/\d+_\d+\.txt$")


@hookimpl
def tk_register_datasets(register):
    register(DatasetInfo(NAME, LABELS, "IMDB movie reviews, binary sentiment (Maas et al., 2011)", HUB_ID))


@hookimpl
def tk_label_mapping(dataset):
    if dataset.name == NAME:
        # Hub/Parquet copies store ClassLabel ids; aclImdb folders store the folder names.
        return LabelMapping({0: 0, 1: 1, "neg": 0, "pos": 1})
    return None


@hookimpl
def tk_load_dataset(dataset: DatasetInfo, source: DataSource):
    if dataset.name != NAME:
        return None
    if source.path is None:
        import datasets

        require_hub(f"the dataset {HUB_ID}")
        return datasets.load_dataset(HUB_ID).select_columns(["text", "label"])
    return load_local(source.path)


def load_local(path: Path):
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz")):
            return load_acl_archive(path)
        if builder_for(path):
            return load_table({"train": path})
    elif (path / "train" / "pos").is_dir() or (path / "aclImdb").is_dir():
        return load_acl_folder(path / "aclImdb" if (path / "aclImdb").is_dir() else path)
    elif hub_files := hub_layout_files(path):
        return standard_columns(load_builder("parquet", hub_files), hub_files)
    elif files := split_files(path):
        return load_table(files)
    raise TkError(
        f"{path}: not an IMDB copy tk can read. Expected the Hub layout (plain_text/train-*.parquet), "
        "an aclImdb folder or aclImdb_v1.tar.gz, or a .csv/.jsonl/.parquet file with text and label columns."
    )


def hub_layout_files(folder: Path) -> dict[str, Path]:
    found = {}
    for split in ("train", "test"):
        matches = sorted(folder.glob(f"**/{split}-*.parquet"))
        if matches:
            found[split] = matches[0]
    return found if "train" in found else {}


def load_acl_folder(folder: Path):
    rows = {"train": ([], []), "test": ([], [])}
    for split in rows:
        for label in LABELS:
            for review in sorted((folder / split / label).glob("*.txt")):
                rows[split][0].append(review.read_text(encoding="utf-8"))
                rows[split][1].append(label)
    return _to_dataset(rows, folder)


def load_acl_archive(archive: Path):
    """Stream the tarball once; ``train/unsup`` and other members are skipped."""
    rows = {"train": ([], []), "test": ([], [])}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                match = ACL_FILE.search(member.name)
                if match and member.isfile():
                    split, label = match.groups()
                    rows[split][0].append(tar.extractfile(member).read().decode("utf-8"))
                    rows[split][1].append(label)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise TkError(f"{archive}: cannot read the archive ({error}). Download it again.") from None
    return _to_dataset(rows, archive)


def _to_dataset(rows, where: Path):
    import datasets

    if not rows["train"][0]:
        raise TkError(f"{where}: no reviews found under train/pos or train/neg.")
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_dict({"text": texts, "label": labels})
         for split, (texts, labels) in rows.items() if texts}
    )
