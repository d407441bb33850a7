"""tk cv, tk audit: how far to trust a score and the labels behind it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolkit.cli.group import cli, parse_overrides, pass_session
from toolkit.cli.json_output import emit, json_option
from toolkit.cli.using import existing_run, printable
from toolkit.data.choose import data_task, named_task, task_names
from toolkit.data.findings import plural
from toolkit.data.rows import rows_named
from toolkit.errors import TkError
from toolkit.evaluation.report import cut_text
from toolkit.runs.audit import audit as run_audit
from toolkit.runs.audit import read_audit
from toolkit.runs.corrections import write_corrected
from toolkit.runs.cv import cv_task, resume_cv
from toolkit.runs.cv_summary import baseline_sentences, mean_in_words, metric_labels
from toolkit.runs.report_trust import disagreements_in_words, estimate_in_words, models_in_words
from toolkit.runs.resume import refuse_options
from toolkit.training.progress import Progress


@cli.command()
@click.argument("task_name", required=False)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a task setting (repeatable).")
@click.option("--data", metavar="PATH", help="Read the dataset from this file or folder; with no TASK, "
              "cross-validate on this file with the files dataset (as tk run --data).")
@click.option("--folds", type=click.IntRange(2, None), default=5, show_default=True,
              help="Number of folds: each row is scored once, by the model of the fold that did not train on it.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder that receives the cross-validation folder (TASK-cv-YYYYMMDD-HHMMSS).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), metavar="CV",
              help="Continue an interrupted tk cv at the fold it was in; finished folds are kept.")
@click.option("--strict", is_flag=True, help="Stop when a data check warns.")
@json_option
@pass_session
@click.pass_context
def cv(ctx, session, task_name, assignments, data, folds, output, resume_dir, strict, as_json):
    """Cross-validate TASK (or --data FILE) in K folds: per-fold and pooled out-of-fold metrics, oof.csv."""
    progress = Progress(click.echo)
    if resume_dir:
        given = {"task_name": "a task name", "assignments": "--set", "data": "--data", "output": "--output",
                 "strict": "--strict", "folds": "--folds"}
        refuse_options([label for name, label in given.items() if ctx.get_parameter_source(name).name == "COMMANDLINE"])
        outcome = resume_cv(session.pm, resume_dir, progress)
    else:
        task, data, base, where = task_for(session, task_name, assignments, data, progress)
        outcome = cv_task(session.pm, task, data=data, output=output, base=base, progress=progress, folds=folds,
                          strict=strict, where=where)
    if as_json:
        emit("cv", {"cv_dir": str(outcome.cv_dir) if outcome.cv_dir else None, "status": outcome.status,
                    "summary": outcome.summary or None})
    if outcome.status == "interrupted":
        sys.exit(130)
    if not as_json:
        click.echo(format_cv(outcome.summary))
        click.echo(f"Saved to {outcome.cv_dir} (oof.csv: every row's out-of-fold probabilities; next: "
                   f"tk audit {outcome.cv_dir})")


def task_for(session, task_name, assignments, data, progress):
    """(task, data, base, where) as tk run resolves them: a task of tasks.toml, or --data FILE."""
    if task_name:
        task = named_task(session, task_name, parse_overrides(assignments), data)
        return task, data, session.tasks_path.resolve().parent, f"{session.tasks_path}: task '{task.name}'"
    if not data:
        raise click.UsageError("Name a task (tk list shows them), pass --data FILE, or pass --resume CV.")

    task = data_task(data, parse_overrides(assignments), tuple(session.pm.settings().values()), task_names(session))
    progress.note(f"Task '{task.name}': dataset {task.dataset}, model {task.model} (change with --set)")
    return task, task.data, Path.cwd(), f"--data {data}"


def format_cv(summary: dict) -> str:
    lines = [f"{summary['folds']} folds, {summary['scored']:,} rows scored out of fold "
             f"(per-fold mean [95% corrected t interval across folds] | pooled out-of-fold [95% interval]):"]
    pooled, labels = summary["pooled"], metric_labels(summary)
    width = max([14, *map(len, labels.values())])
    for name, found in summary["mean"].items():
        ci = pooled.get(f"{name}_ci")
        shown = f"{pooled[name]:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "") if name in pooled else "—"
        lines.append(f"  {labels[name]:<{width}} {mean_in_words(found)}  |  {shown}")
    decided = (summary.get("baselines") or {}).get("metric")  # shown per fold beside accuracy, where it is not
    per_fold = ["accuracy", decided] if decided in labels and decided != "accuracy" else list(labels)[:2]
    lines.append("  per fold: " + "; ".join(
        f"{f['fold']}: " + ", ".join(f"{labels[n]} {f[n]:.3f}" for n in per_fold if n in f)
        for f in summary["per_fold"]))
    lines += [f"  {line}" for line in baseline_sentences(summary.get("baselines"))]
    lines += [f"  WARNING {warning}" for warning in summary.get("warnings") or []]
    return "\n".join(lines)


def row_list(text: str) -> set[int]:
    """--keep's row numbers: '752, 1876' -> {752, 1876}."""
    try:
        rows = {int(part) for part in text.replace(" ", "").split(",") if part}
    except ValueError:
        raise click.UsageError(f"--keep {text}: give row numbers as audit.csv lists them, comma-separated "
                               "(--keep 752,1876).") from None
    if not rows:
        raise click.UsageError("--keep names no row: give row numbers as audit.csv lists them (--keep 752,1876).")
    return rows


def kept_out(top: list[dict[str, str]], reviewed: set[int], option: str) -> list[dict[str, str]]:
    """The top rows less those the review kept; a kept row outside them is refused (a typo, or N too small)."""
    numbers = [int(row["row"]) for row in top]
    outside = sorted(reviewed - set(numbers))
    if outside:
        raise TkError(f"--keep {rows_named(outside)}: not among the {len(top):,} rows {option} {len(top):,} takes "
                      "(the first rows of audit.csv). Check the numbers against audit.csv's row column.")
    return [row for row, number in zip(top, numbers) if number not in reviewed]


def check_correction_count(summary: dict, drop: int | None, relabel: int | None) -> None:
    """--drop N that would leave none of the rows audited, or N past the rows audited, is refused, saying how
    many it takes and where to start; N past the rows the audit flagged is allowed with a note (those rows'
    labels are more likely right than wrong)."""
    option, count = ("--drop", drop) if drop else ("--relabel", relabel)
    rows, flagged = summary["rows"], summary["flagged"]
    most = rows - 1 if drop else rows  # dropping every row audited leaves none of them (a cv's: an empty file)
    if count > most:
        if most < 1:  # one row audited
            raise TkError(f"--drop {count:,}: audit.csv lists 1 row, and dropping it would leave none of the rows "
                          "audited; correct it with --relabel 1, or edit the file.")
        takes = f"{option} takes at most {most:,}" + (f" (all {rows:,} would leave none of them)" if drop else "")
        start = (f"the audit flagged {flagged:,} and estimates {summary['estimated_errors']:,} label errors: "
                 f"start with {option} {min(flagged, most):,}" if flagged
                 else "the audit flagged no row, so it suggests no correction")
        raise TkError(f"{option} {count:,}: audit.csv lists {rows:,} {plural(rows, 'row')}, so {takes}; {start}.")
    if count > flagged:
        click.echo(f"Note: {option} {count:,} goes past the {flagged:,} rows the audit flagged; the rows "
                   "after them are more likely labelled right than wrong.", err=True)


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--top", type=click.IntRange(0, None), default=10, show_default=True, help="Rows to print.")
@click.option("--write", "target", type=click.Path(path_type=Path), metavar="FILE",
              help="Write a corrected copy of your data file to FILE (with --drop N or --relabel N); the original "
                   "is never touched.")
@click.option("--drop", type=click.IntRange(1, None), metavar="N", help="With --write: leave out the N rows the audit "
              "ranks first.")
@click.option("--relabel", type=click.IntRange(1, None), metavar="N", help="With --write: give the N rows the audit "
              "ranks first their suggested label (single-label).")
@click.option("--keep", metavar="ROWS", help="With --drop N or --relabel N: rows among those N (numbers as audit.csv "
              "gives them, comma-separated) that your review found labelled right; they are left as they are.")
@json_option
def audit(run_dir, top, target, drop, relabel, keep, as_json):
    """Rank RUN's rows by how likely their label is wrong (a tk cv folder: every training row; a tk run: its test
    split); writes RUN/audit.csv."""
    if (drop or relabel) and not target:
        raise click.UsageError("--drop and --relabel say what --write FILE does: add --write FILE.")
    if target and not (drop or relabel):
        raise click.UsageError("--write FILE needs one of --drop N or --relabel N.")
    if drop and relabel:
        raise click.UsageError("--write FILE takes one of --drop N or --relabel N, not both: drop the rows, or give "
                               "them the suggested label.")
    if keep is not None and not (drop or relabel):
        raise click.UsageError("--keep ROWS leaves rows out of --drop N or --relabel N: add --write FILE and one "
                               "of them.")
    reviewed = row_list(keep) if keep is not None else set()
    summary = run_audit(existing_run(run_dir))
    if summary["warning"]:
        click.echo(f"Note: {summary['warning']}.", err=True)
    written = None
    if target:
        check_correction_count(summary, drop, relabel)
        chosen = kept_out(read_audit(run_dir)[:drop or relabel], reviewed, "--drop" if drop else "--relabel")
        written = write_corrected(run_dir, target, chosen, relabel=bool(relabel), multi_label=summary["multi_label"])
        written["kept_as_reviewed"] = sorted(reviewed)
    if as_json:
        emit("audit", {**summary, "written": written})
        return
    estimate = estimate_in_words(summary, "from half-samples of the rows: errors the models cannot see are not in it")
    click.echo(f"Audited {summary['rows']:,} rows ({summary['audited']}). Estimated label errors: {estimate}"
               f"; flagged: {summary['flagged']:,}."
               + (f" {summary['duplicate_conflicts']:,} rows share a text with a differently labelled row "
                  "(flagged where the model's answer is not their label)." if summary["duplicate_conflicts"] else ""))
    click.echo(models_in_words(summary))
    if summary.get("model_disagreements") is not None:
        click.echo(disagreements_in_words(summary))
    for entry in summary["top"][:top]:
        label, suggested = (cut_text(printable(entry[key]), 14) for key in ("label", "suggested"))
        mark = "*" if entry.get("flagged") else " "
        click.echo(f"{mark} row {entry['row']:>6}  {label:<14} -> {suggested:<14} {entry['score']:.4f}  "
                   f"{cut_text(printable(entry['text']), 60)}")
    click.echo(f"* flagged by confident learning. Every row, ranked, with its whole text: {run_dir / 'audit.csv'} "
               "(score: label quality, lowest first; docs/metrics.md)")
    if written:
        kept = written["unchanged"]
        reviewed_rows = written["kept_as_reviewed"]
        click.echo(f"Wrote {written['written']}: {len(written['rows'])} rows {written['action']}"
                   + (f" ({len(kept)} of the top {relabel} already carry the suggested label: "
                      f"{rows_named(kept)}, left as they are)" if kept else "")
                   + (f" (kept as reviewed: {rows_named(reviewed_rows)})" if reviewed_rows else "")
                   + f"; {written['source']} is unchanged.")
    elif summary["flagged"]:
        how = "--drop N" if summary["multi_label"] else "--relabel N (or --drop N)"
        click.echo(f"Next, once you have reviewed the top rows: tk audit {run_dir} --write FILE {how}, N the rows "
                   f"checked; the audit flagged {summary['flagged']:,} and estimates {summary['estimated_errors']:,} "
                   "wrong labels.")
