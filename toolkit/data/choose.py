"""What a command's NAME and --data mean: a task, a dataset, or just your file (the `files` dataset)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from toolkit.config import build_task
from toolkit.errors import TkError

FILES = "files"  # the built-in dataset for your own files (plugins/datasets/files.py)
DEFAULT_MODEL = "minilm"  # bundled: a run on your file works with no network
MAX_VALIDATION = 500


def data_task(data: str, overrides: dict[str, Any], declared: tuple = ()):
    """The task of ``tk run --data FILE`` with no task name: the files dataset, minilm, tk's defaults, and
    a validation set sized to the file (a tenth of its rows, at most 500) unless ``--set`` says otherwise."""
    path = Path(data)
    if not path.exists():
        raise TkError(f"--data: {path} does not exist. Check the path.")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().stem if path.is_file() else path.resolve().name)
    values: dict[str, Any] = {"dataset": FILES, "model": DEFAULT_MODEL, "data": str(path.resolve())}
    if "validation_size" not in overrides:
        values["validation_size"] = max(1, min(MAX_VALIDATION, rough_rows(path) // 10))
    values.update(overrides)
    return build_task(name.strip("-.") or "data", values, "--set", declared)


def rough_rows(path: Path) -> int:
    """About how many training rows a file or folder holds (lines, Parquet metadata, .txt files); cheap."""
    if path.is_dir():
        texts = list(path.glob("*/*.txt"))
        if texts:
            return len(list(path.glob("train/*/*.txt"))) or len(texts)
        tables = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().startswith("train"))
        return rough_rows(tables[0]) if tables else 0
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        except Exception:  # unreadable: the loader will say so
            return 0
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def command_target(session, name: str | None, data: str | None):
    """For ``tk check`` / ``tk analyze-lengths``: (dataset name, task data key, tasks.toml folder, task).

    NAME is a task of tasks.toml (its dataset, data key and own keys), else a dataset; no NAME with
    --data means your file, read by the files dataset.
    """
    if name is None:
        if data is None:
            raise TkError("Name a task or a dataset (tk list shows them), or pass --data FILE.")
        return FILES, None, None, None
    if session.tasks_path.exists() and name in session.config.tasks:
        task = session.config.tasks[name]
        return task.dataset, task.data, session.tasks_path.resolve().parent, task
    return name, None, None, None
