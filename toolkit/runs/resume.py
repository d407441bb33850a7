"""What ``tk run --resume RUN`` checks before it continues a run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from toolkit.errors import TkError
from toolkit.runs.artifacts import same_fingerprint
from toolkit.runs.folders import run_status
from toolkit.runs.loader import TRIAL_STATES, kind_of
from toolkit.saving import read_json
from toolkit.training import checkpoint_checks, checkpoints


def refuse_options(given: list[str]) -> None:
    """A resumed run keeps the task, data and folder it was started with: options that would change them are refused."""
    if given:
        raise TkError(f"--resume continues a run exactly as it was started, so {', '.join(given)} cannot be "
                      "given with it. Drop them, or start a new run: tk run TASK ...")


def check_resumable(run_dir: Path) -> Path:
    """The newest committed checkpoint of ``run_dir``; a complete run or one without a checkpoint is refused.
    Whether it is whole is ``whole_checkpoint``'s question, asked once the run is held."""
    if not (run_dir / "config.json").is_file():
        raise TkError(f"{run_dir} is not a tk run folder (it has no config.json).")
    if kind_of(run_dir) == "cv":
        raise TkError(f"{run_dir} is a tk cv folder: tk cv --resume {run_dir} goes on with its folds.")
    if run_status(run_dir) in TRIAL_STATES:
        raise TkError(f"{run_dir} is a tk tune trial's run, which is never resumed: run the same tk tune command "
                      "again, and the study goes on with a new trial.")
    if run_status(run_dir) == "complete":
        raise TkError(f"{run_dir} is already complete; nothing to resume.")
    latest = checkpoints.latest(run_dir / "checkpoints")
    if latest is None:
        raise TkError(f"{run_dir} has no epoch checkpoint to resume from (it stopped before the first epoch "
                      f"ended). Start it again: {again(run_dir)}")
    return latest


def whole_checkpoint(run_dir: Path, note) -> tuple[Path, list]:
    """The newest whole checkpoint, each newer damaged one named; none whole: start again."""
    chosen, damaged = checkpoint_checks.newest_whole(run_dir / "checkpoints")
    said = "; ".join(f"{path.name} is damaged ({', '.join(found)})" for path, found in damaged)
    if chosen is None:
        raise TkError(f"No checkpoint of {run_dir} is whole: {said}. Start it again: {again(run_dir)}")
    if damaged:
        note(f"{said}; resuming from {chosen.name}")
    return chosen, damaged


def again(run_dir: Path) -> str:
    """The command that starts a run again, as config.json recorded it (older runs: from the task's name)."""
    try:
        saved = read_json(run_dir / "config.json")
    except TkError:
        return "tk run TASK"
    if isinstance(saved, dict) and isinstance(saved.get("start_again"), str):
        return saved["start_again"]
    task = saved.get("task") if isinstance(saved, dict) else None
    return f"tk run {task.get('name', 'TASK')}" if isinstance(task, dict) else "tk run TASK"


def data_origin(saved: dict[str, Any]) -> str:
    """Where a run's data came from when it started (--data, the task's data key, TK_DATA_DIR), as its
    config.json recorded it ('PATH (from the task's data key)'). A resume reads the path recorded, but that is
    not the user passing --data: its 'Data: ...' line names the origin the run was started with."""
    found = re.search(r" \(from (.+)\)$", str(saved.get("data_source") or ""))
    return found[1] if found else "the run's record"


def check_state(checkpoint: Path) -> None:
    """A checkpoint of tk's training loop holds its whole state in one file; without it the run cannot go on
    (a checkpoint of the retired Trainer engine is refused earlier, by the engine's name)."""
    if not (checkpoint / checkpoints.TRAINING_STATE).is_file():
        raise TkError(f"{checkpoint} lacks {checkpoints.TRAINING_STATE}: the run cannot continue from it. "
                      f"Start it again: {again(checkpoint.parent.parent)}")


def reproducibility(run_dir: Path) -> dict[str, Any]:
    """What metrics.json and manifest.json say: exact, or resumed without the files listed (an inexact resume
    of the retired Trainer engine's checkpoints recorded them)."""
    try:
        missing = read_json(run_dir / "config.json").get("inexact_resume") or []
    except TkError:
        missing = []
    return {"exactly_reproducible": not missing, **({"resumed_without": missing} if missing else {})}


def check_fingerprint(saved: dict[str, Any], now: dict[str, Any], source: str, splits=None) -> None:
    """The data a resume loads is the data the run started with; a config.json without the fingerprint
    cannot say so, and is refused."""
    recorded = saved.get("data_fingerprint")
    if not isinstance(recorded, dict) or not recorded:
        raise TkError("The run's config.json records no data fingerprint (data_fingerprint), so tk cannot check "
                      "that the data is the run's. Start a new run.")
    if not (same_fingerprint(recorded, splits, now) if splits is not None else recorded == now):
        raise TkError(f"The data changed since the run started: {source} now gives fingerprint "
                      f"{_short(now)}, the run recorded {_short(recorded)}. Restore the data, or start a new run.")


def _short(fingerprint: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value.get('rows')} rows {value.get('sha256')}" for name, value in fingerprint.items())


def begin(run_dir: Path, prepared, fingerprint: dict[str, Any], note) -> None:
    """The same data as when the run started, and a whole checkpoint that resumes it exactly."""
    check_fingerprint(read_json(run_dir / "config.json"), fingerprint, prepared.source.describe(), prepared.splits)
    check_resumable(run_dir)
    chosen, damaged = whole_checkpoint(run_dir, note)
    check_state(chosen)
    checkpoint_checks.set_aside(damaged)  # the loop resumes from the newest committed one: the chosen one


def where_next(run_dir: Path, again: str) -> str:
    """How a run that stopped goes on: resume from its committed checkpoint, or start again."""
    if checkpoints.latest(run_dir / "checkpoints") is not None:
        return f" Then resume it: tk run --resume {run_dir}"
    return f" It has no epoch checkpoint to resume from; start it again: {again}"
