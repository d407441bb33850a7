"""Your own data with no plugin to write: the ``files`` dataset.

A CSV, TSV (with or without a header row), JSON Lines or Parquet file; a
folder of them (``train.*``, ``validation.*`` / ``dev.*``, ``test.*``); or a
folder per class (``FOLDER/CLASS/*.txt``, optionally under ``train/`` and
``test/``). The label names come from the data (sorted) unless the task's
``labels`` key fixes them; they are saved with the model.

A multi-label task (``problem = "multi-label"``) reads each row's labels from
a list (JSON Lines, Parquet), a delimited string (``label_separator``, or a
JSON list in the cell), or several 0/1 columns (``label_columns``).
"""

from __future__ import annotations

import re
from pathlib import Path

from toolkit.api import (
    DatasetInfo,
    LabelMapping,
    Setting,
    TkError,
    WithNotes,
    class_folders,
    column,
    find_split_files,
    hookimpl,
    load_class_folders,
    read_table_file,
    row_numbers,
    rows_named,
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
    register(Setting("label_names", (dict, type(None)), None, "files dataset: a name for each label value, e.g. "
                                                              "{0 = \"negative\", 4 = \"positive\"} (a value not "
                                                              "named keeps its own name)"))
    register(Setting("test_data", optional, None, "files dataset: a separate test file, relative to tasks.toml (without one: to the current folder)"))
    register(Setting("header", (str, bool), "auto", "files dataset: whether a CSV / TSV file's first row names "
                                                    "its columns", ("auto", True, False)))
    register(Setting("label_columns", (list, type(None)), None, "files dataset, multi-label: several 0/1 columns, "
                                                                "one per label; the column names are the labels, "
                                                                "in this order"))
    register(Setting("label_separator", (str,), ",", "files dataset, multi-label: what separates the labels in a "
                                                     "text cell (`a,b`); a cell holding a JSON list (`[\"a\", \"b\"]`) "
                                                     "is read as that list"))


def _setting(task, name, default=None):
    if task is None:
        return default
    try:
        return task.setting(name)
    except KeyError:
        return default


@hookimpl
def tk_load_dataset(dataset, source, task):
    if dataset.name != NAME:
        return None
    if source.path is None:
        raise TkError("The files dataset reads your own files: pass --data FILE (or FOLDER), or set "
                      "data = \"FILE\" in the task.")
    import datasets

    label_columns = _setting(task, "label_columns")
    multi_label = task is not None and task.multi_label
    if label_columns and not multi_label:
        raise TkError(f"label_columns = {label_columns}: several 0/1 label columns make a multi-label task. Add "
                      "problem = \"multi-label\" to the task (or --set problem=multi-label).")
    if label_columns and _setting(task, "labels"):
        raise TkError("Set label_columns or labels, not both: with label_columns the column names are the labels, "
                      "in that order.")
    if label_columns is not None and (not label_columns or not all(isinstance(c, str) for c in label_columns)):
        raise TkError(f"label_columns must list column names, like [\"toxic\", \"obscene\"]; got {label_columns!r}.")
    columns = {"text_column": _setting(task, "text_column"), "label_column": _setting(task, "label_column"),
               "header": _setting(task, "header", "auto"), "label_columns": label_columns}
    path = source.path
    layout = class_folders(path) if path.is_dir() else None
    notes = []
    if layout:
        splits = dict(load_class_folders(layout))
    elif path.is_dir():
        found = find_split_files(path)
        read_files = {split: read(file, columns) for split, file in found.value.items()}
        notes += [*found.notes, *(note for rows in read_files.values() for note in rows.notes)]
        splits = {split: rows.value for split, rows in read_files.items()}
        notes.append("Files: " + ", ".join(f"{split} {file.name}" for split, file in found.value.items()) + ".")
    else:
        rows = read(path, columns, _setting(task, "test_data"))
        notes += rows.notes
        splits = {"train": rows.value}
    test_data = _setting(task, "test_data")
    if test_data:
        test_path = Path(test_data)
        if not test_path.is_absolute() and source.base is not None:
            test_path = source.base / test_path
        if not test_path.is_file():
            relative = (f"; a relative path is read from {source.base}" if source.base is not None
                        and not Path(test_data).is_absolute() else "")
            raise TkError(f"test_data: {test_path} is not a file. Check the path{relative}.")
        if "test" in splits:
            notes.append(f"test: {test_path} (the task's test_data) replaces the test split of {path}.")
        else:
            notes.append(f"test: {test_path} (the task's test_data).")
        test = read_test_data(test_path, columns, path)
        notes += test.notes
        splits["test"] = test.value
    separator = _setting(task, "label_separator", ",") if multi_label else None
    renamed = _renaming(_setting(task, "label_names"))
    named = {split: _label_names(rows, split, separator, renamed) for split, rows in splits.items()}
    notes += _unused_names(renamed, [rows.value for rows in named.values()])
    notes += [note for rows in named.values() for note in rows.notes]
    return WithNotes(datasets.DatasetDict({split: rows.value for split, rows in named.items()}), tuple(notes))


def read(path: Path, columns: dict, test_data: str | None = None) -> WithNotes:
    """``test_data``: the task's, when ``path`` is the training file (a column named for it is looked for here)."""
    try:
        return read_table_file(path, columns["text_column"], columns["label_column"], columns["header"],
                               columns["label_columns"])
    except TkError as error:
        role = getattr(error, "role", None)  # read_table_file's missing-column error says which column
        if role is None:
            raise
        key = f"{role}_column"
        if getattr(error, "given", None) and test_data:
            raise TkError(f"files dataset: {error} {key} names the column in both the training data and test_data; "
                          f"if {Path(test_data).name} names it otherwise, give it a header row naming its columns "
                          f"as {path.name} does, or leave test_data out and score it after training: "
                          f"{evaluate_hint(Path(test_data))}") from None
        how = "Set it to one of them" if getattr(error, "given", None) else "Name the column"
        named = TkError(f"files dataset: {error} {how}: {key} = \"NAME\" in the task, or --set {key}=NAME.")
        # a command without --set (tk evaluate --data, tk export --check-data) says its own way to name it
        named.role, named.problem = role, f"files dataset: {error}"
        raise named from None


def read_test_data(path: Path, columns: dict, training: Path) -> WithNotes:
    """The test_data file, read with the training data's column keys. Its own column named with --set would
    then be looked for in the training data too, so a missing column's fix is the file's header, or tk evaluate
    after training (it names a file's columns on its own)."""
    try:
        return read(path, columns)
    except TkError as error:
        role = getattr(error, "role", None)
        if role is None:
            raise
        raise TkError(f"{error.problem} text_column and label_column name the columns of both the training data "
                      f"({training.name}) and test_data, so they must have the same names: give {path.name} a "
                      f"header row naming its columns as {training.name} does, or leave test_data out and score "
                      f"the file after training: {evaluate_hint(path)}") from None


def evaluate_hint(path: Path) -> str:
    return f"tk evaluate RUN --data {path} --text-column NAME --label-column NAME."


def _renaming(label_names) -> dict[str, str]:
    """label_names as {value as _name reads it: name}: a TOML key is a string, so 0 and "0" are one value."""
    if not label_names:
        return {}
    bad = [f"{key} = {value!r}" for key, value in label_names.items()
           if not isinstance(value, str) or not value.strip()]
    if bad:
        raise TkError(f"label_names gives each label value a name (a string): {', '.join(bad)} is not one. "
                      "Write it like label_names = {0 = \"negative\", 4 = \"positive\"}.")
    return {_name(key): value.strip() for key, value in label_names.items()}


def _unused_names(renamed: dict[str, str], splits) -> list[str]:
    """A value label_names names that no row has: a typo, or another column than the one meant (said, not
    refused: a file scored later may hold one class only)."""
    if not renamed:
        return []
    present = set()
    for rows in splits:
        for label in column(rows, "label"):
            present.update(label if isinstance(label, list) else [label])
    unused = [value for value, name in renamed.items() if name not in present]
    if not unused:
        return []
    return [f"label_names names {', '.join(repr(v) for v in unused)}, which no row here has as its label (labels "
            f"here, as named: {', '.join(sorted(map(str, present))[:20])})."]


def _label_names(rows, split: str, separator: str | None = None, renamed: dict[str, str] | None = None) -> WithNotes:
    """Labels as strings (1 and 1.0 both read "1", a ClassLabel id its name; ``renamed``: label_names applied);
    rows without one are left out.

    A list per row stays a list of names; with a ``separator`` (multi-label tasks) a text cell becomes one.
    """
    import datasets

    renamed = renamed or {}
    feature = rows.features["label"]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    inner = getattr(feature, "feature", None)
    listed = inner is not None and not isinstance(inner, (dict, datasets.Features))  # a list per row
    if listed or separator is not None:
        features = rows.features.copy()
        features["label"] = datasets.Sequence(datasets.Value("string"))

        def to_lists(batch):
            lists = [_name_list(v, separator) for v in batch["label"]]
            return {"label": [None if found is None else [renamed.get(n, n) for n in found] for found in lists]}

        named = rows.map(to_lists, batched=True, features=features)
        return _without_missing(named, split)

    def to_text(batch):
        named = [None if v is None else names[v] if names else _name(v) for v in batch["label"]]
        return {"label": [None if n is None else renamed.get(n, n) for n in named]}

    features = rows.features.copy()
    features["label"] = datasets.Value("string")
    named = rows.map(to_text, batched=True, features=features)
    return _without_missing(named, split)


def _without_missing(named, split: str) -> WithNotes:
    """Rows whose label cell is missing (None; a single-label empty cell) are left out, named as the user numbers
    them; an empty list stays."""
    import numpy as np

    keep = np.array([v is not None and (isinstance(v, list) or str(v).strip() != "") for v in column(named, "label")],
                    dtype=bool)
    if keep.all():
        return WithNotes(named)
    missing = row_numbers(named)[~keep]
    return WithNotes(named.select(np.flatnonzero(keep)),
                     (f"{split}: left out {len(missing):,} {'row' if len(missing) == 1 else 'rows'} with no label: "
                      f"{rows_named(missing)}.",))


def _name(value) -> str:
    """A label by its value: 1, 1.0 and "1.0" are "1" whatever the column's type (a column holding one
    word is read as text, so its numbers arrive as strings)."""
    if isinstance(value, str) and DECIMAL.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


DECIMAL = re.compile(r"[-+]?\d+\.\d*")  # "1.0", "-2.50": numbers a float column would have read


def _name_list(value, separator: str | None) -> list[str] | None:
    """A multi-label cell as label names: a list as is, a JSON list, else text cut at ``separator``.
    None (a missing cell) stays None; an empty cell or list is no label."""
    import json

    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                value = json.loads(text)
            except ValueError:
                pass
        if isinstance(value, str):
            value = text.split(separator) if separator else [text]
    values = value if isinstance(value, (list, tuple)) else [value]
    return [_name(v) for v in values if v is not None and _name(v) != ""]


@hookimpl
def tk_dataset_labels(dataset, splits, task):
    if dataset.name != NAME:
        return None
    import datasets

    flags = _setting(task, "label_columns")
    if flags:
        return tuple(flags)  # each row's labels were named after these columns
    found = set()
    for rows in splits.values():
        if isinstance(rows.features["label"], datasets.Value):
            found.update(rows.unique("label"))
        else:  # label lists (multi-label)
            found.update(name for names in column(rows, "label") for name in names or ())
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
