"""How a run ends: its outcome, and when it ends early, interrupted (with how to go on: resume, or start
again) or failed (marked so, best effort)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig, parse_value
from toolkit.errors import TkError
from toolkit.runs.folders import run_status, set_status
from toolkit.training import checkpoints
from toolkit.training.progress import Progress


@dataclass
class RunOutcome:
    run_dir: Path | None  # None: interrupted before the run folder was made
    status: str  # "complete" or "interrupted"
    metrics: dict[str, Any]


def start_again(task: TaskConfig, data: str | None, where: str | None) -> str:
    """The command that starts this run again: a run of your file (tk run --data F) has no task to name. The
    keys an option gave the run (``task.set_by``: --set, a sweep's --grid and seeds) are repeated as --set, for
    without them the command would train another run."""
    values = task.describe()
    if where and where.startswith("--data"):
        command = f"tk run --data {data}"
    else:
        command = f"tk run {task.name}" + (f" --data {data}" if data else "")
    repeated = [key for key in task.set_by if not (key == "data" and data)]  # a --grid data= run: its --data
    return command + "".join(f" --set {assignment(key, values[key])}" for key in repeated)


def assignment(key: str, value: Any) -> str:
    """key=value as --set reads it back (a value as TOML, else as a string), quoted for a shell."""
    if isinstance(value, str) and parse_value(value) == value:
        text = value  # read back as this string
    else:
        text = json.dumps(value)  # TOML's true/false, numbers, arrays and "strings" are written alike
    return shlex.quote(f"{key}={text}")


TUNE_AGAIN = ("Run the same tk tune command again: the study goes on with a new trial (a trial's run is never "
              "resumed).")


def interrupted(run_dir: Path | None, again: str, progress: Progress, mark: bool,
                go_on: str | None = None) -> RunOutcome:
    """Mark the run interrupted and say how to go on: resume from a checkpoint, or start again; ``go_on``, a
    run another command started (tk tune's trials and final runs): what to run instead."""
    if mark and run_status(run_dir) != "complete":
        try:
            set_status(run_dir, "interrupted")
        except TkError as error:  # e.g. a full disk: the status says 'running' and tk list shows it stale
            progress.note(f"Could not mark the run interrupted: {error}")
    if go_on:
        progress.note(f"Interrupted. {go_on}")
    elif run_dir is not None and run_status(run_dir) == "complete":
        progress.note(f"Interrupted after the run was complete; its results are saved in {run_dir}.")
    elif run_dir is not None and checkpoints.latest(run_dir / "checkpoints") is not None:
        progress.note(f"Interrupted. The last finished epoch is saved; resume with:\n  tk run --resume {run_dir}")
    elif run_dir is not None:
        progress.note(f"Interrupted before the first epoch ended: {run_dir} has nothing to resume from. "
                      f"Start again: {again}")
    else:
        progress.note(f"Interrupted before the run folder was made; nothing to resume. Start again: {again}")
    return RunOutcome(run_dir, "interrupted", {})


def mark_failed(run_dir: Path, error: BaseException) -> None:
    """Best effort: on a full disk even status.json may not fit, and the first error is the one to report.
    A complete run stays complete (an error while removing its checkpoints changes nothing saved)."""
    if run_status(run_dir) == "complete":
        return
    try:
        set_status(run_dir, "failed", error=str(error) or type(error).__name__)
    except (TkError, OSError):
        pass
