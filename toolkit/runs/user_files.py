"""Files a user names for tk to write (tk report --output, tk analyze-lengths --histogram, tk audit --write).

One rule for every such option, so that none writes over what it must not: the data a run or task reads,
a file of a tk run, cv, tune or sweep folder that tk did not name for that purpose, or an existing file of
another kind or not written by tk (a report may replace a report tk wrote, a histogram a histogram tk wrote).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from toolkit.errors import TkError
from toolkit.saving import WRITTEN_BY

# a folder holding one of these is one tk wrote (a run, cv or tune trial; a tune; a sweep)
TK_FOLDER_MARKS = ("status.json", "checksums.json", "cv.json", "tune.json", "sweep.json")

# what tk writes into the head of a file of each kind: only a file holding it (one tk wrote) may be replaced,
# not a user's own page or picture of the same kind
KINDS = {
    "html": (".html", "a report tk wrote", f'<meta name="generator" content="{WRITTEN_BY}">'.encode(),
             "an HTML page"),
    "png": (".png", "a histogram tk wrote", b"tEXtSoftware\x00" + WRITTEN_BY.encode(), "a PNG image"),
}
HEAD_BYTES = 1024  # where the mark sits: the PNG's first chunks, the HTML page's <head>


def check_output_file(path: Path, option: str, kind: str | None = None, data: Iterable[Path | None] = (),
                      tk_names: tuple[str, ...] = (), own: Iterable[Path] = ()) -> None:
    """Refuse ``path`` (given with ``option``) before anything is written where writing it would destroy
    something. ``kind``: the kind of file that may be replaced (None: no existing file may be); ``data``: the
    files or folders the run or task reads; ``tk_names``: the names tk itself writes this file under in the
    tk folders ``own`` (tk report's report.html in the runs it reports), and in no other tk folder."""
    shown = f"{option} {path}"
    if path.is_dir():
        raise TkError(f"{shown} is a folder; name a file.")
    for source in data:
        if source is not None and is_within(path, Path(source)):
            which = "the data file itself" if Path(source).is_file() else f"inside the data folder {source}"
            raise TkError(f"{shown} is {which}; tk never overwrites your data. Name a new file.")
    if not path.exists():
        if kind is not None and path.suffix.lower() != KINDS[kind][0]:  # a PNG named .txt opens as garbage
            raise TkError(f"{shown}: tk writes {KINDS[kind][3]} there; name the file {KINDS[kind][0]}.")
        return
    folder = tk_folder_of(path)
    if folder is not None and not (path.name in tk_names and folder in {Path(f).resolve() for f in own}):
        raise TkError(f"{shown} is a file of the tk folder {folder}, which needs it; tk does not write over it. "
                      "Name a file outside that folder.")
    if kind is None:
        raise TkError(f"{shown} already exists; tk does not write over it. Name a new file, or remove it first.")
    suffix, what, mark, _ = KINDS[kind]
    if path.suffix.lower() != suffix or not holds_mark(path, mark):
        raise TkError(f"{shown} already exists and is not {what}, the only file tk writes over here. "
                      f"Name a new {suffix} file, or remove it first.")


def is_within(path: Path, source: Path) -> bool:
    """``path`` is ``source``, or inside it when ``source`` is a folder (links followed: link.csv -> data.csv)."""
    path, source = path.resolve(), source.resolve()
    return path == source or source in path.parents


def tk_folder_of(path: Path) -> Path | None:
    """The tk folder ``path`` is in (at any depth: RUN/model/config.json is the run's), or None."""
    for folder in path.resolve().parents:
        if any((folder / mark).is_file() for mark in TK_FOLDER_MARKS):
            return folder
    return None


def holds_mark(path: Path, mark: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return mark in handle.read(HEAD_BYTES)
    except OSError:
        return False


def recorded_data(run_dir: Path) -> Path | None:
    """The data file or folder a run's config.json says it read (None: a Hub dataset, or no config.json)."""
    try:
        data = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(data) if isinstance(data, str) and data else None
