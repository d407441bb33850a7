"""Your own data with no plugin to write: the ``files`` dataset.

A CSV, TSV (with or without a header row), JSON Lines or Parquet file; a
folder of them (``train.*``, ``validation.*`` / ``dev.*``, ``test.*``); or a
folder per class (``FOLDER/CLASS/*.txt``, optionally under ``train/`` and
``test/``). The label names come from the data (sorted) unless the task's
``labels`` key fixes them; they are saved with the model.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.api import (
    DatasetInfo,
    LabelMapping,
    Setting,
    TkError,
    class_folders,
    find_split_files,
    hookimpl,
    load_class_folders,
    read_table_file,
)

NAME = "files"


@hookimpl
def tk_register_datasets(register):
    register(DatasetInfo(NAME, (), "your own CSV / TSV / JSON Lines / Parquet file, a folder of them, or a folder "
                                   "per class; labels from the data"))


@hookimpl
def tk_register_settings(register):
    optional = (str, type(None))
    register(Setting("text_column", optional, None, "files dataset: the column holding the text (default: found "
                                                    "by name: text, review, sentence, ...)"))
    register(Setting("label_column", optional, None, "files dataset: the column holding the label (default: found "
                                                     "by name: label, class, sentiment, ...)"))
    register(Setting("labels", (list, type(None)), None, "files dataset: the label names in class-id order "
                                                         "(default: the values in the data, sorted)"))
    register(Setting("test_data", optional, None, "files dataset: a separate test file, relative to tasks.toml"))
    register(Setting("header", (str, bool), "auto", "files dataset: whether a CSV / TSV file's first row names "
                                                    "its columns", ("auto", True, False)))


def _setting(task, name, default=None):
    if task is None:
        return default
    try:
        return task.setting(name)
    except KeyError:
        return default


@hookimpl
def tk_load_dataset(dataset, source, task, notes):
    if dataset.name != NAME:
        return None
    if source.path is None:
        raise TkError("The files dataset reads your own files: pass --data FILE (or FOLDER), or set "
                      "data = \"FILE\" in the task.")
    import datasets

    columns = {"text_column": _setting(task, "text_column"), "label_column": _setting(task, "label_column"),
               "header": _setting(task, "header", "auto")}
    path = source.path
    layout = class_folders(path) if path.is_dir() else None
    if layout:
        splits = dict(load_class_folders(layout))
    elif path.is_dir():
        files = find_split_files(path, notes)
        splits = {split: read(file, columns, notes) for split, file in files.items()}
        notes.append("Files: " + ", ".join(f"{split} {file.name}" for split, file in files.items()) + ".")
    else:
        splits = {"train": read(path, columns, notes)}
    test_data = _setting(task, "test_data")
    if test_data:
        test_path = Path(test_data)
        if not test_path.is_absolute() and source.base is not None:
            test_path = source.base / test_path
        if not test_path.is_file():
            raise TkError(f"test_data: {test_path} is not a file. Check the path (relative to tasks.toml).")
        if "test" in splits:
            notes.append(f"test: {test_path.name} (test_data) replaces the test split of {path.name}.")
        else:
            notes.append(f"test: {test_path.name} (test_data).")
        splits["test"] = read(test_path, columns, notes)
    return datasets.DatasetDict({split: _label_names(rows, split, notes) for split, rows in splits.items()})


def read(path: Path, columns: dict, notes: list[str]):
    try:
        return read_table_file(path, columns["text_column"], columns["label_column"], columns["header"], notes)
    except TkError as error:
        role = getattr(error, "role", None)  # read_table_file's missing-column error says which column
        if role is None:
            raise
        key = f"{role}_column"
        how = "Set it to one of them" if getattr(error, "given", None) else "Name the column"
        raise TkError(f"files dataset: {error} {how}: {key} = \"NAME\" in the task, or --set {key}=NAME.") from None


def _label_names(rows, split: str, notes: list[str]):
    """Labels as strings (1 and 1.0 both read "1", a ClassLabel id its name); rows without one are left out."""
    import datasets

    feature = rows.features["label"]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None

    def to_text(batch):
        return {"label": [None if v is None else names[v] if names else _name(v) for v in batch["label"]]}

    features = rows.features.copy()
    features["label"] = datasets.Value("string")
    named = rows.map(to_text, batched=True, features=features)
    before = len(named)
    named = named.filter(lambda batch: [v is not None and str(v).strip() != "" for v in batch["label"]],
                         batched=True)
    if len(named) < before:
        notes.append(f"{split}: left out {before - len(named)} rows with no label.")
    return named


def _name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@hookimpl
def tk_dataset_labels(dataset, splits, task):
    if dataset.name != NAME:
        return None
    found = set()
    for rows in splits.values():
        found.update(rows.unique("label"))
    given = _setting(task, "labels")
    if given:
        given = tuple(str(name) for name in given)
        extra = sorted(found - set(given))
        if extra:
            raise TkError(f"task key 'labels' = {list(given)} lacks label values found in the data: "
                          f"{', '.join(map(repr, extra[:10]))}. Add them to labels, or remove those rows.")
        return given
    if all(v.lstrip("-").isdecimal() for v in found):
        return tuple(sorted(found, key=int))
    return tuple(sorted(found))


@hookimpl
def tk_label_mapping(dataset):
    if dataset.name != NAME:
        return None
    return LabelMapping({name: i for i, name in enumerate(dataset.labels)})
