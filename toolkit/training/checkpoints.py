"""Epoch checkpoints shared by every engine: ``checkpoints/checkpoint-STEP/``, whole or absent.

The training loop writes its state file into a staging folder
(``.partial-NAME/NAME``, ``toolkit.training.resume_points``) and ``commit``
makes it durable: every file is
fsynced, the policy state (``tk_state.json``, with each file's size) is
written last, the folder is renamed into place and the renames fsynced,
so a power cut leaves either the whole checkpoint or none. Each file's
size and CRC-32 are recorded, for a resume to check it by. Any error while
writing removes the staging folder (``write``), and the previous checkpoint
stays the resume point. The two newest checkpoints are kept, so a damaged
newest one still leaves one to resume from
(``toolkit.training.checkpoint_checks``).
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.errors import TkError
from toolkit.saving import os_error_in, read_json, saving_error, write_json

STATE_FILE = "tk_state.json"
TRAINING_STATE = "training_state.pt"  # the training loop's state: weights, optimizer, schedule, random states
PREFIX = "checkpoint-"
PARTIAL = ".partial-"
DAMAGED = ".damaged-"  # a damaged checkpoint set aside by a resume; removed with the next prune
KEEP = 2  # committed checkpoints kept: the newest and the one before it, in case the newest is damaged


def step_of(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def checkpoint_dirs(folder: Path) -> list[Path]:
    """Every ``checkpoint-STEP`` folder, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=step_of)


def is_complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file()


def committed(folder: Path) -> list[Path]:
    """The committed checkpoints, oldest first."""
    return [path for path in checkpoint_dirs(folder) if is_complete(path)]


def latest(folder: Path) -> Path | None:
    """The newest committed checkpoint, or None."""
    found = committed(folder)
    return found[-1] if found else None


def read_state(path: Path) -> dict[str, Any]:
    return read_json(path / STATE_FILE)


def staging(folder: Path, name: str) -> Path:
    """A fresh, empty ``.partial-NAME/NAME`` for an engine to write checkpoint ``name`` into."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        fsync_dir(folder.parent)
    root = folder / f"{PARTIAL}{name}"
    shutil.rmtree(root, ignore_errors=True)
    (root / name).mkdir(parents=True)
    return root / name


def commit(staged: Path, state: dict[str, Any]) -> Path:
    """Make the files in ``staged`` durable, record them with the policy ``state``, rename into place.
    A folder not under ``staging`` (a plugin engine's own ``checkpoint-STEP``) is committed where it is."""
    folder, name = staged.parent.parent, staged.name
    files = sorted(path for path in staged.rglob("*") if path.is_file() and path.name != STATE_FILE)
    recorded = {path.relative_to(staged).as_posix(): fsync_file(path) for path in files}
    write_json(staged / STATE_FILE, {**state, "files": recorded})  # written last, fsynced
    fsync_dir(staged)
    if not staged.parent.name.startswith(PARTIAL):
        fsync_dir(staged.parent)
        return staged
    final = folder / name
    if final.exists():  # a checkpoint of the same step from an earlier try: the new one replaces it
        shutil.rmtree(final)
    os.replace(staged, final)
    staged.parent.rmdir()
    fsync_dir(folder)
    return final


def write(folder: Path, name: str, write_files: Callable[[Path], None], state: dict[str, Any]) -> Path:
    """Checkpoint ``name``, whole or not at all: ``write_files(staged)`` writes the engine's files, then
    ``commit``. On any error the staging folder is removed, and a failed write is a one-line TkError."""
    staged = staging(folder, name)
    try:
        write_files(staged)
        return commit(staged, state)
    except BaseException as error:
        cause = disk_cause(error, staged)
        discard(staged)
        if cause is not None:
            raise saving_error(folder / name, cause) from cause  # the cause: how the run pipeline knows a full disk
        if isinstance(error, Exception) and not isinstance(error, TkError):
            raise TkError(f"Could not write the checkpoint {folder / name}: {first_line(error)}") from error
        raise


def discard(staged: Path) -> None:
    shutil.rmtree(staged.parent, ignore_errors=True)


def disk_cause(error: BaseException, staged: Path) -> OSError | None:
    """The disk error behind a failed write. torch.save's own writer says only "unexpected pos" when the
    disk fills or a file reaches ``ulimit -f``, so those two are checked for here."""
    found = os_error_in(error)
    if found is not None or not isinstance(error, RuntimeError):
        return found
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and any(path.is_file() and path.stat().st_size >= limit
                                               for path in staged.rglob("*")):
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    try:
        disk = os.statvfs(staged.parent.parent)
    except OSError:
        return None
    if disk.f_bavail * disk.f_frsize < 1 << 20:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fsync_file(path: Path) -> dict[str, int]:
    """fsync ``path``; its size and CRC-32 (read back from the page cache), for a resume to check it by."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
        return {"bytes": os.fstat(handle).st_size, "crc32": crc32_of(handle)}
    finally:
        os.close(handle)


def crc32_of(handle: int) -> int:
    crc = 0
    while chunk := os.read(handle, 1 << 22):
        crc = zlib.crc32(chunk, crc)
    return crc


def fsync_dir(path: Path) -> None:
    """A rename or a new name is durable once its folder is fsynced (where the system allows it)."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # some filesystems refuse fsync on a folder; the files themselves are synced
        pass
    finally:
        os.close(handle)


def resume_points(folder: Path) -> set[Path]:
    """The checkpoints a resume may need: the ``KEEP`` newest committed ones (each holds its best epoch's weights)."""
    return set(committed(folder)[-KEEP:])


def prune(folder: Path) -> None:
    """Remove every checkpoint a resume cannot need, every partial one and every damaged one."""
    kept = {path.resolve() for path in resume_points(folder)}
    for path in folder.glob("*") if folder.is_dir() else ():
        if path.is_dir() and path.resolve() not in kept and path.name.startswith((PREFIX, PARTIAL, DAMAGED)):
            shutil.rmtree(path, ignore_errors=True)
