"""tk check and tk analyze-lengths: look at the data before training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import click

from toolkit.cli.group import cli, parse_overrides, pass_session
from toolkit.cli.json_output import emit, json_option
from toolkit.cli.params import FiniteRange
from toolkit.data import findings, lengths
from toolkit.data.checks import check_as_run
from toolkit.data.choose import command_target, dataset_task
from toolkit.data.findings import plural
from toolkit.data.loading import load_named
from toolkit.data.tokens import count_windows, unused_window_keys, window_stride
from toolkit.errors import TkError
from toolkit.hub import HubUnreachable, hub_reachable, offline_advice
from toolkit.runs.folders import check_task_name
from toolkit.runs.prepared import registered
from toolkit.runs.user_files import check_output_file
from toolkit.training.engines import resolve_engine


@cli.command(name="analyze-lengths")
@click.argument("dataset_name", metavar="[TASK|DATASET]", required=False)
@click.option("--model", "model_names", multiple=True, metavar="NAME",
              help="Model whose tokenizer to use (repeat to compare). Default: the task's model (minilm for "
                   "--data FILE); bert-uncased for a dataset named alone.")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a task setting (repeatable), as tk run does: e.g. --set text_column=body.")
@click.option("--split", default="train", show_default=True)
@click.option("--sample", type=click.IntRange(min=1), help="Measure a seeded random sample of N texts.")
@click.option("--coverage", type=FiniteRange(0.5, 1.0), default=0.95, show_default=True,
              help="Share of texts the recommended max_length must hold whole.")
@click.option("--histogram", type=click.Path(path_type=Path),
              help="Write the histogram PNG here (default: lengths-NAME.png in the current folder, NAME the "
                   "task, the file's or the dataset's, -SPLIT added for a split other than train; with --json, "
                   "none unless this is given).")
@click.option("--stride", type=click.IntRange(min=0),
              help="Window overlap of the chunks rows (default: the task's stride, else max_length // 4; rows whose "
                   "max_length it does not fit are left out).")
@json_option
@pass_session
def analyze_lengths(session, dataset_name, model_names, data, assignments, split, sample, coverage, histogram, stride,
                    as_json):
    """Token-length statistics of a task's or a dataset's data (or --data FILE) and a recommended max_length."""
    pm = session.pm
    dataset_name, task_data, base, task = command_target(session, dataset_name, data, parse_overrides(assignments))
    if task is not None and not model_names:  # the task's model: an unknown name names the task and the key
        models, model_names = [registered(pm, task, base=base)[1]], (task.model,)
    else:
        models = [pm.model(name, base) for name in (model_names or ("bert-uncased",))]
    if not model_names and not hub_reachable():
        click.echo("Note: the default tokenizer is bert-base-uncased from the Hub, which cannot be reached; "
                   "pass a model that needs no network" + offline_advice(pm.models()), err=True)
    labelled = load_named(pm, dataset_name, data, task_data, base, task, classes=False)  # texts are what it reads
    if histogram:  # before the measuring: a histogram path that would replace the data is refused at once
        check_output_file(histogram, "--histogram", "png", data=[labelled.source.path])
    dataset = labelled.dataset
    rows = labelled.split(split)
    if sample and sample < len(rows):
        rows = rows.shuffle(seed=0).select(range(sample))
    if stride is None and task is not None:
        stride = task.stride  # the task's own (tasks.toml or --set); None: max_length // 4 per row
    results = [lengths.analyze(pm, model, rows, coverage, stride, task) for model in models]
    # what tk run would say about the task's windows, per model: once, when models say the same
    warnings = list(dict.fromkeys(warning for measured in results for warning in measured.warnings))
    test_data = task.settings.get("test_data") if task is not None and split == "test" else None
    source = f"{test_data} (the task's test_data)" if test_data else labelled.source.describe()
    stats = [measured.stats for measured in results]
    if not as_json:  # a script gets the numbers; a file in its folder only when it asks (--histogram)
        suffix = "" if split == "train" else f"-{split}"  # another split's histogram beside the training one
        if not histogram:
            histogram = Path(f"lengths-{task.name if task else dataset.name}{suffix}.png")
            check_output_file(histogram, "--histogram (default)", "png")
    if histogram:
        try:
            lengths.plot_histogram(histogram, {m.name: measured.lengths for m, measured in zip(models, results)},
                                   stats, f"{dataset.name} {split}: tokens per text")
        except TkError as error:  # its advice names tk run's --output; this command's option is --histogram
            cause = error.__context__
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(error)
            raise TkError(f"Cannot write the histogram {histogram} ({reason}). Pass --histogram PATH in a folder "
                          "you can write.") from None
    if as_json:
        for warning in warnings:  # on stderr (json_output)
            click.echo(warning)
        emit("analyze-lengths", {"dataset": dataset.name, "split": split, "source": source,
                                 "sample": sample, "histogram": str(histogram) if histogram else None,
                                 "models": {s.model: asdict(s) for s in stats}, "warnings": warnings})
        return
    click.echo(f"{dataset.name} ({split} split, {source})")
    click.echo(lengths.format_report(stats))
    for warning in warnings:
        click.echo(warning)
    click.echo(f"Histogram: {histogram}")


@cli.command()
@click.argument("dataset_name", metavar="[TASK|DATASET]", required=False)
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a task setting (repeatable), as tk run does: e.g. --set label_column=queue.")
@click.option("--strict", is_flag=True, help="Exit with an error when any check warns (with --json: after the JSON).")
@json_option
@pass_session
def check(session, dataset_name, data, assignments, as_json, strict):
    """Check a task's data, a DATASET, or --data FILE: duplicates, train/test leakage, label conflicts, balance,
    HTML, and rare or absent classes in the splits tk run would make; empty texts are left out. Exits with an
    error where tk run would stop on this data."""
    dataset_name, task_data, base, task = command_target(session, dataset_name, data, parse_overrides(assignments))
    if task is not None:
        check_task_name(task.name)  # tk run's first check: the name becomes a run folder's
        registered(session.pm, task, base=base)  # a model or dataset name tk run would not know
        resolve_engine(session.pm, task)  # an engine this machine cannot run (cuda-graphs without a GPU)
    windows_of = check_tokenizer_settings(session.pm, task, base) if task is not None else None
    labelled = load_named(session.pm, dataset_name, data, task_data, base, task)
    splitting = task or dataset_task(dataset_name, {}, tuple(session.pm.settings().values()))  # tk's defaults
    report = check_as_run(labelled.splits, labelled.dataset.name, labelled.dataset.labels, splitting, windows_of)
    click.echo(f"Source: {labelled.source.describe()}")  # with --json, on stderr (json_output)
    for note in labelled.notes:
        click.echo(note)
    if as_json:
        emit("check", {**report.as_dict(), "source": labelled.source.describe(), "notes": labelled.notes})
    else:
        click.echo(findings.format_report(report))
    if report.errors:  # after the report (and the JSON): tk run would stop on this data
        raise TkError(report.errors[0].message)
    if strict and report.warnings:
        raise TkError(f"{len(report.warnings)} data check {plural(len(report.warnings), 'warning')} (--strict).")


def check_tokenizer_settings(pm, task, base) -> Callable[[list[str]], int] | None:
    """max_length (and a chunks task's stride) against the model's tokenizer, as tk run checks them before
    loading any data, with the same errors and warnings. Returns how to count a chunks task's windows of texts
    (its batches are of windows), else None. Offline with a Hub model that is not cached, a note says max_length
    was not checked: tk check works on the data alone, offline included."""
    _, model = registered(pm, task, base=base)
    try:
        tokenizer = pm.first("tk_load_tokenizer", f"model '{model.name}'", model.plugin, model=model)
    except HubUnreachable:
        click.echo(f"Note: max_length = {task.max_length} was not checked against model '{model.name}': its "
                   "tokenizer is not on this machine and the Hub cannot be reached (tk run checks it).")
        note = unused_window_keys(task)
        if note:
            click.echo(note)
        return None
    stride = window_stride(task, tokenizer, model.name)
    for warning in stride.notes:  # with --json, on stderr (json_output)
        click.echo(warning)
    if stride.value is None:
        return None
    return lambda texts: count_windows(texts, tokenizer, task.max_length, stride.value)
