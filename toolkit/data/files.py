"""Readers for local data files that any dataset plugin can reuse.

Everything goes through ``datasets`` builders, which stream files into
memory-mapped Arrow tables: a 1.6M-row CSV is never held twice in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.errors import TkError

TEXT_COLUMNS = ("text", "review", "sentence", "content", "tweet")
LABEL_COLUMNS = ("label", "labels", "polarity", "sentiment", "target", "class")
BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def builder_for(path: Path) -> str | None:
    return BUILDERS.get(path.suffix.lower())


def split_files(folder: Path) -> dict[str, Path]:
    """``train.*`` / ``test.*`` tabular files in a folder (``test`` optional)."""
    found = {}
    for split in ("train", "test"):
        for candidate in sorted(folder.glob(f"{split}*")):
            if builder_for(candidate):
                found[split] = candidate
                break
    return found


def load_builder(builder: str, files: dict[str, Path], **options: Any):
    """``datasets.load_dataset`` on local files, with read errors turned into TkError.

    ``datasets`` wraps a parser's error (pandas', pyarrow's, a decoding error)
    in ``DatasetGenerationError``; Parquet readers raise pyarrow's directly.
    Anything else is a bug and keeps its traceback.
    """
    import datasets
    import pyarrow
    from datasets.exceptions import DatasetGenerationError

    data_files = {split: str(path) for split, path in files.items()}
    try:
        return datasets.load_dataset(builder, data_files=data_files, **options)
    except (DatasetGenerationError, UnicodeDecodeError, pyarrow.ArrowException, ValueError) as error:
        cause = error.__cause__ if isinstance(error, DatasetGenerationError) and error.__cause__ else error
        if isinstance(cause, UnicodeDecodeError):
            raise TkError(
                f"{_names(files)}: not {options.get('encoding', 'UTF-8')} text ({cause.reason} at byte "
                f"{cause.start}). Re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
            ) from error
        raise TkError(f"{_names(files)}: cannot read it as {builder}: {cause}") from error


def load_table(files: dict[str, Path], text_column: str | None = None, label_column: str | None = None):
    """Load tabular files (CSV, TSV, JSON Lines, Parquet) into splits with ``text`` and ``label`` columns."""
    builders = {builder_for(path) for path in files.values()}
    if None in builders or len(builders) != 1:
        raise TkError(f"{_names(files)}: use one format of .csv, .tsv, .jsonl or .parquet for all splits.")
    builder = builders.pop()
    options = {"delimiter": "\t"} if any(p.suffix.lower() == ".tsv" for p in files.values()) else {}
    splits = load_builder(builder, files, **options)
    return standard_columns(splits, files, text_column, label_column)


def standard_columns(splits, files: dict[str, Path], text_column: str | None = None,
                     label_column: str | None = None):
    """Rename the text and label columns to ``text``/``label`` and drop the rest."""
    columns = next(iter(splits.values())).column_names
    text = text_column or _pick(columns, TEXT_COLUMNS)
    label = label_column or _pick(columns, LABEL_COLUMNS)
    for role, name, options in (("text", text, TEXT_COLUMNS), ("label", label, LABEL_COLUMNS)):
        if name is None or name not in columns:
            raise TkError(
                f"{_names(files)}: no {role} column. Found columns: {', '.join(columns)}; "
                f"expected one of: {', '.join(options)}. Rename the column in the file."
            )
    splits = splits.select_columns([text, label])
    if text != "text":
        splits = splits.rename_column(text, "text")
    if label != "label":
        splits = splits.rename_column(label, "label")
    return splits


def _pick(columns: list[str], options: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[o] for o in options if o in lowered), None)


def _names(files: dict[str, Path]) -> str:
    return ", ".join(str(p) for p in files.values())
