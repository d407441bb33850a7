"""`tk sweep`: every combination of a grid, optionally over several seeds, then one comparison table."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig, parse_value, with_overrides
from toolkit.data.choose import name_of_data
from toolkit.errors import TkError, user_message
from toolkit.runs import tracking
from toolkit.runs.compare import (
    comparison_notes,
    format_group_rows,
    format_run_rows,
    group_rows,
    group_test_rows_note,
    run_rows,
    summarise,
)
from toolkit.runs.diagnoses import group_warnings
from toolkit.runs.folders import new_run_dir
from toolkit.runs.pipeline import TrainingRows, check_before_loading, run_task, training_rows
from toolkit.saving import write_json
from toolkit.training.progress import Progress


def parse_grid(specs: tuple[str, ...]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise TkError(f"--grid '{spec}': expected key=v1,v2, e.g. --grid epochs=2,3.")
        if any(not v.strip() for v in values.split(",")):
            raise TkError(f"--grid '{spec}': an empty value (two commas, or one at an end). List each value once, "
                          "e.g. --grid epochs=2,3.")
        parsed = [parse_value(v.strip()) for v in values.split(",")]
        same = _same_values(parsed, values.split(","))
        if same:
            raise TkError(f"--grid '{spec}': {same} are the same value, which would train the same run twice. "
                          "List each value once.")
        if key.strip() in grid:
            raise TkError(f"--grid: key '{key.strip()}' is given twice; put its values in one --grid.")
        grid[key.strip()] = parsed
    return grid


def _same_values(parsed: list[Any], written: list[str]) -> str | None:
    """'1e-4 and 0.0001': the first two values of a --grid that are equal by value (1 and 1.0 too)."""
    seen: dict[str, str] = {}
    for value, text in zip(parsed, written):
        key = json.dumps(float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value,
                         sort_keys=True, default=str)
        if key in seen:
            return f"{seen[key]} and {text.strip()}"
        seen[key] = text.strip()
    return None


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def run_sweep(pm, task: TaskConfig, grid: dict[str, list[Any]], seeds: int, *, data: str | None, output: Path,
              base: Path | None, progress: Progress, where: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Every run of the grid, then the comparison; returns the sweep folder and what its sweep.json holds:
    one row per setting (tk compare's row, or with several seeds mean ± sd), each with its setting and
    run folders, and the table as text. ``where``: tk run's, for a sweep over --data FILE."""
    settings = combinations(grid) or [{}]
    # Validate every combination before the first minute of training is spent.
    if seeds > 1 and "seed" in grid:
        raise TkError("--grid seed=... and --seeds both choose seeds: use one (--seeds N runs seeds "
                      f"{task.seed}..{task.seed + seeds - 1} of each setting).")
    planned = []
    for setting in settings:
        config = with_overrides(task, setting, "--grid")  # a grid's own seed is checked and kept, like any key
        # the first seed is the task's own: not set by an option, so a start-again line does not repeat it
        planned += [(setting, with_overrides(config, {"seed": config.seed + i}, "--grid") if i else config)
                     for i in range(seeds)]
    check_every_setting(pm, task, settings, base, data)
    sweep_dir = new_run_dir(output, f"sweep-{task.name}")
    progress = NotesOnce(progress)
    progress.note(f"Sweep of {len(planned)} runs into {sweep_dir} (a data-check line is printed once for the sweep)")
    groups: dict[str, list] = {}
    setting_of: dict[str, dict[str, Any]] = {}
    with tracking.sweep(task, sweep_dir, progress.note):  # report_to = ["mlflow"]: the runs under one parent
        for number, (setting, config) in enumerate(planned, 1):
            name = _name(setting, task)
            progress.note(f"\n[{number}/{len(planned)}] {name}, seed {config.seed}")
            run_data, origin = data_of(setting, data)
            # a run over one of --grid data's files is named after its file, not after the task's first
            folder = name_of_data(Path(run_data)) if "data" in setting else None
            outcome = run_task(pm, config, data=run_data, output=sweep_dir, base=base, progress=progress, where=where,
                               data_origin=origin, folder_name=folder)
            if outcome.status == "interrupted":
                raise SweepInterrupted(f"Sweep interrupted at run {number} of {len(planned)} ({name}, seed "
                                       f"{config.seed}); its {number - 1} finished run(s) are in {sweep_dir} (tk "
                                       f"compare {sweep_dir} compares them). A sweep does not resume: run tk sweep again "
                                       "with the settings left (or resume the interrupted run, where it says how) "
                                       "and tk compare all the runs.")
            if outcome.status != "complete":
                raise TkError(f"Sweep stopped at run {number}; finished runs are in {sweep_dir}.")
            label = name if seeds == 1 else f"{name} (seed {config.seed})"
            groups.setdefault(name, []).append(summarise(outcome.run_dir, label))
            setting_of[name] = setting
        if seeds > 1:
            rows = group_rows(groups)
            table = "\n".join([format_group_rows(rows), *group_test_rows_note(groups)])
        else:
            rows = run_rows([runs[0] for runs in groups.values()])
            table = "\n".join([format_run_rows(rows), *comparison_notes(rows)])
        rows = [{"setting": setting_of[name], **row} for name, row in zip(groups, rows)]
        record = {"task": task.name, "grid": grid, "seeds": seeds,
                  "runs": {name: [r.path.name for r in runs] for name, runs in groups.items()},
                  "rows": rows, "table": table.splitlines(), "warnings": group_warnings(groups)}
        write_json(sweep_dir / "sweep.json", record)
    return sweep_dir, record


class SweepInterrupted(TkError):
    """A Ctrl-C or SIGTERM stopped one of the sweep's runs (tk sweep exits 130, as tk run does)."""


def refuse_keys_in_both(grid: dict[str, list[Any]], overrides: dict[str, Any]) -> None:
    """A key in --grid and --set: the grid's values would replace the --set one in every run, unsaid."""
    both = [key for key in grid if key in overrides]
    if both:
        key = both[0]
        raise TkError(f"--grid {key}=... and --set {key}=... both set '{key}': the --grid values would replace "
                      f"the --set one in every run. Give {key} in one of them (add its value to the --grid list, or "
                      "drop the --grid).")


def refuse_data_outside_grid(data: str | None, grid: dict[str, list[Any]]) -> None:
    """--data A with --grid data=B,C: each run reads its --grid file, so A would be read by none, unsaid. (A
    --data that is one of the grid's files names the sweep's task, as the docs' corrected-copy sweep does.)"""
    if data is None or "data" not in grid:
        return
    files = [str(value) for value in grid["data"]]
    if Path(data).resolve() not in {Path(value).resolve() for value in files}:
        raise TkError(f"--data {data} is not one of --grid data's files ({', '.join(files)}): each run reads its "
                      "--grid file, so no run would read it. Add it to the --grid list, or drop --data.")


# The keys that decide how many rows a batch is drawn from, which only the data knows; with long_text = "chunks"
# (batches of windows) those that decide the windows too
ROWS_KEYS = ("batch_size", "train_size", "validation_size", "eval_size", "data")
WINDOW_KEYS = ("max_length", "stride", "long_text")


def check_every_setting(pm, task: TaskConfig, settings: list[dict[str, Any]], base: Path | None,
                        data: str | None = None) -> None:
    """tk run's checks before loading data (model, max_length, engine, ...) on every setting, so that a bad
    --grid value stops the sweep before its first run trains rather than after. Where the grid varies
    batch_size or the split sizes, also tk run's batch_size check against the training rows: the data is
    loaded and split here once per setting that differs in more than batch_size, though each run loads it
    again, since a run's own check comes only after the runs before it have trained."""
    rows: dict[str, TrainingRows] = {}
    for number, setting in enumerate(settings, 1):
        config = with_overrides(task, setting, "--grid")
        try:
            ready = check_before_loading(pm, config, base=base)
            if any(key in setting for key in ROWS_KEYS) or (config.reads_in_windows and
                                                             any(key in setting for key in WINDOW_KEYS)):
                same_data = json.dumps({k: v for k, v in setting.items() if k != "batch_size"}, sort_keys=True,
                                       default=str)
                if same_data not in rows:
                    run_data, origin = data_of(setting, data)
                    rows[same_data] = training_rows(pm, config, run_data, base, ready, origin)
                rows[same_data].check(config)
        except TkError as error:
            said = f"setting {number} of {len(settings)} ({_name(setting, task)})" if setting else "its task"
            raise TkError(f"The sweep cannot start its {said}, so nothing was trained: "
                          f"{in_sweep_words(user_message(error), setting)}") from None


def data_of(setting: dict[str, Any], data: str | None) -> tuple[str | None, str]:
    """A run's data and what gave it: a --grid data=A,B value is read as --data is (from the current folder),
    in place of --data, so that one sweep compares data files (a corrected copy against the original)."""
    if "data" in setting:
        return str(setting["data"]), "--grid data"
    return data, "--data"


def in_sweep_words(message: str, setting: dict[str, Any]) -> str:
    """tk run's advice '--set KEY=VALUE' for a key the sweep takes from --grid: change the --grid value."""
    for key in setting:
        message = message.replace(f"--set {key}=", f"--grid {key}=")
    return message


def _name(setting: dict[str, Any], task: TaskConfig) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or task.name


class NotesOnce:
    """A sweep's progress: its runs read the same data, so a data-check line already printed (a rare class, an
    imbalance: kilobytes with many classes) is not printed again for each run; everything else passes."""

    REPEATED = "Data check: "

    def __init__(self, progress: Progress) -> None:
        self.progress, self.seen = progress, set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.progress, name)

    def note(self, text: str) -> None:
        if text.startswith(self.REPEATED):
            if text in self.seen:
                return
            self.seen.add(text)
        self.progress.note(text)
