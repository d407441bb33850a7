"""Epoch checkpoints shared by every engine: ``checkpoints/checkpoint-STEP/`` with ``tk_state.json`` written last.

An engine writes its own files into a checkpoint folder (the Trainer its
model, optimizer, scheduler and RNG files; the CUDA-graph loop one state
file) and then calls ``commit``, which writes the policy state atomically.
That file marks the folder whole: ``latest`` returns only committed
checkpoints, so a folder cut short by a kill or a full disk is never
resumed from, and ``prune`` removes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from toolkit.runs.folders import read_json, write_json

STATE_FILE = "tk_state.json"
PREFIX = "checkpoint-"


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


def latest(folder: Path) -> Path | None:
    """The newest committed checkpoint, or None."""
    complete = [path for path in checkpoint_dirs(folder) if is_complete(path)]
    return complete[-1] if complete else None


def commit(path: Path, state: dict[str, Any]) -> None:
    """Mark ``path`` whole by writing the policy ``state`` into it, last and atomically."""
    write_json(path / STATE_FILE, state)


def read_state(path: Path) -> dict[str, Any]:
    return read_json(path / STATE_FILE)


def prune(folder: Path, keep: set[Path]) -> None:
    """Remove every checkpoint (and every partial one) but ``keep``."""
    kept = {path.resolve() for path in keep}
    for path in folder.glob("*") if folder.is_dir() else ():
        if path.is_dir() and path.resolve() not in kept and (path.name.startswith(PREFIX)
                                                              or path.name.startswith(".partial-")):
            shutil.rmtree(path, ignore_errors=True)
