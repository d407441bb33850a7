"""tk run, tk list, tk sweep, tk compare."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolkit.cli.group import cli, parse_overrides, pass_session
from toolkit.cli.json_output import emit, json_option
from toolkit.data.choose import data_task, named_task, task_names
from toolkit.errors import TkError
from toolkit.evaluation import classical
from toolkit.evaluation.report import format_metrics
from toolkit.runs.compare import (
    SIGNIFICANCE,
    comparison_notes,
    data_notes,
    format_run_rows,
    format_settings_and_notes,
    linear_baseline_notes,
    run_rows,
    summarise,
)
from toolkit.runs.cv_compare import compare_cv, format_cv_comparison, is_cv
from toolkit.runs.diagnoses import group_warnings
from toolkit.runs.folders import list_runs
from toolkit.runs.liveness import shown_status
from toolkit.runs.loader import open_run
from toolkit.runs.pipeline import resume_task, run_task
from toolkit.runs.report_page import expand_runs
from toolkit.runs.resume import refuse_options
from toolkit.runs.sweep import (
    SweepInterrupted,
    parse_grid,
    refuse_data_outside_grid,
    refuse_keys_in_both,
    run_sweep,
)
from toolkit.tasks_file import SHIPPED_TASKS
from toolkit.training import distributed
from toolkit.training.engines import auto_engine_name
from toolkit.training.progress import Progress


@cli.command()
@click.argument("task_name", required=False)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a task setting (repeatable).")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder instead of the Hub; "
              "with no TASK, train on this file (CSV, TSV, JSONL, Parquet, or a folder) with the files dataset.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder that receives the run folder.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), metavar="RUN",
              help="Finish an interrupted run from its last epoch checkpoint.")
@click.option("--strict", is_flag=True, help="Stop when a data check warns.")
@json_option
@pass_session
@click.pass_context
def run(ctx, session, task_name, assignments, data, output, resume_dir, strict, as_json):
    """Fine-tune and evaluate TASK from tasks.toml, or your file: tk run --data FILE [--set label_column=NAME]."""
    progress = Progress(click.echo)  # with --json, click.echo writes to stderr (json_output)
    if resume_dir:
        given = {"task_name": "a task name", "assignments": "--set", "data": "--data", "output": "--output",
                 "strict": "--strict"}
        refuse_options([label for name, label in given.items() if ctx.get_parameter_source(name).name == "COMMANDLINE"])
        outcome = resume_task(session.pm, resume_dir, progress)
    else:
        if not task_name and not data:
            raise click.UsageError("Name a task (tk list shows them), pass --data FILE to train on your own "
                                   "file, or pass --resume RUN.")
        if task_name:
            task = named_task(session, task_name, parse_overrides(assignments), data)
            base, where = session.tasks_path.resolve().parent, f"{session.tasks_path}: task '{task.name}'"
        else:
            taken = task_names(session)
            task = data_task(data, parse_overrides(assignments), tuple(session.pm.settings().values()), taken)
            data, base, where = task.data, Path.cwd(), f"--data {data}"
            why = (f"; '-data' added: {session.tasks_path} has a task '{task.name[:-5]}', whose runs these are not"
                   if task.name.endswith("-data") and task.name[:-5] in taken else "")
            progress.note(f"Task '{task.name}': dataset {task.dataset}, model {task.model} (change with --set){why}")
            unused = defaults_not_used(session, assignments)
            if unused:
                progress.note(unused)
        outcome = run_task(session.pm, task, data=data, output=output, base=base, progress=progress, strict=strict,
                           where=where)
    if as_json and distributed.is_main():  # one document for a data-parallel run too
        emit("run", {"run_dir": str(outcome.run_dir) if outcome.run_dir else None, "status": outcome.status,
                     "metrics": outcome.metrics or None})
    if outcome.status == "interrupted":
        sys.exit(130)
    if outcome.metrics and not as_json:  # empty on the other processes of a data-parallel run
        click.echo(format_metrics(outcome.metrics))
        click.echo(f"Saved to {outcome.run_dir}")


def defaults_not_used(session, assignments) -> str | None:
    """A --data run starts from tk's defaults, not from the [defaults] of the user's tasks.toml: say so where that
    table sets keys the run does not get from --set (a learning rate there, silently unused, looks like a bug)."""
    if not session.has_tasks_file() or session.tasks_path.resolve() == SHIPPED_TASKS:
        return None
    given = parse_overrides(assignments)
    unused = [key for key in session.config.defaults if key not in given]
    if not unused:
        return None
    return (f"{session.tasks_path}'s [defaults] ({', '.join(unused)}) do not apply to a --data run, which starts "
            "from tk's defaults: pass them with --set, or add a task for the file to tasks.toml.")


@cli.command(name="list")
@click.option("--runs", "show_runs", is_flag=True, help="List run folders and their status instead.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@json_option
@pass_session
def list_command(session, show_runs, output, as_json):
    """Show tasks, datasets, models and plugins, and where each comes from."""
    if show_runs:
        print_runs(output, as_json)
    elif as_json:
        emit("list", registries(session))
    else:
        print_registries(session)


def print_runs(output: Path, as_json: bool) -> None:
    rows = [(path, status, intact(path, shown_status(path, status))) for path, status in list_runs(output)]
    if as_json:
        emit("list-runs", {"folder": str(output),
                           "runs": [{"path": str(path), "status": status, "shown": shown} for path, status, shown in rows]})
        return
    for path, _, shown in rows:
        click.echo(f"{shown:<12} {path}")
    if not rows:
        click.echo(f"No runs in {output}" + ("." if output.is_dir() else " (no such folder: a typo in --output?)."))


def intact(path: Path, shown: str) -> str:
    """A complete run whose files are missing, cut or grown since it was saved is shown 'damaged' (the run
    loader's size check: cheap enough for a folder of runs; tk predict and the others hash every file)."""
    if shown != "complete":
        return shown
    try:
        open_run(path, need=(), verify="sizes")
    except TkError:
        return "damaged"
    return shown


def registries(session) -> dict:
    """What tk list shows, as data (tk list --json)."""
    pm = session.pm
    return {
        "tasks_file": str(session.tasks_path),
        "tasks": [{**task.describe(), "engine_resolved": auto_engine_name(pm, task) if task.engine == "auto"
                   else task.engine} for _, task in sorted(session.config.tasks.items())],
        "datasets": [{"name": name, "labels": list(info.labels), "plugin": info.plugin,
                      "description": info.description, "hub_id": info.hub_id}
                     for name, info in sorted(pm.datasets().items())],
        "models": [{"name": name, "source": info.source, "plugin": info.plugin, "description": info.description,
                    "offline": info.offline} for name, info in sorted(pm.models().items())],
        "engines": [{"name": name, "plugin": info.plugin, "description": info.description,
                     "auto_priority": info.auto_priority}
                    for name, info in sorted(pm.engines().items(), key=lambda item: -item[1].auto_priority)],
        "settings": [{"name": name, "types": [t.__name__ for t in setting.types], "default": setting.default,
                      "choices": list(setting.choices), "plugin": setting.plugin, "help": setting.help}
                     for name, setting in sorted(pm.settings().items())],
        "plugins": [{"name": plugin.name, "origin": plugin.origin, "hooks": list(plugin.hooks)}
                    for plugin in pm.plugins()],
    }


def print_registries(session) -> None:
    pm = session.pm
    click.echo(f"Tasks ({session.tasks_path}):")
    for name, task in sorted(session.config.tasks.items()):
        engine = task.engine if task.engine != "auto" else f"auto: {auto_engine_name(pm, task)}"
        epochs = f"{task.epochs} epoch" + ("" if task.epochs == 1 else "s")
        windows = (f", long texts as windows (stride {task.window_stride}, pooling {task.pooling})"
                   if task.reads_in_windows else "")
        click.echo(f"  {name:<26} {task.dataset} + {task.model}, max_length {task.max_length}{windows}, {epochs}, "
                   f"engine {engine}")
    click.echo("Datasets:")
    for name, info in sorted(pm.datasets().items()):
        where = f" (Hub: {info.hub_id})" if info.hub_id else ""
        labels = ", ".join(info.labels) or "(from the data)"
        click.echo(f"  {name:<26} {labels:<24} plugin {info.plugin}: {info.description}{where}")
    click.echo("Models:")
    for name, info in sorted(pm.models().items()):
        click.echo(f"  {name:<26} {info.source:<32} plugin {info.plugin}: {info.description}")
    click.echo("Engines:")
    for name, info in sorted(pm.engines().items(), key=lambda item: -item[1].auto_priority):
        click.echo(f"  {name:<26} plugin {info.plugin}: {info.description}")
    click.echo("Task keys from plugins (every core key: docs/tasks-toml.md):")
    for name, setting in sorted(pm.settings().items()):
        click.echo(f"  {name:<26} default {setting.default!r:<8} plugin {setting.plugin}: {setting.help}")
    click.echo("Plugins:")
    for plugin in pm.plugins():
        click.echo(f"  {plugin.name:<26} {plugin.origin}")
        click.echo(f"  {'':<26} hooks: {', '.join(plugin.hooks)}")



@cli.command()
@click.argument("task_name", required=False)
@click.option("--grid", "grid_specs", multiple=True, metavar="KEY=V1,V2", help="Values to try (repeatable).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override for every run.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat each setting with N seeds and report mean ± sd.")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder; with no TASK, sweep "
              "over your file (as tk run --data FILE does).")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@json_option
@pass_session
def sweep(session, task_name, grid_specs, assignments, seeds, data, output, as_json):
    """Run every combination of --grid values for TASK (or --data FILE) and compare them."""
    if not task_name and not data:
        raise click.UsageError("Name a task (tk list shows them), or pass --data FILE to sweep over your own file.")
    base = session.tasks_path.resolve().parent
    grid, overrides = parse_grid(grid_specs), parse_overrides(assignments)
    refuse_keys_in_both(grid, overrides)
    refuse_data_outside_grid(data, grid)
    where = None
    if task_name:
        task = named_task(session, task_name, overrides, data)
    else:
        task = data_task(data, overrides, tuple(session.pm.settings().values()), task_names(session))
        data, base, where = task.data, Path.cwd(), f"--data {task.data}"  # as tk run --data FILE: no task to name
    try:
        sweep_dir, record = run_sweep(session.pm, task, grid, seeds, data=data, output=output,
                                      base=base, progress=Progress(click.echo), where=where)
    except SweepInterrupted as stopped:
        click.echo(str(stopped), err=True)
        sys.exit(130)
    if as_json:
        emit("sweep", {"sweep_dir": str(sweep_dir), **record})
        return
    click.echo("")
    click.echo("\n".join(record["table"] + record["warnings"]))


@cli.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--allow-incomplete", is_flag=True,
              help="Compare runs that are not complete or whose saved files changed since tk run saved them "
                   "(experts only): each is marked NOT A COMPLETE RUN.")
@click.option("--data", metavar="PATH", help="Score every run on this file (all its rows, as tk evaluate --data "
              "does) and compare them there, row by row, in place of their own test splits.")
@click.option("--text-column", metavar="NAME", help="With --data: the column holding the texts (default: found by "
              "name).")
@click.option("--label-column", metavar="NAME", help="With --data: the column holding the labels (default: found by "
              "name).")
@json_option
@pass_session
def compare(session, run_dirs, allow_incomplete, data, text_column, label_column, as_json):
    """Compare finished runs (or tk cv folders, fold by fold): which differences are real and which are noise."""
    columns = {key: name for key, name in (("text_column", text_column), ("label_column", label_column)) if name}
    if columns and data is None:
        raise click.UsageError("--text-column and --label-column name the columns of --data FILE: add --data FILE.")
    if data is not None and not Path(data).exists():
        raise TkError(f"--data: {data} does not exist. Check the path, or leave --data out to compare the runs on "
                      "their own test splits.")
    if data is not None and any(is_cv(path) for path in run_dirs):
        raise TkError("--data scores each run's model on the file; a tk cv folder has no single model. Compare "
                      "tk cv folders without --data (fold by fold), or pass runs trained with tk run.")
    if any(is_cv(path) for path in run_dirs):
        found = compare_cv(list(run_dirs))
        if as_json:
            emit("compare", {"cv": found})
        else:
            click.echo(format_cv_comparison(found))
        return

    if data is None:
        runs = [summarise(path, allow_incomplete=allow_incomplete) for path in expand_runs(list(run_dirs))]
        scored_on = []
    else:
        from toolkit.runs.compare_data import runs_on_data  # the models are loaded only for --data

        runs, scored_on = runs_on_data(session.pm, expand_runs(list(run_dirs)), data, columns, allow_incomplete)
    rows = run_rows(runs)
    baselines = linear_baseline_notes(runs, data)
    notes = scored_on + data_notes(runs) + comparison_notes(rows) + baselines
    warned = [line for line in group_warnings({run.label: [run] for run in runs if run.path is not None})
              if classical.VERDICT_START not in line]  # as tk sweep prints them; the baselines have their lines
    if warned and data is not None:
        warned.insert(0, f"What each run's own report warns of, on its own test rows (not on {data}):")
    if as_json:
        emit("compare", {"significance": SIGNIFICANCE, "runs": rows, "notes": notes, "warnings": warned,
                         "scored_on": "test splits" if data is None else str(data)})
    else:
        click.echo(format_run_rows(rows, "test" if data is None else "on file"))
        extra = format_settings_and_notes(rows, notes + warned)
        if extra:
            click.echo(extra)
