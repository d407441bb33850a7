"""tk audit --write FILE: a copy of the user's data file with the audit's top rows dropped or relabelled.

The original is never written. Rows are found by the row numbers tk gives them (``tk_row``: the n-th row
of data in the file, a header and blank lines not counted), and each named row's text is checked against
the audit's before anything is written, so a file edited since the run is refused, not silently damaged.
Every other row is written back unchanged (CSV: re-quoted as the csv module writes; a tab-delimited file, with
any extension or none: the same line; JSON Lines: the same line bytes; Parquet: the same values).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from toolkit.data.files import DELIMITED, _sniff, split_files
from toolkit.errors import TkError
from toolkit.runs.user_files import check_output_file
from toolkit.saving import read_json, write_bytes, write_text

FORMATS = (*DELIMITED, ".jsonl", ".parquet")  # every delimited kind tk reads, a file with no suffix too


def source_file(run_dir: Path) -> Path:
    """The file the audited rows are numbered in."""
    config = read_json(run_dir / "config.json")
    data = config.get("data")
    if not data:
        raise TkError(f"{run_dir} was trained on a Hub dataset: there is no file of yours to copy. Use audit.csv "
                      "to correct your copy of the data.")
    path = Path(data)
    if path.is_dir():
        files = split_files(path)
        split = "train" if config.get("kind") == "cv" or "test" not in files else "test"
        if split not in files:
            raise TkError(f"{path}: no {split}.* file to copy. Use audit.csv to correct the data.")
        path = files[split]
    if not path.is_file():
        raise TkError(f"{path}, the data {run_dir} recorded, is not there any more. Restore it to write a copy.")
    if path.suffix.lower() not in FORMATS:
        raise TkError(f"{path}: tk audit --write copies delimited text (.csv, .tsv, .tab, .txt or no extension), "
                      "JSON Lines and Parquet files; use audit.csv to correct this one.")
    return path


def write_corrected(run_dir: Path, target: Path, chosen: list[dict[str, str]], relabel: bool,
                    multi_label: bool) -> dict[str, Any]:
    """Write ``target``: the source file less the ``chosen`` audit rows (or with their suggested label)."""
    source = source_file(run_dir)
    check_output_file(target, "--write", data=[source])  # a corrected copy is a new file, never over another
    if relabel and multi_label:
        raise TkError("--relabel writes one label per row; for a multi-label run use --drop, or edit the rows "
                      "audit.csv names.")
    allowed = same_format_suffixes(source)
    if target.suffix.lower() not in allowed:
        named = " or ".join(suffix or "no extension" for suffix in allowed)
        raise TkError(f"--write {target}: give it {named}, as the data file {source.name} has; the copy is written "
                      "in the same format.")
    wanted = {int(row["row"]): row for row in chosen}
    # a row flagged only because another row shares its text keeps the label the audit agrees with
    unchanged = sorted(number for number, row in wanted.items() if relabel and row["suggested"] == row["label"])
    for number in unchanged:
        del wanted[number]
    kind = source.suffix.lower()
    if kind == ".parquet":
        _parquet(source, target, wanted, relabel)
    elif kind == ".jsonl":
        _json_lines(source, target, wanted, relabel)
    else:
        _delimited(source, target, wanted, relabel)
    return {"source": str(source), "written": str(target), "action": "relabelled" if relabel else "dropped",
            "rows": sorted(wanted), "unchanged": unchanged}


def same_format_suffixes(source: Path) -> list[str]:
    """The extensions a copy in ``source``'s format may have: its own, and for a file whose delimiter tk sniffs
    (no extension, .txt: SMSSpamCollection) the one naming that delimiter, which tk then reads the same way."""
    suffix = source.suffix.lower()
    if DELIMITED.get(suffix, "") is not None or suffix not in DELIMITED:
        return [suffix]
    return [suffix, ".tsv" if _sniff(source)[0] == "\t" else ".csv"]


def _same(value: Any, expected: str) -> bool:
    return str(value).strip() == expected.strip()


def _columns(records: list, wanted: dict[int, dict], where: str) -> tuple[Any, Any]:
    """The (text, label) column keys: those whose values are the audit's text and label in every row named.
    ``records``: the row number -> its record (a list or a dict)."""
    keys = None
    for number, row in wanted.items():
        record = records.get(number)
        if record is None:
            raise TkError(f"{where}: row {number} is not in the file any more. It changed since the run; "
                          "run tk cv (or tk run) and tk audit again.")
        items = record.items() if isinstance(record, dict) else enumerate(record)
        texts = {k for k, v in items if _same(v, row["text"])}
        items = record.items() if isinstance(record, dict) else enumerate(record)
        labels = {k for k, v in items if _same(v, row["label"])}
        keys = (texts, labels) if keys is None else (keys[0] & texts, keys[1] & labels)
        if not keys[0]:
            raise TkError(f"{where}: row {number} does not hold the text the audit scored. The file changed since "
                          "the run; run tk cv (or tk run) and tk audit again.")
    text_key = sorted(keys[0], key=str)[0]
    label_keys = sorted(keys[1] - {text_key}, key=str)
    return text_key, (label_keys[0] if label_keys else None)


def _label_key(label_key: Any, relabel: bool, where: str) -> Any:
    if relabel and label_key is None:
        raise TkError(f"{where}: cannot tell which column holds the labels; use --drop, or edit the rows "
                      "audit.csv names.")
    return label_key


def _delimited(source: Path, target: Path, wanted: dict[int, dict], relabel: bool) -> None:
    delimiter = _sniff(source)[0]
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(source, newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle, delimiter=delimiter, quoting=quoting))
    data = [i for i, record in enumerate(records) if record]  # blank lines are not rows (pandas skips them)
    for header in (True, False):  # a header row or not: the numbering under which the named texts match
        numbered = {n: records[i] for n, i in enumerate(data[1:] if header else data, 1)}
        try:
            text_key, label_key = _columns(numbered, wanted, str(source))
            break
        except TkError:
            if not header:
                raise
    label_key = _label_key(label_key, relabel, str(source))
    index = {i: n for n, i in enumerate(data[1:] if header else data, 1)}
    kept = []
    for i, record in enumerate(records):
        number = index.get(i)
        if number in wanted:
            if not relabel:
                continue
            record = list(record)
            record[label_key] = wanted[number]["suggested"]
        kept.append(record)
    ending = _line_ending(source)
    if quoting == csv.QUOTE_NONE:  # read unquoted, cut at tabs: joined again, each line is its bytes as read
        write_text(target, "".join("\t".join(record) + ending for record in kept))
        return
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=ending).writerows(kept)
    write_text(target, buffer.getvalue())


def _line_ending(source: Path) -> str:
    """The file's own line ending, so the copy differs from it only in the rows named (a CRLF file written
    back with LF differed on every line)."""
    with open(source, "rb") as handle:
        start = handle.read(1 << 16)
    return "\r\n" if b"\r\n" in start else "\n"


def _json_lines(source: Path, target: Path, wanted: dict[int, dict], relabel: bool) -> None:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    data = [i for i, line in enumerate(lines) if line.strip()]
    numbered = {n: json.loads(lines[i]) for n, i in enumerate(data, 1) if n in wanted}
    _, label_key = _columns(numbered, wanted, str(source))
    label_key = _label_key(label_key, relabel, str(source))
    index = {i: n for n, i in enumerate(data, 1)}
    out = []
    for i, line in enumerate(lines):
        number = index.get(i)
        if number in wanted:
            if not relabel:
                continue
            record = numbered[number]
            record[label_key] = _typed(wanted[number]["suggested"], record[label_key])
            line = json.dumps(record, ensure_ascii=False) + "\n"
        out.append(line)
    write_text(target, "".join(out))


def _typed(name: str, old: Any) -> Any:
    """The suggested label in the type the file used for labels (a number stays a number)."""
    if isinstance(old, bool) or not isinstance(old, (int, float)):
        return name
    try:
        return type(old)(name)
    except ValueError:
        return name


def _parquet(source: Path, target: Path, wanted: dict[int, dict], relabel: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    records = {n: table.slice(n - 1, 1).to_pylist()[0] for n in wanted if 0 < n <= table.num_rows}
    _, label_key = _columns(records, wanted, str(source))
    label_key = _label_key(label_key, relabel, str(source))
    if relabel:
        values = table.column(label_key).to_pylist()
        for number, row in wanted.items():
            values[number - 1] = _typed(row["suggested"], values[number - 1])
        index = table.column_names.index(label_key)
        table = table.set_column(index, label_key, pa.array(values, type=table.schema.field(label_key).type))
    else:
        keep = [i for i in range(table.num_rows) if i + 1 not in wanted]
        table = table.take(pa.array(keep, type=pa.int64()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes(target, buffer.getvalue())
