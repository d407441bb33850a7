"""The `tk` command line: parse, call the engine, print. TkError becomes a Click error here only."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import click

from toolkit.config import (
    Config,
    find_tasks_file,
    hoist_tasks_option,
    local_plugins,
    parse_assignment,
    parse_config,
    read_toml,
    with_overrides,
)
from toolkit.data.choose import command_target
from toolkit.errors import TkError, user_message
from toolkit.hub import HubUnreachable, offline_advice
from toolkit.plugins import PluginManager


class Session:
    """What every command shares: the tasks file and the plugin manager, loaded on first use.

    The plugins come first: the local ones named in tasks.toml declare task
    keys that its tasks may use.
    """

    def __init__(self, tasks_file: str | None) -> None:
        self.tasks_path = find_tasks_file(tasks_file)

    @cached_property
    def raw(self) -> dict:
        return read_toml(self.tasks_path)

    @cached_property
    def pm(self) -> PluginManager:
        local = local_plugins(self.raw, self.tasks_path) if self.tasks_path.exists() else ()
        return PluginManager().load(local, self.tasks_path.resolve().parent)

    @cached_property
    def config(self) -> Config:
        return parse_config(self.raw, self.tasks_path, self.pm.settings())


pass_session = click.make_pass_decorator(Session)


class TkGroup(click.Group):
    """Turns TkError into a short message and exit code 1, in one place; --tasks may follow the command."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_tasks_option(list(args)))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HubUnreachable as error:
            raise click.ClickException(user_message(error) + offline_advice(ctx.obj.pm.models())) from None
        except TkError as error:
            raise click.ClickException(user_message(error)) from None


@click.group(cls=TkGroup)
@click.option("--tasks", "tasks_file", metavar="PATH", help="The tasks file (default: $TK_TASKS or ./tasks.toml).")
@click.version_option(package_name="tk-toolkit")
@click.pass_context
def cli(ctx, tasks_file):
    """tk: fine-tune and evaluate BERT-family text classifiers from a tasks.toml file."""
    if not isinstance(ctx.obj, Session):  # main() passes the session it loaded plugin commands with
        ctx.obj = Session(tasks_file)
    _quiet_libraries()
    file_size_limit_as_error()


QUIET_LIBRARIES = {
    "TOKENIZERS_PARALLELISM": "true",  # the Rust tokenizers use every core
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # tk draws its own progress bar
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


def _quiet_libraries() -> None:
    """Set before the libraries are imported (lazily, by the commands), so `tk --help` stays fast."""
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)


def file_size_limit_as_error() -> None:
    """Past ``ulimit -f`` the kernel sends SIGXFSZ, which kills tk mid-write with no message. Ignored,
    the write fails with EFBIG instead, and tk says which file and what to do (folders.saving_error)."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def parse_overrides(assignments: tuple[str, ...]) -> dict:
    return dict(parse_assignment(text) for text in assignments)


@cli.command()
@click.argument("task_name", required=False)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a task setting (repeatable).")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder instead of the Hub; "
              "with no TASK, train on this file (CSV, TSV, JSONL, Parquet, or a folder) with the files dataset.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder that receives the run folder.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), metavar="RUN",
              help="Finish an interrupted run from its last epoch checkpoint.")
@click.option("--resume-inexact", "inexact", is_flag=True,
              help="With --resume: continue from a checkpoint that lacks optimizer, scheduler or random state "
                   "(the run is marked not exactly reproducible).")
@click.option("--strict", is_flag=True, help="Stop when a data check warns.")
@pass_session
@click.pass_context
def run(ctx, session, task_name, assignments, data, output, resume_dir, inexact, strict):
    """Fine-tune and evaluate TASK from tasks.toml, or your file: tk run --data FILE [--set label_column=NAME]."""
    from toolkit.evaluation.report import format_metrics
    from toolkit.runs.pipeline import resume_task, run_task
    from toolkit.runs.resume import refuse_options
    from toolkit.training.progress import Progress

    progress = Progress(click.echo)
    if resume_dir:
        given = {"task_name": "a task name", "assignments": "--set", "data": "--data", "output": "--output",
                 "strict": "--strict"}
        refuse_options([label for name, label in given.items() if ctx.get_parameter_source(name).name == "COMMANDLINE"])
        outcome = resume_task(session.pm, resume_dir, progress, inexact=inexact)
    else:
        if inexact:
            raise click.UsageError("--resume-inexact goes with --resume RUN.")
        if not task_name and not data:
            raise click.UsageError("Name a task (tk list shows them), pass --data FILE to train on your own "
                                   "file, or pass --resume RUN.")
        if task_name:
            task = with_overrides(session.config.task(task_name), parse_overrides(assignments))
            base, where = session.tasks_path.resolve().parent, f"{session.tasks_path}: task '{task.name}'"
        else:
            from toolkit.data.choose import data_task

            task = data_task(data, parse_overrides(assignments), tuple(session.pm.settings().values()))
            data, base, where = task.data, Path.cwd(), f"--data {data}"
            progress.note(f"Task '{task.name}': dataset {task.dataset}, model {task.model} (change with --set)")
        outcome = run_task(session.pm, task, data=data, output=output, base=base, progress=progress, strict=strict,
                           where=where)
    if outcome.status == "interrupted":
        sys.exit(130)
    if outcome.metrics:  # empty on the other processes of a data-parallel run
        click.echo(format_metrics(outcome.metrics))
        click.echo(f"Saved to {outcome.run_dir}")


@cli.command(name="list")
@click.option("--runs", "show_runs", is_flag=True, help="List run folders and their status instead.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@pass_session
def list_command(session, show_runs, output):
    """Show tasks, datasets, models and plugins, and where each comes from."""
    if show_runs:
        from toolkit.runs.folders import list_runs
        from toolkit.runs.liveness import shown_status

        rows = list_runs(output)
        for path, status in rows:
            click.echo(f"{shown_status(path, status):<12} {path}")
        if not rows:
            click.echo(f"No runs in {output}.")
        return
    from toolkit.training.engines import auto_engine_name

    pm = session.pm
    click.echo(f"Tasks ({session.tasks_path}):")
    for name, task in sorted(session.config.tasks.items()):
        engine = task.engine if task.engine != "auto" else f"auto: {auto_engine_name(pm, task)}"
        click.echo(f"  {name:<26} {task.dataset} + {task.model}, max_length {task.max_length}, {task.epochs} epochs, "
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


@cli.command(name="analyze-lengths")
@click.argument("dataset_name", metavar="[TASK|DATASET]", required=False)
@click.option("--model", "model_names", multiple=True, metavar="NAME",
              help="Model whose tokenizer to use (repeat to compare). Default: bert-uncased.")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder.")
@click.option("--split", default="train", show_default=True)
@click.option("--sample", type=click.IntRange(min=1), help="Measure a seeded random sample of N texts.")
@click.option("--coverage", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="Share of texts the recommended max_length must hold whole.")
@click.option("--histogram", type=click.Path(path_type=Path), help="PNG path (default: lengths-DATASET.png).")
@click.option("--stride", type=click.IntRange(min=0), help="Window overlap of the chunks rows (default: max_length // 4).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_session
def analyze_lengths(session, dataset_name, model_names, data, split, sample, coverage, histogram, stride, as_json):
    """Token-length statistics of a task's or a dataset's data (or --data FILE) and a recommended max_length."""
    from toolkit.data.lengths import analyze, format_report, plot_histogram
    from toolkit.data.loading import load_named
    from toolkit.hub import hub_reachable

    pm = session.pm
    dataset_name, task_data, base, task = command_target(session, dataset_name, data)
    model_names = model_names or ((task.model,) if task else ())
    models = [pm.model(name, base) for name in (model_names or ("bert-uncased",))]
    if not model_names and not hub_reachable():
        click.echo("Note: the default tokenizer is bert-base-uncased from the Hub, which cannot be reached; "
                   "pass a model that needs no network" + offline_advice(pm.models()), err=True)
    labelled = load_named(pm, dataset_name, data, task_data, base, task)
    dataset = labelled.dataset
    rows = labelled.split(split)
    if sample and sample < len(rows):
        rows = rows.shuffle(seed=0).select(range(sample))
    results = [analyze(pm, model, rows, coverage, stride) for model in models]
    stats = [r[0] for r in results]
    histogram = histogram or Path(f"lengths-{dataset.name}.png")
    plot_histogram(histogram, {m.name: r[1] for m, r in zip(models, results)}, stats,
                   f"{dataset.name} {split}: tokens per text")
    if as_json:
        click.echo(json.dumps({s.model: asdict(s) for s in stats}, indent=2))
        return
    click.echo(f"{dataset.name} ({split} split, {labelled.source.describe()})")
    click.echo(format_report(stats))
    click.echo(f"Histogram: {histogram}")


@cli.command()
@click.argument("dataset_name", metavar="[TASK|DATASET]", required=False)
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--strict", is_flag=True, help="Exit with an error when any check warns.")
@pass_session
def check(session, dataset_name, data, as_json, strict):
    """Check a task's data, a DATASET, or --data FILE: duplicates, train/test leakage, label conflicts, balance,
    HTML; empty texts are left out."""
    from toolkit.data.checks import check_splits, format_report
    from toolkit.data.loading import load_named

    dataset_name, task_data, base, task = command_target(session, dataset_name, data)
    labelled = load_named(session.pm, dataset_name, data, task_data, base, task)
    report = check_splits(labelled.splits, labelled.dataset.name, labelled.dataset.labels)
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "source": labelled.source.describe(), "notes": labelled.notes},
                              indent=2))
    else:
        click.echo(f"Source: {labelled.source.describe()}")
        for note in labelled.notes:
            click.echo(note)
        click.echo(format_report(report))
    if strict and report.warnings:
        raise TkError(f"{len(report.warnings)} data check warnings (--strict).")


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--file", "text_file", type=click.File(encoding="utf-8"), help="One text per line ('-' for stdin).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def predict(run_dir, texts, text_file, as_json):
    """Label TEXTS with the model saved in RUN."""
    from toolkit.runs.saved import load_run

    texts = list(texts) + (read_lines(text_file) if text_file else [])
    if not texts:
        raise click.UsageError("Give texts as arguments or --file F.")
    saved = load_run(run_dir)
    probabilities = saved.probabilities(texts)
    rows = [{"text": text, "label": saved.labels[int(p.argmax())],
             "probabilities": {name: round(float(v), 4) for name, v in zip(saved.labels, p)}}
            for text, p in zip(texts, probabilities)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:  # texts and label names come from files: no terminal control codes reach the screen
        top = sorted(row["probabilities"].items(), key=lambda item: -item[1])[:TOP_CLASSES]
        shown = row["probabilities"].items() if len(row["probabilities"]) <= TOP_CLASSES + 1 else top
        scores = "  ".join(f"{printable(name)} {value:.3f}" for name, value in shown)
        click.echo(f"{printable(row['label']):<12} {scores}  {printable(row['text'])[:80]}")


TOP_CLASSES = 3  # with more classes, predict shows the most likely three (--json: all)


def read_lines(handle) -> list[str]:
    """Non-blank lines of a --file; a binary or non-UTF-8 file is a one-line error."""
    try:
        text = handle.read()
    except UnicodeDecodeError as error:
        raise TkError(f"--file {handle.name}: not UTF-8 text ({error.reason} at byte {error.start}); "
                      "pass a text file with one text per line.") from None
    if "\x00" in text:
        raise TkError(f"--file {handle.name}: a binary file (it holds NUL bytes); pass a text file with one "
                      "text per line.")
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


TERMINAL_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clears
                              r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
                              r"|\x1b[ -/]*[0-~]?")  # any other ESC sequence
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # C0, C1, bidi overrides


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: ESC sequences and control characters removed, tabs and
    line breaks shown as spaces."""
    return CONTROLS.sub("", TERMINAL_ESCAPES.sub("", str(text)).replace("\t", " ").replace("\n", " "))


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--data", metavar="PATH", help="Evaluate on this file (all its rows) or folder (default: the run's "
              "data source, recorded at run time).")
@click.option("--split", help="The split to score (default: test; for one file given with --data, all of it; "
              "for a run's data without a test split, the rows the run held out).")
@pass_session
def evaluate(session, run_dir, data, split):
    """Evaluate the model saved in RUN on a whole dataset split."""
    from toolkit.evaluation.report import format_metrics
    from toolkit.runs.evaluate import evaluate_run
    from toolkit.runs.folders import write_json
    from toolkit.runs.saved import load_run

    metrics = evaluate_run(session.pm, load_run(run_dir), data, split)
    for note in metrics["notes"]:
        click.echo(note)
    click.echo(f"Data: {metrics['data_source']}, split: {metrics['split_description']}")
    click.echo(format_metrics(metrics))
    path = run_dir / "evaluations" / f"{metrics['split']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    try:
        path.parent.mkdir(exist_ok=True)
        write_json(path, metrics)
    except (OSError, TkError) as error:  # e.g. a read-only run folder: the metrics above still stand
        cause = error if isinstance(error, OSError) else error.__context__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(error)
        raise TkError(f"The metrics above are not saved: cannot write {path.parent} ({reason}). "
                      "Copy the run folder somewhere writable to keep them.") from None
    click.echo(f"Saved to {path}")


@cli.command()
@click.argument("task_name")
@click.option("--grid", "grid_specs", multiple=True, metavar="KEY=V1,V2", help="Values to try (repeatable).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override for every run.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat each setting with N seeds and report mean ± sd.")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@pass_session
def sweep(session, task_name, grid_specs, assignments, seeds, data, output):
    """Run every combination of --grid values for TASK and compare them."""
    from toolkit.runs.sweep import parse_grid, run_sweep
    from toolkit.training.progress import Progress

    task = with_overrides(session.config.task(task_name), parse_overrides(assignments))
    table = run_sweep(session.pm, task, parse_grid(grid_specs), seeds, data=data, output=output,
                      base=session.tasks_path.resolve().parent, progress=Progress(click.echo))
    click.echo("")
    click.echo(table)


@cli.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True, type=click.Path(path_type=Path))
def compare(run_dirs):
    """Compare finished runs: which differences are real and which are noise."""
    from toolkit.runs.compare import compare_runs, summarise

    click.echo(compare_runs([summarise(path) for path in run_dirs]))


@cli.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), metavar="PATH",
              help="Where to write the page (default: RUN/report.html for one run, ./report.html for several).")
def report(run_dirs, output):
    """Write report.html for RUN, or one page comparing several runs (a sweep folder counts as its runs)."""
    from toolkit.runs.folders import write_text
    from toolkit.runs.report_page import expand_runs, render_comparison, write_report

    runs = expand_runs(list(run_dirs))
    if len(runs) == 1:
        path = write_report(runs[0], output)
    else:
        path = output or Path("report.html")
        write_text(path, render_comparison(runs))
    click.echo(f"Wrote {path}")


def main() -> None:
    """Entry point: plugin commands are added here, at start-up, never at import."""
    session = Session(_tasks_option(sys.argv[1:]))
    try:
        session.pm.hook.tk_register_commands(cli=cli)
    except TkError:
        pass  # the command itself will report the problem with the tasks file
    cli(prog_name="tk", obj=session)


def _tasks_option(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--tasks" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--tasks="):
            return arg.split("=", 1)[1]
    return None
