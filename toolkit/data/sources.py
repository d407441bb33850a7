"""Where a dataset's rows come from: --data, the task's data key, TK_DATA_DIR, then the Hub."""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.errors import TkError
from toolkit.records import DataSource


def refuse_two_data(cli_data: str | None, task) -> None:
    """--data FILE and --set data=OTHER name two files: --data would be read and the --set value ignored, unsaid.
    (A sweep's --grid data=... is each run's data, passed as its --data: not refused.)"""
    if cli_data and task.set_by.get("data") == "--set":
        raise TkError(f"--data {cli_data} and --set data={task.data} both name the data file, and a run reads one. "
                      "Pass the file once, with --data.")


def task_source(dataset: str, cli_data: str | None, task, base: Path | None = None,
                cli_option: str = "--data") -> DataSource:
    """The source a run of ``task`` reads: ``cli_data`` (--data, or a sweep's --grid data) over the task's data
    key, TK_DATA_DIR and the Hub; --data with --set data=... is refused (two files named, one read)."""
    refuse_two_data(cli_data, task)
    return resolve_source(dataset, cli_data, task.data, base, cli_option)


def resolve_source(dataset: str, cli_data: str | None = None, task_data: str | None = None,
                   base: Path | None = None, cli_option: str = "--data") -> DataSource:
    """Pick the source by precedence; every local path must exist. ``cli_option`` names where ``cli_data``
    came from in messages (tk export's --check-data, a run's recorded data)."""
    if cli_data:
        return DataSource(_existing(Path(cli_data), cli_option), cli_option, base)
    if task_data:
        path = Path(task_data)
        if not path.is_absolute() and base is not None:
            path = base / path
        return DataSource(_existing(path, "the task's 'data' key"), "the task's data key", base)
    root = os.environ.get("TK_DATA_DIR")
    if root:
        candidate = Path(root) / dataset
        if candidate.exists():
            return DataSource(candidate, "TK_DATA_DIR", base)
        if not Path(root).is_dir():
            raise TkError(f"TK_DATA_DIR={root} is not a folder. Point it at a folder laid out like ../shared/data.")
    return DataSource(None, "the Hub")


def _existing(path: Path, where: str) -> Path:
    if not path.exists():
        raise TkError(f"{where}: {path} does not exist. Check the path, or leave it out to use TK_DATA_DIR or the Hub.")
    if not os.access(path, os.R_OK):
        raise TkError(f"{where}: {path} is not readable (permissions). Fix its permissions or copy it somewhere readable.")
    return path
