"""Is a committed checkpoint whole? Read before a resume, so a damaged file is named, not a traceback.

A committed checkpoint was fsynced before its commit, yet a disk can still
lose or corrupt a file, or someone can cut one short. Each file is checked
against the size and CRC-32 its commit recorded (a checkpoint written
before those were recorded: by its format, a torch file's zip entries
against their CRCs, a safetensors file's header against its length, JSON
parsed). A missing file is not damage here: the resume checks say what a resume lacks (``toolkit.runs.resume``).
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

from toolkit.training import checkpoints

TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def problems(path: Path) -> list[str]:
    """What is wrong with checkpoint ``path``, one "file: why" each; empty when it is whole."""
    try:
        state = json.loads((path / checkpoints.STATE_FILE).read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        return [f"{checkpoints.STATE_FILE}: {reason(error)}"]
    found = []
    recorded = recorded_files(path)
    for name in sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()):
        if name == checkpoints.STATE_FILE:
            continue
        why = checked(path / name, recorded.get(name))
        if why:
            found.append(f"{name}: {why}")
    return found


def recorded_files(path: Path) -> dict:
    try:
        files = json.loads((path / checkpoints.STATE_FILE).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def checked(path: Path, expected) -> str | None:
    """Against the size and CRC-32 its commit recorded; a file written before those were kept, by its format."""
    if isinstance(expected, dict) and isinstance(expected.get("bytes"), int):
        return against_record(path, expected)
    return file_problem(path)


def against_record(path: Path, expected: dict) -> str | None:
    size = path.stat().st_size
    if size != expected.get("bytes"):
        return f"{size:,} bytes where {expected.get('bytes'):,} were written"
    with path.open("rb") as handle:
        crc = checkpoints.crc32_of(handle.fileno())
    return None if crc == expected.get("crc32") else "its bytes changed since it was written (CRC-32)"


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read whole, by its format; None when it can (or its format is not known)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".safetensors":
            return safetensors_problem(path)
        elif path.suffix in TORCH_SUFFIXES:
            return torch_file_problem(path)
    except (OSError, ValueError) as error:
        return reason(error)
    return None


def torch_file_problem(path: Path) -> str | None:
    """torch.save writes a zip archive; a cut-short one lacks its directory, a changed byte fails its CRC."""
    if path.stat().st_size == 0:
        return "empty"
    if not zipfile.is_zipfile(path):
        return "cut short or not a torch file"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return reason(error)
    return f"{bad} fails its checksum" if bad else None


def safetensors_problem(path: Path) -> str | None:
    """An 8-byte header length, a JSON header, then exactly the bytes its tensors' offsets cover."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with path.open("rb") as handle:
        start = handle.read(8)
        if len(start) < 8:
            return "cut short"
        length = struct.unpack("<Q", start)[0]
        if length > size - 8:
            return "cut short (header longer than the file)"
        header = json.loads(handle.read(length))
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"{size:,} bytes where its header says {expected:,}"
    return None


def reason(error: BaseException) -> str:
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__).splitlines()[0]


def newest_whole(folder: Path) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """The newest committed checkpoint that is whole, and the newer ones that are damaged (newest first)."""
    damaged = []
    for path in reversed(checkpoints.committed(folder)):
        found = problems(path)
        if not found:
            return path, damaged
        damaged.append((path, found))
    return None, damaged


def set_aside(damaged: list[tuple[Path, list[str]]]) -> None:
    """Rename damaged checkpoints out of the resume's way (``.damaged-NAME``); the next prune removes them."""
    for path, _ in damaged:
        target = path.parent / f"{checkpoints.DAMAGED}{path.name}"
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        path.rename(target)
    if damaged:
        checkpoints.fsync_dir(damaged[0][0].parent)
