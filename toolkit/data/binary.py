"""A data file that is not text at all (an image, an archive, a program, a workbook) refused as such, before a
text reader quotes its bytes in an error (control characters that garble the terminal) or calls it badly
encoded text (``iconv`` cannot make a PNG into a CSV)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from toolkit.errors import TkError

SIGNATURES = {  # a file's first bytes: what it is
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive; an .xlsx workbook is one", b"\xd0\xcf\x11\xe0": "an old Office file, .xls or .doc",
    b"\x1f\x8b": "a gzip archive", b"\x7fELF": "a program", b"SQLite format 3\x00": "an SQLite database",
    b"PAR1": "a Parquet file",
}
COMPRESSED = {".gz", ".bz2", ".xz", ".zst", ".zip"}  # named so, datasets unpacks them itself: not refused here
SAMPLE_BYTES = 8192


def binary_kind(path: Path) -> str | None:
    """What a file that is not text looks like ('a PNG image', 'it holds NUL bytes'); None for text."""
    if path.suffix.lower() in COMPRESSED:
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(SAMPLE_BYTES)
    except OSError:
        return None  # the reader says why it cannot open it
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None  # UTF-16 text (its NULs are half of each character): the reader says how to re-save it
    kind = next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)
    if kind is None and b"\x00" in head:
        kind = "it holds NUL bytes"
    controls = sum(byte < 32 and byte not in b"\t\n\r\f" for byte in head)
    if kind is None and controls > len(head) // 10:  # text has next to none besides tabs and line breaks
        kind = "it is full of control characters"
    return kind


def refuse_binary(paths: Iterable[Path]) -> None:
    """A TkError for the first of ``paths`` that is not text, naming what it looks like; it never quotes the bytes."""
    for path in paths:
        kind = binary_kind(Path(path))
        if kind is None:
            continue
        fix = "name it .parquet" if kind == SIGNATURES[b"PAR1"] else "save your data as one of them"
        raise TkError(f"{path}: this file looks binary ({kind}), not text. tk reads CSV, TSV and JSON Lines text "
                      f"files and Parquet files (docs/your-data.md): {fix}.")
