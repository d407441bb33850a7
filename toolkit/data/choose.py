"""What a command's NAME and --data mean: a task, a dataset, or just your file (the `files` dataset)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from toolkit.config import build_task, origin_of, with_overrides
from toolkit.data.sources import refuse_two_data
from toolkit.errors import TkError, suggest

FILES = "files"  # the built-in dataset for your own files (plugins/datasets/files.py)
DEFAULT_MODEL = "minilm"  # bundled: a run on your file works with no network


def data_task(data: str, overrides: dict[str, Any], declared: tuple = (), taken: Any = ()):
    """The task of ``tk run --data FILE`` with no task name: the files dataset, minilm and tk's defaults
    (a validation set of a tenth of the training rows, at most 500), with ``--set`` applied. Named after the
    file; ``-data`` is added where tasks.toml has a task of that name (``taken``), whose run folders, and
    tk compare's groups, it would otherwise share."""
    path = Path(data)
    if not path.exists():
        raise TkError(f"--data: {path} does not exist. Check the path.")
    name = name_of_data(path)
    values: dict[str, Any] = {"dataset": FILES, "model": DEFAULT_MODEL, "data": str(path.resolve())}
    values.update(overrides)
    task = build_task(f"{name}-data" if name in taken else name, values, "--set", declared)
    task = replace(task, set_by=dict.fromkeys(overrides, "--set"))  # a bad value is said to be --set's, not --data's
    refuse_two_data(data, task)
    return task


def name_of_data(path: Path) -> str:
    """A data file's or folder's name as a run folder can carry it: 'sms spam.csv' -> 'sms-spam'."""
    return folder_safe(path.resolve().stem if path.is_file() else path.resolve().name, "data")


def folder_safe(text: str, fallback: str) -> str:
    """``text`` as part of a folder name: letters, digits, '_', '.', '-' ('my study/2' -> 'my-study-2')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or fallback


def command_target(session, name: str | None, data: str | None, overrides: dict[str, Any] | None = None):
    """For ``tk check`` / ``tk analyze-lengths``: (dataset name, task data key, tasks.toml folder, task).

    NAME is a task of tasks.toml (its dataset, data key and own keys), else a dataset; no NAME with
    --data means your file, read by the files dataset, as ``tk run --data FILE`` reads it. ``overrides``
    (``--set``) apply to the task; a dataset named with ``--set`` gets a task of tk's defaults.
    """
    overrides = overrides or {}
    declared = tuple(session.pm.settings().values())
    if name is None:
        if data is None:
            raise TkError("Name a task or a dataset (tk list shows them), or pass --data FILE.")
        return FILES, None, Path.cwd(), data_task(data, overrides, declared, task_names(session))
    if session.has_tasks_file() and name in session.config.tasks:
        task = named_task(session, name, overrides, data)
        try:
            session.pm.dataset(task.dataset)
        except TkError as error:
            where = origin_of(task, "dataset", f"{session.tasks_path}: task '{name}'")
            raise TkError(f"{where}, key 'dataset'") from error
        return task.dataset, task.data, session.tasks_path.resolve().parent, task
    datasets = session.pm.datasets()
    if name not in datasets:
        tasks = task_names(session)
        raise TkError(f"No task or dataset '{name}'.{suggest(name, [*tasks, *datasets])} Tasks in "
                      f"{session.tasks_path}: {', '.join(tasks) or 'none'}; datasets: {', '.join(sorted(datasets))}.")
    if overrides:
        return name, None, None, dataset_task(name, overrides, declared)
    return name, None, None, None


def named_task(session, name: str, overrides: dict[str, Any], data: str | None):
    """Task NAME of tasks.toml with ``--set`` applied; --data with --set data=... is refused here, before a
    command makes a folder (two files named, and a run reads one)."""
    task = with_overrides(session.config.task(name), overrides)
    refuse_two_data(data, task)
    return task


def task_names(session) -> tuple[str, ...]:
    """The tasks of the session's tasks.toml, where there is one."""
    return tuple(session.config.tasks) if session.has_tasks_file() else ()


def dataset_task(dataset: str, overrides: dict[str, Any], declared: tuple = ()):
    """A task of tk's defaults for a dataset named with no task (tk check DATASET), with ``--set`` applied."""
    return build_task(dataset, {"dataset": dataset, "model": DEFAULT_MODEL, **overrides}, "--set", declared)
