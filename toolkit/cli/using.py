"""tk predict, tk evaluate, tk report: use a finished run."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import click

from toolkit.cli.group import cli, pass_session, skip_interpreter_teardown
from toolkit.cli.json_output import emit, json_option
from toolkit.cli.params import FiniteRange
from toolkit.data.columns import TEXT_COLUMNS
from toolkit.data.tokens import CHUNKED_CHARS
from toolkit.errors import TkError
from toolkit.evaluation.calibration import abstains, bins_in_words
from toolkit.evaluation.report import format_metrics
from toolkit.runs.answers import answer, backend_of, prediction_rows
from toolkit.runs.calibrate import bin_test
from toolkit.runs.evaluate import evaluate_run
from toolkit.runs.exported import load_run_or_export
from toolkit.runs.report_page import expand_runs, render_comparison, write_report
from toolkit.runs.user_files import check_output_file, recorded_data
from toolkit.saving import create_json, write_text
from toolkit.training.progress import Progress

allow_incomplete_option = click.option(
    "--allow-incomplete", is_flag=True,
    help="Use a run that is not complete or whose saved files changed since tk run saved them (experts only): "
         "every answer is marked NOT A COMPLETE RUN.")


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--file", "text_file", type=click.File(encoding="utf-8"), help="One text per line ('-' for stdin).")
@click.option("--min-confidence", type=FiniteRange(0, 1), metavar="T",
              help="Abstain where the answer is less sure than T: the top probability below T (multi-label: any "
                   "label's probability between 1 - T and T). Abstained answers still show the model's best guess.")
@allow_incomplete_option
@json_option
def predict(run_dir, texts, text_file, min_confidence, allow_incomplete, as_json):
    """Label TEXTS with the model saved in RUN (or an export tk export wrote)."""
    for number, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:  # bytes the terminal's encoding could not decode (surrogateescape)
            byte = ord(text[error.start]) - 0xDC00 if 0xDC80 <= ord(text[error.start]) <= 0xDCFF else None
            raise TkError(f"Text {number} is not UTF-8 text" + (f" (byte 0x{byte:02x} at character {error.start})"
                                                                 if byte is not None else "")
                          + ". Pass texts in UTF-8, or in a UTF-8 file with --file F.") from None
    blank = [str(number) for number, text in enumerate(texts, 1) if not text.strip()]
    if blank:  # a model still answers for an empty text, with nothing to go on: say so instead
        raise click.UsageError(f"Text {', '.join(blank)} is empty. Give each text to label as an argument, in "
                               "quotes, or one per line in --file F.")
    lines, skipped = read_lines(text_file) if text_file else ([], [])
    texts = list(texts) + lines
    if not texts and text_file:
        raise click.UsageError(f"--file {text_file.name} holds no text (no line with more than spaces); give a file with "
                               "one text per line.")
    if not texts:
        raise click.UsageError("Give texts as arguments or --file F.")
    saved = load_run_or_export(existing_run(run_dir), bare=True, allow_incomplete=allow_incomplete)
    if lines:
        warn_of_a_csv_header(text_file.name, lines[0], saved.task)
    probabilities, cut, windows = answer(saved, texts)
    warning = getattr(saved, "warning", None)  # an export has none: tk export wrote it from a complete run
    if warning and not as_json:
        click.echo(warning)
    skip_interpreter_teardown()  # nothing is written: the answers are printed below, then tk exits at once
    abstained = None
    if min_confidence is not None:
        abstained = abstains(probabilities, min_confidence, saved.multi_label)
    if saved.multi_label:
        print_label_sets(texts, probabilities, saved, as_json, skipped, abstained, cut, windows, min_confidence)
    elif as_json:
        emit("predict", {"run_dir": source_run(saved), "backend": backend_of(saved), "labels": list(saved.labels),
                         "skipped_lines": skipped, "incomplete_run": getattr(saved, "warning", None),
                         "predictions": mark_abstained(prediction_rows(saved, texts, probabilities, cut, windows),
                                                       abstained)})
    else:
        rows = mark_abstained(prediction_rows(saved, texts, probabilities, cut, windows), abstained)
        for line in prediction_lines(rows, min_confidence):
            click.echo(line)
        say_what_was_cut(cut, saved.task)
    if min_confidence is not None:
        say_if_never_that_sure(saved, min_confidence)


def coverage_lines(rows: list[dict], highest: float | None) -> str:
    """tk evaluate's accuracy against coverage on the rows it scored: where a --min-confidence t chosen from
    the run's report (its test rows) is checked on other data."""
    lines = ["  answering only when sure (tk predict --min-confidence t), on these rows:"]
    for row in rows:
        if row["answered"]:
            low, high = row["accuracy_ci"]
            lines.append(f"    t {row['min_confidence']:.2f}: {row['answered']:,} answered ({row['coverage']:.1%}), "
                         f"accuracy {row['accuracy']:.3f} [{low:.3f}, {high:.3f}]")
        else:
            lines.append(f"    t {row['min_confidence']:.2f}: none answered"
                         + (f" (the surest answer: {highest:.3f})" if highest is not None else ""))
    return "\n".join(lines)


def say_if_never_that_sure(saved, min_confidence: float) -> None:
    """On stderr: a --min-confidence above every answer the run gave on its test rows abstains on nearly every
    text, which the answers alone do not explain."""
    try:
        metrics = Path(getattr(saved, "run_dir", None)) / "metrics.json"
        found = json.loads(metrics.read_text(encoding="utf-8"))["calibration"]
        highest, rows = float(found["highest_confidence"]), int(found["n"])
    except (OSError, ValueError, KeyError, TypeError):  # an export, or a run from before tk recorded it
        return
    if min_confidence > highest:
        click.echo(f"No answer on the run's {rows:,} test rows was that sure (the surest: {highest:.3f}), so "
                   f"--min-confidence {min_confidence:g} will abstain on nearly every text; the run's report shows "
                   "accuracy against coverage to choose T from.", err=True)


def say_what_was_cut(cut: list[bool], task) -> None:
    """Under the answers (on stderr, so piped answers stay one per line): how many texts tk read only part of."""
    count = sum(cut)
    if not count:
        return
    if task.reads_in_windows:
        said = f"longer than {CHUNKED_CHARS:,} characters; tk read their first {CHUNKED_CHARS:,}"
    else:
        part = {"head": "start", "tail": "end"}.get(task.truncation, "start and end")
        said = f"longer than max_length = {task.max_length} tokens; tk read the {part} of each"
    click.echo(f"{count:,} of {len(cut):,} texts {'is' if count == 1 else 'are'} {said}, as in training "
               "(--json: cut).", err=True)


def prediction_lines(rows: list[dict], bar: float | None = None) -> list[str]:
    """One line per text: the answer, its probabilities, the text; the scores start in one column for every
    row, an abstained one's words included. Texts and label names come from files: no control codes shown."""
    said = [f"(abstained; best guess {printable(row['label'])})" if row.get("abstained") else
            printable(row["label"]) for row in rows]
    width = max([12, *map(len, said)])
    lines = []
    for row, shown_answer in zip(rows, said):
        top = sorted(row["probabilities"].items(), key=lambda item: -item[1])[:TOP_CLASSES]
        shown = row["probabilities"].items() if len(row["probabilities"]) <= TOP_CLASSES + 1 else top
        scores = "  ".join(f"{printable(name)} {shown_probability(value, bar)}"
                           for name, value in shown)
        lines.append(f"{shown_answer:<{width}} {scores}  {printable(row['text'])[:80]}")
    return lines


def shown_probability(value: float, bar: float | None) -> str:
    """Three decimals, rounded; a value under --min-confidence's ``bar`` that rounding would lift to it is cut
    instead, so 0.9497 under 0.95 shows as 0.949, never as 0.950, which would read as meeting the bar."""
    if bar is not None and value < bar <= round(value, 3):
        return f"{math.floor(value * 1000) / 1000:.3f}"
    return f"{value:.3f}"


TOP_CLASSES = 3  # with more classes, predict shows the most likely three (--json: all)


def source_run(saved) -> str:
    """The run the model comes from, absolute, for a run or an export alike (as tk serve's answers give it)."""
    return str(Path(saved.run_dir).resolve())


def print_label_sets(texts, probabilities, saved, as_json: bool, skipped: list[int],
                     abstained=None, cut=None, windows=None, bar: float | None = None) -> None:
    """Multi-label: every label whose probability reaches its threshold, most probable first; ``bar``:
    --min-confidence."""
    labels = saved.labels
    rows = mark_abstained(prediction_rows(saved, texts, probabilities, cut, windows), abstained)
    if as_json:
        emit("predict", {"run_dir": source_run(saved), "backend": backend_of(saved), "labels": list(labels),
                         "skipped_lines": skipped, "incomplete_run": getattr(saved, "warning", None),
                         "predictions": rows})
        return
    for row in rows:
        held = row.get("abstained")
        found = "  ".join(f"{printable(name)} {shown_probability(row['probabilities'][name], bar)}"
                          for name in row["labels"])
        found = f"(abstained; best guess: {found or 'no label'})" if held else found
        click.echo(f"{found or '(no label)':<24} {printable(row['text'])[:80]}")
    say_what_was_cut(cut or [], saved.task)

def mark_abstained(rows: list[dict], abstained) -> list[dict]:
    """--min-confidence: each row says whether tk abstained from it (the model's best guess stays in the row)."""
    if abstained is not None:
        for row, held in zip(rows, abstained):
            row["abstained"] = bool(held)
    return rows


def existing_run(run_dir: Path) -> Path:
    """A run folder that is there, before tk looks inside it for a model."""
    if not run_dir.exists():
        raise TkError(f"{run_dir}: no such folder. tk list --runs shows the run folders.")
    if not run_dir.is_dir():
        raise TkError(f"{run_dir} is a file, not a run folder. tk list --runs shows the run folders.")
    return run_dir


def warn_of_a_csv_header(name: str, first_line: str, task) -> None:
    """--file F labels every line as one text: a CSV's header (naming the run's text column) would be labelled
    too, and its rows whole, label and all. Said on stderr; the answers are still given."""
    cells = {cell.strip().strip('"').lower() for cell in re.split(r"[,\t;]", first_line)}
    text_column = (task.settings.get("text_column") or "").lower()
    if len(cells) < 2 or not cells & ({text_column} | set(TEXT_COLUMNS)) - {""}:
        return
    click.echo(f"WARNING: --file {name}: its first line looks like a CSV header ({printable(first_line)[:60]}); "
               "tk predict labels every line whole as one text, that line included. To score a CSV's text column, "
               "use tk evaluate RUN --data FILE (with its label column), or give predict one text per line.",
               err=True)


def read_lines(handle) -> tuple[list[str], list[int]]:
    """Non-blank lines of a --file, and the numbers of the blank ones (skipped); a binary or non-UTF-8 file
    is a one-line error."""
    try:
        text = handle.read()
    except UnicodeDecodeError as error:
        raise TkError(f"--file {handle.name}: not UTF-8 text ({error.reason} at byte {error.start}); "
                      "pass a text file with one text per line.") from None
    if "\x00" in text:
        raise TkError(f"--file {handle.name}: a binary file (it holds NUL bytes); pass a text file with one "
                      "text per line.")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's last line break ends the last line: no blank line after it
    blank = [number for number, line in enumerate(lines, 1) if not line.strip()]
    if blank:  # said on stderr, so that a reader of the answers knows they skip those lines
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        click.echo(f"--file {handle.name}: skipped {len(blank)} blank {'line' if len(blank) == 1 else 'lines'} "
                   f"(line {shown}); one answer per other line, in order.", err=True)
    return [line.rstrip("\r") for line in lines if line.strip()], blank


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
@click.option("--split", help="The split to score (default: the run's test rows, without those also in its training "
              "data, as tk run scored them; for one file given with --data, all of it; for a run's data without a "
              "test split, the rows the run held out). --split test: every row of the test split.")
@click.option("--text-column", metavar="NAME", help="With --data: the column holding the texts (default: found by "
              "name, as tk run finds it).")
@click.option("--label-column", metavar="NAME", help="With --data: the column holding the labels (default: found by "
              "name).")
@allow_incomplete_option
@json_option
@pass_session
def evaluate(session, run_dir, data, split, text_column, label_column, allow_incomplete, as_json):
    """Evaluate the model saved in RUN (or an export tk export wrote) on a whole dataset split."""
    existing_run(run_dir)
    if data is not None and not Path(data).exists():
        raise TkError(f"--data: {data} does not exist. Check the path, or leave --data out to score the run's "
                      "own data (the source it recorded).")
    columns = {key: name for key, name in (("text_column", text_column), ("label_column", label_column)) if name}
    if columns and data is None:
        raise click.UsageError("--text-column and --label-column name the columns of --data FILE: add --data FILE "
                               "(the run's own data is read with the columns it was trained on).")
    saved = load_run_or_export(run_dir, allow_incomplete=allow_incomplete, need=("metrics.json", "manifest.json"))
    metrics = evaluate_run(session.pm, saved, data, split, Progress(click.echo), columns)
    if getattr(saved, "warning", None):
        metrics["incomplete_run"] = saved.warning
        click.echo(saved.warning)
    for note in metrics["notes"]:  # with --json, on stderr (json_output)
        click.echo(note)
    click.echo(f"Data: {metrics['data_source']}, split: {metrics['split_description']}")
    click.echo(f"Scored {metrics['n']:,} texts in {metrics['seconds']:.1f} s "
               f"({metrics['texts_per_second']:,.1f} texts/s, tokenizing included)")
    if not as_json:
        click.echo(format_metrics(metrics))
        if metrics.get("ece") is not None:  # what --min-confidence rests on, measured on these rows
            ci = metrics.get("ece_ci")
            t = metrics.get("temperature")
            whose = ("the export's, which carries its run's probabilities" if t == "unknown" else
                     "the saved model's, with the temperature " + (f"{t:.3f}" if isinstance(t, (int, float)) else
                                                                   "per label") + " tk run put in its head"
                     if t is not None else "the saved model's, which has no temperature (calibration off)")
            click.echo(f"  calibration: ECE {metrics['ece']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                       + f" on these rows ({metrics['ece_bins']} equal-width confidence bins; 0 is perfect; "
                       f"{whose}; docs/metrics.md#calibration)")
            for sentence in bins_in_words(metrics.get("miscalibrated_bins") or [], saved.multi_label):
                click.echo(f"  calibration: {sentence} ({bin_test(metrics['miscalibrated_bins'])})")
            click.echo(coverage_lines(metrics.get("selective") or [], metrics.get("highest_confidence")))
    # --split test scores every test row, the default only those the run scored: their files must differ
    stem = "test-all" if split == "test" and data is None else metrics["split"]
    path = run_dir / "evaluations" / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    try:
        path.parent.mkdir(exist_ok=True)
        path = create_json(path, metrics)  # never over another evaluation saved the same second
    except (OSError, TkError) as error:  # e.g. a read-only run folder: the metrics above still stand
        cause = error if isinstance(error, OSError) else error.__context__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(error)
        raise TkError(f"The metrics {'are' if as_json else 'above are'} not saved: cannot write {path.parent} "
                      f"({reason}). Copy the run folder somewhere writable to keep them.") from None
    if as_json:
        emit("evaluate", {"path": str(path), "metrics": metrics})
    else:
        click.echo(f"Saved to {path}")



@cli.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), metavar="PATH",
              help="Where to write the page (default: RUN/report.html for one run, ./report.html for several).")
@allow_incomplete_option
@json_option
def report(run_dirs, output, allow_incomplete, as_json):
    """Write report.html for RUN, or one page comparing several runs (a sweep folder counts as its runs)."""
    runs = expand_runs(list(run_dirs))
    if output is not None:
        check_output_file(output, "--output", "html", data=[recorded_data(run) for run in runs],
                          tk_names=("report.html",), own=[*run_dirs, *runs])
    if len(runs) == 1:
        path = write_report(runs[0], output, allow_incomplete)
    else:
        path = output or Path("report.html")
        write_text(path, render_comparison(runs, allow_incomplete))
    if as_json:
        emit("report", {"path": str(path), "runs": [str(run) for run in runs]})
    else:
        click.echo(f"Wrote {path}")
