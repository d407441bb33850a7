"""Run folders: one per run, never reused, named after the task; their status (every file in them is
written whole, through ``toolkit.saving``)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from toolkit.errors import TkError

from toolkit.saving import write_json

STATUS_FILE = "status.json"
TASK_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def check_task_name(name: str) -> None:
    """A task name becomes part of a folder name: letters, digits, '-', '_', '.'; no leading dot, no '/'."""
    if not TASK_NAME.fullmatch(name):
        raise TkError(f"Task name {name!r} cannot name a run folder: use letters, digits, '-', '_' and '.', "
                      "not starting with a dot (e.g. [tasks.imdb-small]).")


def new_run_dir(output: Path, task_name: str) -> Path:
    """Create a fresh folder; os.mkdir is atomic, so two runs at once never share one."""
    check_task_name(task_name)
    make_output_folder(output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        path = output / (f"{task_name}-{stamp}" + (f"-{attempt}" if attempt > 1 else ""))
        if path.resolve().parent != output.resolve():
            raise TkError(f"Task name {task_name!r} would put its run folder outside {output}.")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as error:
            raise TkError(f"Cannot create a run folder in {output}: {error.strerror}.") from None
    raise TkError(f"Too many runs of '{task_name}' this second in {output}.")


def make_output_folder(output: Path) -> Path:
    """The --output folder of tk run, cv, sweep, tune and export, made if missing: one line where it cannot
    be (a file of that name, a path under /proc) or cannot be written."""
    if output.exists() and not output.is_dir():
        raise TkError(f"The output folder {output} is a file, not a folder. Pass --output DIR.")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TkError(f"Cannot create the output folder {output}: {error.strerror}. Pass --output DIR.") from None
    if not os.access(output, os.W_OK):
        raise TkError(f"The output folder {output} is not writable. Pass --output DIR with a folder you can write.")
    return output


def set_status(run_dir: Path, status: str, **details: Any) -> None:
    write_json(run_dir / STATUS_FILE, {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **details})


STATUSES = ("running", "interrupted", "failed", "complete", "trial", "pruned")  # trial, pruned: tk tune's trials


def run_status(run_dir: Path) -> str:
    """status.json's status; 'incomplete' when the file is missing, unreadable or not what tk wrote."""
    try:
        saved = json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "incomplete"
    status = saved.get("status") if isinstance(saved, dict) else None
    return status if isinstance(status, str) and status in STATUSES else "incomplete"


def list_runs(output: Path) -> list[tuple[Path, str]]:
    if not output.is_dir():
        return []
    return [(path, run_status(path)) for path in sorted(output.iterdir()) if (path / "config.json").exists()]
