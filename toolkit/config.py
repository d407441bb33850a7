"""tasks.toml: parsed and validated once, into frozen typed objects."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from toolkit.errors import TkError, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _choice(default: Any, *choices: Any) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class TaskConfig:
    """One fine-tuning task. Every key of a ``[tasks.NAME]`` table is a field here."""

    name: str
    dataset: str
    model: str
    max_length: int = 128
    batch_size: int = 16
    eval_batch_size: int = 64
    epochs: int = 3
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    lr_scheduler: str = _choice("linear", "linear", "cosine", "constant", "constant_with_warmup")
    train_size: int | None = None
    validation_size: int = 500
    eval_size: int | None = None
    seed: int = 42
    data: str | None = None
    truncation: str = _choice("head", "head", "tail", "head+tail")
    select_metric: str = _choice("loss", "loss", "accuracy", "f1")
    select_on: str = _choice("validation", "validation", "test")
    patience: int | None = 2
    bf16: str = _choice("auto", "auto", "on", "off")
    attention: str = _choice("auto", "auto", "sdpa", "eager")
    dynamic_padding: bool = True
    group_by_length: bool | str = _choice("auto", "auto", True, False)
    cuda_graphs: str = _choice("auto", "auto", "on", "off")
    fast_dropout: bool = True

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TASK_KEYS = {f.name: f for f in fields(TaskConfig) if f.name != "name"}
REQUIRED_KEYS = {"dataset", "model"}
TOP_LEVEL_KEYS = {"defaults", "tasks", "plugins"}


@dataclass(frozen=True)
class Config:
    path: Path
    tasks: dict[str, TaskConfig]
    plugins: tuple[str, ...] = ()

    def task(self, name: str) -> TaskConfig:
        if name not in self.tasks:
            raise TkError(
                f"{self.path}: no task '{name}'.{suggest(name, self.tasks)} "
                f"Tasks: {', '.join(sorted(self.tasks))}."
            )
        return self.tasks[name]


def load_config(path: Path) -> Config:
    """Read and validate a tasks.toml; every error names the file, the task and the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TkError(f"{path}: no such file. Pass --tasks PATH or run tk where tasks.toml is.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TkError(f"{path}: cannot read it ({error}).") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TkError(f"{path}: not valid TOML: {error}.") from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise TkError(f"{path}: unknown top-level key '{key}'.{suggest(key, TOP_LEVEL_KEYS)}")
    plugins = raw.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise TkError(f"{path}: 'plugins' must be a list of module names, like plugins = [\"my_plugin\"].")
    defaults = _table(raw.get("defaults", {}), path, "[defaults]")
    for key, value in defaults.items():
        _check_key(key, value, path, "[defaults]")
    tasks_raw = _table(raw.get("tasks", {}), path, "[tasks]")
    tasks = {}
    for name, table in tasks_raw.items():
        where = f"task '{name}'"
        merged = {**defaults, **_table(table, path, where)}
        tasks[name] = build_task(name, merged, path)
    return Config(path=path, tasks=tasks, plugins=tuple(plugins))


def build_task(name: str, values: dict[str, Any], path: Path | str) -> TaskConfig:
    where = f"task '{name}'"
    for key, value in values.items():
        _check_key(key, value, path, where)
    missing = REQUIRED_KEYS - values.keys()
    if missing:
        raise TkError(f"{path}: {where} has no '{sorted(missing)[0]}' key. Add it, e.g. dataset = \"imdb\".")
    return TaskConfig(name=name, **values)


def with_overrides(task: TaskConfig, overrides: dict[str, Any], path: Path | str = "--set") -> TaskConfig:
    """A copy of ``task`` with ``--set`` / ``--grid`` values applied and checked."""
    values = {k: v for k, v in task.describe().items() if k != "name"}
    values.update(overrides)
    return build_task(task.name, values, path)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``key=value``; the value is read as TOML, else taken as a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise TkError(f"--set '{text}': expected key=value, e.g. --set epochs=2.")
    return key, parse_value(value.strip())


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _table(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TkError(f"{path}: {where} must be a table, got {type(value).__name__}.")
    return value


def _check_key(key: str, value: Any, path: Path | str, where: str) -> None:
    if key not in TASK_KEYS:
        raise TkError(f"{path}: {where}: unknown key '{key}'.{suggest(key, TASK_KEYS)}")
    spec = TASK_KEYS[key]
    expected = _expected_types(spec.type)
    if value is None and type(None) in expected:
        return
    ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in expected)
    if float in expected and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        names = " or ".join(_TYPE_NAMES[t] for t in expected if t is not type(None))
        raise TkError(f"{path}: {where}: key '{key}' must be {names}, got {value!r}.")
    choices = spec.metadata.get("choices")
    if choices and value not in choices:
        raise TkError(
            f"{path}: {where}: key '{key}' must be one of {', '.join(map(repr, choices))}, "
            f"got {value!r}.{suggest(str(value), map(str, choices))}"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(key, value, f"{path}: {where}: key '{key}'")


def _check_number(key: str, value: int | float, name: str) -> None:
    """Range checks: finite, not negative, above 0 where 0 makes no sense, shares in [0, 1], seeds in numpy's range."""
    import math

    if not math.isfinite(value):  # TOML's inf and nan: training on them gives NaN weights and NaN metrics
        raise TkError(f"{name} must be a finite number, got {value!r}.")
    if value < 0:
        raise TkError(f"{name} must not be negative, got {value!r}.")
    if key in _POSITIVE and value <= 0:
        raise TkError(f"{name} must be above 0, got {value!r}.")
    if key in _SHARES and value > 1:
        raise TkError(f"{name} is a share and must be between 0 and 1, got {value!r}.")
    if key == "seed" and value > _MAX_SEED:
        raise TkError(f"{name} must be between 0 and {_MAX_SEED} (2**32 - 1), got {value!r}.")


_POSITIVE = {"max_length", "batch_size", "eval_batch_size", "epochs", "learning_rate", "train_size", "eval_size"}
_SHARES = {"warmup_ratio"}
_MAX_SEED = 2**32 - 1
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _expected_types(annotation: str) -> tuple[type, ...]:
    names = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}
    return tuple(names[part.strip()] for part in str(annotation).split("|"))


def find_tasks_file(explicit: str | None) -> Path:
    """--tasks, then TK_TASKS, then ./tasks.toml, then the one shipped beside the package."""
    import os

    if explicit:
        return Path(explicit)
    if os.environ.get("TK_TASKS"):
        return Path(os.environ["TK_TASKS"])
    local = Path("tasks.toml")
    if local.exists():
        return local
    shipped = Path(__file__).resolve().parent.parent / "tasks.toml"
    return shipped if shipped.exists() else local
