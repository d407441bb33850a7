"""tk tune: a hyperparameter search that prunes, resumes, shares a study between machines, and tests its
best configurations against the default before it says they are better."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolkit.cli.group import cli, parse_overrides, pass_session
from toolkit.cli.json_output import emit, json_option
from toolkit.data.choose import data_task, named_task, task_names
from toolkit.errors import TkError
from toolkit.runs.tune import TuneRequest, run_tune
from toolkit.runs.tune_final import describe
from toolkit.runs.tune_report import last_epoch
from toolkit.runs.tune_space import data_keys, parse_space
from toolkit.training.progress import Progress


@cli.command()
@click.argument("task_name", required=False)
@click.option("--trials", type=int, default=20, show_default=True,
              help="Trials in the study, all workers together; running the command again continues it up to N.")
@click.option("--space", "space_specs", multiple=True, metavar="KEY=LOW..HIGH|A,B",
              help="Search KEY over a range or choices instead of its default (repeatable); one value pins it.")
@click.option("--try", "tries", multiple=True, metavar="KEY=V[,KEY=V]",
              help="A configuration to train before the sampler's (repeatable), after the task's own.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a task setting for every trial; a key set here is not searched.")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder; with no TASK, tune on "
              "your file (as tk run --data FILE does).")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder that receives the tune folder (tune-TASK).")
@click.option("--storage", metavar="URL", help="Optuna storage of the study, shared by workers, e.g. "
              "postgresql://user:password@host/db (default: SQLite in the tune folder).")
@click.option("--study", "study_name", metavar="NAME", help="Study name in the storage (default: tk-tune-TASK).")
@click.option("--pruner", type=click.Choice(["median", "halving", "none"]), default="median", show_default=True,
              help="median: stop a trial worse than the complete trials' median at an epoch; halving: "
                   "successive halving over epochs.")
@click.option("--prune-after", type=click.IntRange(min=1), default=1, show_default=True, metavar="EPOCHS",
              help="The first epoch at whose end a trial may be pruned.")
@click.option("--top", type=click.IntRange(min=0), default=3, show_default=True,
              help="Best configurations re-run over seeds and compared with the default at the end (0: none).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds of each final run of a configuration (seeds the search did not use).")
@json_option
@pass_session
def tune(session, task_name, trials, space_specs, tries, assignments, data, output, storage, study_name, pruner,
         prune_after, top, seeds, as_json):
    """Search TASK's hyperparameters (or --data FILE's), then test the best against the default."""
    if trials < 1:
        raise TkError(f"--trials {trials}: a study needs at least one trial, e.g. --trials 20.")
    if not task_name and not data:
        raise click.UsageError("Name a task (tk list shows them), or pass --data FILE to tune on your own file.")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise TkError("tk tune needs Optuna, which is not installed here: pip install 'tk-toolkit[tune]'") from None
    overrides = parse_overrides(assignments)
    base, where = session.tasks_path.resolve().parent, None
    if task_name:
        task = named_task(session, task_name, overrides, data)
    else:
        task = data_task(data, overrides, tuple(session.pm.settings().values()), task_names(session))
        data, base, where = task.data, Path.cwd(), f"--data {data}"
    space = parse_space(space_specs, task, data_keys(session.pm, task))
    request = TuneRequest(task=task, tasks_path=session.tasks_path, overrides=space,
                          fixed=frozenset(overrides), tries=tries, trials=trials, top=top, seeds=seeds, data=data,
                          base=base, output=output, storage=storage, study=study_name,
                          pruner={"kind": pruner, "startup": 2, "after": prune_after}, where=where)
    progress = Progress(click.echo)  # with --json, click.echo writes to stderr (json_output)
    try:
        tune_dir, record = run_tune(session.pm, request, progress)
    except KeyboardInterrupt:
        click.echo("Interrupted: the finished trials are kept in the study. Run the same command again to go on.",
                   err=True)
        sys.exit(130)
    if as_json:
        emit("tune", {"tune_dir": str(tune_dir), **record})
        return
    click.echo("")
    click.echo(format_trials(record))
    counts = ", ".join(f"{n} {state}" for state, n in record["counts"].items() if n)
    click.echo(f"Trials: {counts or 'none'}.")
    best = record["best_trial"]
    if best:
        values = describe(best["params"])
        click.echo(f"Best trial on validation: {best['number']} ({record['metric']} {best['value']:.4f}): {values}")
        for note in record.get("edges", []):
            click.echo(note)
    if record.get("final"):
        click.echo("\n".join(record["final"]["table"]))
    if record["summary"]:
        click.echo("\n".join(record["summary"]))
    click.echo(f"Tune folder: {tune_dir} (report.html, tune.json)")


def format_trials(record: dict) -> str:
    """One line per trial: its number, state (pruned after which epoch; a failed one's error), value, values."""
    lines = [f"{'trial':>5}  {'state':<22}  {'val ' + record['metric']:>10}  values"]
    for trial in record["trials"]:
        state = trial["state"] + (" (default)" if trial.get("default") else "")
        if trial["state"] == "pruned" and trial["epochs"]:
            state += f" after epoch {max(map(int, trial['epochs']))}"
        value = f"{trial['value']:.4f}" if trial["state"] == "complete" else ""
        if trial["state"] == "pruned" and trial["epochs"]:  # its value at the epoch it was stopped after
            value = f"{last_epoch(trial):.4f}"
        line = f"{trial['number']:>5}  {state:<22}  {value:>10}  {describe(trial['params'])}"
        lines.append(line + (f"  ({trial['error']})" if trial.get("error") else ""))
    return "\n".join(lines)
