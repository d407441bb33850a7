"""Readers for local data files that any dataset plugin can reuse: CSV / TSV / JSON Lines / Parquet
files, split files found in a folder, class folders. Which columns are the text and the label is
``toolkit.data.columns``'s; row numbers and whole columns ``toolkit.data.rows``'s.

Everything goes through ``datasets`` builders, which stream files into
memory-mapped Arrow tables: a 1.6M-row CSV is never held twice in memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from toolkit.data.binary import refuse_binary
from toolkit.data.columns import LABEL_COLUMNS, TEXT_COLUMNS, files_named, pick_column, standard_columns
from toolkit.data.rows import column, number_rows  # noqa: F401  column: toolkit/training/policy.py imports it from here
from toolkit.errors import TkError
from toolkit.records import WithNotes

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
    from datasets.utils import logging as library_logging

    if builder != "parquet":  # before a text reader quotes a PNG's bytes in its error
        refuse_binary(files.values())
    data_files = {split: str(path) for split, path in files.items()}
    level = library_logging.get_verbosity()
    library_logging.set_verbosity(library_logging.CRITICAL)  # its "Failed to read file ..." would precede tk's line
    try:
        return datasets.load_dataset(builder, data_files=data_files, **options)
    except (DatasetGenerationError, UnicodeDecodeError, pyarrow.ArrowException, ValueError) as error:
        cause = error.__cause__ if isinstance(error, DatasetGenerationError) and error.__cause__ else error
        if isinstance(cause, UnicodeDecodeError):
            encoding = options.get("encoding", "utf-8")
            where = "; ".join(f"{Path(path).name} {found}" if len(files) > 1 else found for path in files.values()
                              if (found := first_undecodable(path, encoding)))
            source = "utf-16" if any(utf16_marked(path) for path in files.values()) else "latin1"
            raise TkError(
                f"{files_named(files)}: not {encoding.upper()} text ({where or cause.reason}). Re-save it as UTF-8 "
                f"(e.g. iconv -f {source} -t utf-8)."
            ) from error
        if "corresponds to no data" in str(cause):  # datasets' words for a file with no rows
            raise TkError(f"{files_named(files)}: the file has no rows of data.") from error
        separated = other_delimiter(files) if builder == "csv" else None
        if separated:
            raise TkError(separated) from error
        said = str(cause).strip().rstrip(".")
        if builder == "json" and re.search(r" in row \d+$", said):
            said = json_line_named(said, files)
        fix = "fix the line named, or convert" if re.search(r"\bline \d", said) else "convert"
        raise TkError(f"{files_named(files)}: cannot read it as {builder}: {said}. tk reads CSV, TSV, JSON Lines "
                      f"and Parquet files (docs/your-data.md): {fix} the file to one of them.") from error
    finally:
        library_logging.set_verbosity(level)


def json_line_named(said: str, files: dict[str, Path]) -> str:
    """pyarrow's 'JSON parse error: Invalid value. in row 4' as 'JSON parse error on line 5: Invalid value', the
    line numbered as an editor numbers it (from 1). pyarrow counts rows from 0, skips blank lines and starts again
    in each block datasets hands it, so its number is no line of the file; no line found (a type clash, not a
    syntax error): no number at all."""
    import json

    error, _, problem = re.sub(r"\.? in row \d+$", "", said).partition(": ")
    for path in files.values():
        with open(path, encoding="utf-8-sig", errors="replace", newline="\n") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    if line.strip():
                        json.loads(line)
                except ValueError:
                    named = f" of {Path(path).name}" if len(files) > 1 else ""
                    return f"{error} on line {number:,}{named}: {problem}"
    return f"{error}: {problem}"


def utf16_marked(path: str | Path) -> bool:
    """Whether the file starts with UTF-16's byte-order mark (Excel's 'Unicode text' export)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) in (b"\xff\xfe", b"\xfe\xff")
    except OSError:
        return False


DELIMITER_NAMES = {"\t": "tab", ";": "semicolon", "|": "pipe"}


def other_delimiter(files: dict[str, Path]) -> str | None:
    """For a .csv the CSV reader refused: the file that looks separated by something other than commas (a
    TSV or a spreadsheet's semicolon export named .csv), said with the fix; None when none does."""
    import csv

    for path in files.values():
        try:
            with open(path, encoding="utf-8", errors="replace", newline="") as handle:
                sample = "".join(handle.read(SNIFF_CHARS).splitlines(keepends=True)[:SAMPLE_LINES])
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except (OSError, csv.Error):
            continue
        if delimiter in DELIMITER_NAMES:
            fix = ("name it .tsv (tk reads a .tsv as tab-separated)" if delimiter == "\t" else
                   "save it comma-separated (or tab-separated, named .tsv)")
            return f"{path}: this file looks {DELIMITER_NAMES[delimiter]}-separated, not comma-separated: {fix}."
    return None


def load_table(files: dict[str, Path], text_column: str | None = None, label_column: str | None = None):
    """Load tabular files (CSV, TSV, JSON Lines, Parquet) into splits with ``text`` and ``label`` columns."""
    builders = {builder_for(path) for path in files.values()}
    if None in builders or len(builders) != 1:
        raise TkError(f"{files_named(files)}: use one format of .csv, .tsv, .jsonl or .parquet for all splits.")
    builder = builders.pop()
    options = {"delimiter": "\t"} if any(p.suffix.lower() == ".tsv" for p in files.values()) else {}
    splits = load_builder(builder, files, **options)
    return standard_columns(splits, files, text_column, label_column)


# --------------------------------------------------------------------------
# Any file or folder of the user's (the built-in `files` dataset uses these)
# --------------------------------------------------------------------------

SPLIT_NAMES = {"train": ("train", "training"), "validation": ("validation", "valid", "dev", "val"),
               "test": ("test", "eval")}
DELIMITED = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None, "": None}  # None: sniffed from the first line
SAMPLE_LINES = 200


def is_table_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and (
        builder_for(path) is not None or path.suffix.lower() in DELIMITED)


def find_split_files(folder: Path) -> WithNotes:
    """``train.*``, ``validation.*`` / ``dev.*`` and ``test.*`` table files in ``folder``: {split: path}.

    Several candidates for one split: the first by name is used and a note says so. A folder
    with one table file and no ``train.*`` uses that file as the training split.
    """
    import re

    tables = sorted(p for p in folder.iterdir() if is_table_file(p))
    found: dict[str, Path] = {}
    notes = []
    for split, stems in SPLIT_NAMES.items():
        pattern = re.compile(rf"^({'|'.join(stems)})([^a-z].*)?$")
        candidates = sorted((p for p in tables if pattern.match(p.name.lower()) and p not in found.values()),
                            key=lambda p: (p.name.lower().split(".")[0] not in stems, p.name))  # train.* first
        if candidates:
            found[split] = candidates[0]
            if len(candidates) > 1:
                notes.append(f"{split}: picked {candidates[0].name} from {folder}; also there, not used: "
                             f"{', '.join(p.name for p in candidates[1:])}.")
    if "train" not in found:
        if len(tables) == 1:
            return WithNotes({"train": tables[0]})
        listed = ", ".join(p.name for p in tables[:10]) or "no .csv, .tsv, .jsonl or .parquet files"
        raise TkError(f"{folder}: no training file (train.csv, train.jsonl, ...). It holds: {listed}. Name the "
                      "files train.* / validation.* (or dev.*) / test.*, or point at one file.")
    return WithNotes(found, tuple(notes))


def class_folders(folder: Path) -> dict[str, dict[str, list[Path]]] | None:
    """``FOLDER/CLASS/*.txt`` (one split) or ``FOLDER/{train,test}/CLASS/*.txt``; None for other layouts."""
    def classes(root: Path) -> dict[str, list[Path]]:
        found = {d.name: sorted(d.glob("*.txt")) for d in sorted(root.iterdir())
                 if d.is_dir() and not d.name.startswith(".")}
        return found if found and all(found.values()) else {}

    split_roots = {s: folder / s for s in ("train", "validation", "dev", "test") if (folder / s).is_dir()}
    if "train" in split_roots:
        layout = {("validation" if s == "dev" else s): classes(root) for s, root in split_roots.items()}
        return layout if all(layout.values()) else None
    found = classes(folder)
    return {"train": found} if found else None


def first_undecodable(path: Path, encoding: str = "utf-8") -> str | None:
    """Where a file stops being ``encoding`` text, as a person finds it: 'line 102, byte 6,013: 0xe9, invalid
    continuation byte'. The parser's own error counts bytes within the block it was reading, not the file."""
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                bad = offset + error.start - len(decoder.getstate()[0])  # bytes the decoder held back come first
                with open(path, "rb") as again:
                    line = again.read(bad).count(b"\n") + 1
                    byte = again.read(1).hex()
                return f"line {line:,}, byte {bad:,}: 0x{byte}, {error.reason}"
            offset += len(chunk)
    return None


def load_class_folders(layout: dict[str, dict[str, list[Path]]]):
    """One text per ``.txt`` file, labelled with its folder's name."""
    import datasets

    splits = {}
    for split, by_class in layout.items():
        texts, labels = [], []
        for label, paths in by_class.items():
            for path in paths:
                try:
                    texts.append(path.read_text(encoding="utf-8"))
                except UnicodeDecodeError as error:
                    raise TkError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}). Re-save it as "
                                  "UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None
                labels.append(label)
        splits[split] = datasets.Dataset.from_dict({"text": texts, "label": labels})
    return datasets.DatasetDict(splits)


def read_table_file(path: Path, text_column: str | None = None, label_column: str | None = None,
                    header: bool | str = "auto", label_columns: list[str] | None = None) -> WithNotes:
    """One CSV / TSV (with or without a header row) / JSON Lines / Parquet file as a ``Dataset`` with
    ``text`` and ``label`` columns, with notes on what was decided about it. A file without a header row gets columns ``column1``, ``column2``, ...;
    with two columns and no names tk knows, the one with the longer values is the text.
    ``label_columns``: several 0/1 columns whose names become each row's label list (multi-label)."""
    builder = builder_for(path)
    options: dict[str, Any] = {}
    notes = []
    if builder in (None, "csv"):
        builder = "csv"
        delimiter, first, rows = _sniff(path)
        options = {"delimiter": delimiter, "keep_default_na": False}
        if delimiter == "\t":
            options["quoting"] = 3  # csv.QUOTE_NONE: a quote inside a TSV text is just a character
        named = {c.lower() for c in (text_column, label_column, *(label_columns or ())) if c}
        if header == "auto":
            header = _looks_like_header(first, rows, named)
        if header and not rows:
            shown = ", ".join(name[:40] + ("..." if len(name) > 40 else "") for name in first[:10])
            raise TkError(f"{path}: the file has a header row ({shown}{', ...' if len(first) > 10 else ''}) but no "
                          "rows of data.")
        if not header:
            options["column_names"] = [f"column{i}" for i in range(1, len(first) + 1)]
            notes.append(f"{path.name}: no header row; its columns are column1..column{len(first)}.")
    files = {"train": path}
    table = load_builder(builder, files, **options)
    columns = table["train"].column_names
    if text_column is None and label_column is None and not label_columns and len(columns) == 2 and not (
            pick_column(columns, TEXT_COLUMNS) and pick_column(columns, LABEL_COLUMNS)):
        text_column, label_column, said = _two_columns(table["train"], columns, path)
        notes += said
    read = number_rows(standard_columns(table, files, text_column, label_column, label_columns)["train"])
    if _no_labels(read):
        raise TkError(f"{path}: no row has a label in column '{label_column or pick_column(columns, LABEL_COLUMNS)}' "
                      f"({len(read):,} rows read).")
    return WithNotes(read, tuple(notes))


def _no_labels(split) -> bool:
    """Every label empty (a column of single values only: a list per row is the caller's to read)."""
    import datasets

    if not isinstance(split.features["label"], datasets.Value):
        return False
    return all(value is None or str(value).strip() == "" for value in split.unique("label"))


def _sniff(path: Path) -> tuple[str, list[str], list[list[str]]]:
    """The delimiter, the first row and some rows after it, from at most SNIFF_CHARS of the file: a file of
    one 400 MB line costs no more to sniff than a small one."""
    import csv

    refuse_binary([path])  # its first "row" would be quoted back as a header, control bytes and all
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            prefix = handle.read(SNIFF_CHARS)
            cut = bool(handle.read(1))
    except OSError as error:
        raise TkError(f"{path}: cannot read it ({error.strerror}).") from None
    lines = prefix.splitlines(keepends=True)[:SAMPLE_LINES + 1]
    if cut and len(lines) > 1 and len(lines) <= SAMPLE_LINES:
        lines.pop()  # the prefix ends inside this line (or inside a quoted text of it)
    if not lines:
        raise TkError(f"{path}: the file is empty.")
    delimiter = DELIMITED.get(path.suffix.lower()) or ("\t" if "\t" in lines[0] else ",")
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    allow_long_fields()
    try:
        rows = [row for row in csv.reader(lines, delimiter=delimiter, quoting=quoting) if row]
    except csv.Error as error:
        raise TkError(f"{path}: not a CSV file tk can read ({error}).") from None
    if not rows:
        raise TkError(f"{path}: the file holds no rows.")
    return delimiter, rows[0], rows[1:]


SNIFF_CHARS = 1 << 20  # what _sniff reads: 1 Mi characters at most


def allow_long_fields() -> None:
    """Python's csv module refuses a field over 131,072 characters by default (one long document): lift the
    limit to the largest a C long holds, so no file is refused for the length of a text."""
    import csv
    import sys

    csv.field_size_limit(min(sys.maxsize, 2**63 - 1))


def _looks_like_header(first: list[str], rows: list[list[str]], named: set[str]) -> bool:
    """A first row naming a known column is a header; a first row whose value repeats below it in the same
    column (``ham`` in a column of ham/spam) is data. Otherwise: a header."""
    values = [value.strip().lstrip("\ufeff").lower() for value in first]
    if any(v in named or v in TEXT_COLUMNS or v in LABEL_COLUMNS for v in values):
        return True
    return not any(first[j] in {row[j] for row in rows if len(row) > j} for j in range(len(first)))


def _two_columns(split, columns: list[str], path: Path) -> tuple[str, str, list[str]]:
    """(the text column, the label column, what to say about the choice) of a two-column file."""
    sample = split.select(range(min(len(split), SAMPLE_LINES)))
    lengths = {c: sum(len(str(v)) for v in column(sample, c)) for c in columns}
    text, label = sorted(columns, key=lambda c: -lengths[c])
    known_text, known_label = pick_column(columns, TEXT_COLUMNS), pick_column(columns, LABEL_COLUMNS)
    if known_text or known_label:  # one column has a name tk knows: the other one is the other role
        text = known_text or next(c for c in columns if c != known_label)
        label = known_label or next(c for c in columns if c != known_text)
        return text, label, []
    return text, label, [f"{path.name}: took '{text}' as the text (the longer values) and '{label}' as the label; "
                         "set text_column / label_column to choose."]
