"""tasks.toml: the file found, read, its local plugins loaded, and every task in it built and checked.

What one task's keys mean and how each value is checked is ``toolkit.config``'s; this module knows the
file around them: its top-level tables, ``[defaults]``, ``plugins = [...]`` and where it is looked for.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig, build_task, check_key, known_keys
from toolkit.errors import TkError, suggest
from toolkit.plugins import PluginManager
from toolkit.records import Setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_LEVEL_KEYS = {"defaults", "tasks", "plugins"}


@dataclass(frozen=True)
class Config:
    path: Path
    tasks: dict[str, TaskConfig]
    plugins: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the [defaults] table, as written

    def task(self, name: str) -> TaskConfig:
        if name not in self.tasks:
            raise TkError(
                f"{self.path}: no task '{name}'.{suggest(name, self.tasks)} "
                f"Tasks: {', '.join(sorted(self.tasks))}."
            )
        return self.tasks[name]


def missing_tasks_file(path: Path) -> TkError:
    return TkError(f"{path}: no such file. Pass --tasks PATH or run tk where tasks.toml is.")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise missing_tasks_file(path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise TkError(f"{path}: cannot read it ({error}).") from error
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise (duplicate_key(path, text, str(error)) or TkError(f"{path}: not valid TOML: {error}.")) from None


TOMLLIB_DUPLICATE = re.compile(r"^(Cannot overwrite a value|Cannot declare .* twice) \(at line (\d+), column \d+\)$")
TABLE_LINE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
KEY_LINE = re.compile(r"^\s*([\w\-.\"' ]+?)\s*=")


def duplicate_key(path: Path, text: str, said: str) -> TkError | None:
    """TOML allows a key, and a [table], once. tomllib says only 'Cannot overwrite a value (at line 9, column
    11)': the key, its table and the line that set it first are read back from the file's lines. None when
    tomllib's error is another one, or these lines do not show both settings (its own words are said then)."""
    found = TOMLLIB_DUPLICATE.match(said)
    if not found:
        return None
    statements = list(_statements(text.splitlines()))
    # the statement tomllib refused: the last to start at or above the line it names (a list value over several
    # lines ends below its key)
    refused = next((s for s in reversed(statements) if s[0] <= int(found[2])), None)
    if refused is None:
        return None
    number, table, name, is_table = refused
    first = next((s[0] for s in statements if s[0] < number and s[1:] == refused[1:]), None)
    if first is None:  # set first some other way (a dotted key, a key then a [table]): not guessed at
        return None
    if is_table:
        return TkError(f"{path}, line {number}: the table [{name}] appears twice (first on line {first}); TOML "
                       f"allows each table once. Merge the two into one [{name}] table.")
    where = f"[{table}]" if table else "the top level"
    return TkError(f"{path}, line {number}: the key '{name}' is set twice in {where} (first on line {first}); TOML "
                   "allows each key once in a table. Delete the line you do not mean.")


def _statements(lines: list[str]):
    """(line number, the table it is in, the key or table it names, whether it is a [table] line) of every
    line that starts a key = value or a [table]."""
    table = None
    for number, line in enumerate(lines, 1):
        if header := TABLE_LINE.match(line):
            table = _dotted(header[1])
            yield number, None, table, True
        elif key := KEY_LINE.match(line):
            yield number, table, _dotted(key[1]), False


def _dotted(key: str) -> str:
    """A TOML key as one spelling: `tasks . "a"` and `tasks.a` name the same key."""
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


def local_plugins(raw: dict[str, Any], path: Path) -> tuple[str, ...]:
    """The ``plugins = [...]`` list of a tasks.toml: local modules to load before its tasks are checked."""
    plugins = raw.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise TkError(f"{path}: 'plugins' must be a list of module names, like plugins = [\"my_plugin\"].")
    return tuple(plugins)


def load_config(path: Path, pm=None) -> Config:
    """Read and validate a tasks.toml; every error names the file, the task and the key.

    ``pm`` supplies the plugin keys; without one, a plugin manager is loaded
    with the file's own local plugins.
    """
    raw = read_toml(path)
    if pm is None:
        pm = PluginManager().load(local_plugins(raw, path), path.resolve().parent)
    return parse_config(raw, path, pm.settings())


def parse_config(raw: dict[str, Any], path: Path, declared: Mapping[str, Setting] | None = None) -> Config:
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise TkError(f"{path}: unknown top-level key '{key}'.{suggest(key, TOP_LEVEL_KEYS)}")
    plugins = local_plugins(raw, path)
    known = tuple((declared or {}).values())
    defaults = _table(raw.get("defaults", {}), path, "[defaults]")
    for key, value in defaults.items():
        check_key(key, value, known_keys(known), path, "[defaults]")
    tasks_raw = _table(raw.get("tasks", {}), path, "[tasks]")
    tasks = {}
    for name, table in tasks_raw.items():
        merged = {**defaults, **_table(table, path, f"task '{name}'")}
        tasks[name] = build_task(name, merged, path, known)
    return Config(path=path, tasks=tasks, plugins=plugins, defaults=defaults)


def _table(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TkError(f"{path}: {where} must be a table, got {type(value).__name__}.")
    return value


SHIPPED_TASKS = Path(__file__).resolve().parent.parent / "tasks.toml"  # the built-in tasks (imdb-bert, ...)


def find_tasks_file(explicit: str | None) -> Path:
    """--tasks, then TK_TASKS, then ./tasks.toml, then the one shipped beside the package."""
    if explicit:
        return Path(explicit)
    if os.environ.get("TK_TASKS"):
        return Path(os.environ["TK_TASKS"])
    local = Path("tasks.toml")
    if local.exists():
        return local
    return SHIPPED_TASKS if SHIPPED_TASKS.exists() else local


def hoist_tasks_option(args: list[str]) -> list[str]:
    """``tk check NAME --tasks F`` means ``tk --tasks F check NAME``: the option moves before the command."""
    front, rest, i = [], [], 0
    while i < len(args):
        if args[i] == "--":
            rest += args[i:]
            break
        if args[i] == "--tasks" and i + 1 < len(args):
            front += args[i:i + 2]
            i += 2
            continue
        (front if args[i].startswith("--tasks=") else rest).append(args[i])
        i += 1
    return front + rest
