"""report.html: one self-contained page per run (or one comparing runs) that a browser opens offline.

Every text on the page comes from users' data, so the page is built like a
web app that takes hostile input: each string passes through ``html.escape``
and sits inside an element, figures are inline SVG, and a Content-Security-
Policy forbids scripts and every fetch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.errors import TkError
from toolkit.evaluation.report import headline_rows
from toolkit.runs import report_figures as figures
from toolkit.runs import report_sections as sections
from toolkit.runs.folders import run_status
from toolkit.runs.loader import kind_of
from toolkit.runs.model_card import data_name
from toolkit.runs.report_data import load_run_data
from toolkit.runs.report_html import e, figure, page, section, table, td
from toolkit.saving import write_text


def render_report(run_dir: Path, allow_incomplete: bool = False, writing: bool = False) -> str:
    run = load_run_data(run_dir, allow_incomplete, writing)
    name = run.metrics.get("task") or run.task.get("name") or run.run_dir.name
    header = (f"<header><h1 dir=\"auto\">{e(name)}</h1><p class=\"muted\" dir=\"auto\">Run folder "
              f"<code>{e(run.run_dir.name)}</code> · model {e(run.task.get('model', 'not recorded'))} · data "
              f"{e(data_name(run.manifest) if run.task.get('dataset') else 'not recorded')}</p></header>")
    if run.warning:
        header += f'<p class="warn">{e(run.warning)}</p>'
    if run.cv_fold:
        header += (f'<p class="muted">Fold {run.cv_fold} of a cross-validation '
                   '(<a href="../report.html">its summary</a>). Where this page says test, it means the rows this '
                   "fold held out of training: rows of the data's training split, scored by a model that never saw "
                   "them.</p>")
    parts = [header] + [part(run) for part in sections.ALL]
    return page(f"tk report: {name}", "".join(p for p in parts if p))


def write_report(run_dir: Path, output: Path | None = None, allow_incomplete: bool = False,
                 writing: bool = False) -> Path:
    """Write ``run_dir/report.html`` (or ``output``) and return its path."""
    path = Path(output) if output else Path(run_dir) / "report.html"
    write_text(path, render_report(Path(run_dir), allow_incomplete, writing))
    return path


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run folders as given; a sweep folder (no metrics.json, runs inside) stands for its runs, and so does a
    finished tk cv folder (its folds)."""
    found = []
    for path in map(Path, paths):
        if kind_of(path) == "cv" and run_status(path) != "complete":  # else its finished folds passed for it
            raise TkError(f"{path} is a tk cv folder that did not finish (status: {run_status(path)}). Finish it: "
                          f"tk cv --resume {path}")
        inner = sorted(p for p in path.iterdir() if (p / "metrics.json").is_file()) if path.is_dir() else []
        found += inner if inner and not (path / "metrics.json").is_file() else [path]
    return found


def interval(metrics: dict[str, Any], name: str) -> str:
    ci = metrics.get(f"{name}_ci")
    return f"{metrics[name]:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{metrics[name]:.4f}"


def render_comparison(run_dirs: list[Path], allow_incomplete: bool = False) -> str:
    """One page comparing runs (a sweep folder counts as its runs): headline numbers, settings, curves."""
    runs = [load_run_data(path, allow_incomplete) for path in expand_runs(run_dirs)]
    if not runs:
        raise TkError("No runs to compare: pass run folders or a sweep folder.")
    keys = sorted({k for run in runs for k in run.task})
    differing = [k for k in keys if len({json.dumps(run.task.get(k), default=str) for run in runs}) > 1]
    shared = [k for k in keys if k not in differing]
    rows = []
    for run in runs:
        m = run.metrics
        scores = [td(interval(m, n)) if n in m else td("—") for n in ("accuracy", "f1")]
        baseline = (m.get("baseline") or {}).get("accuracy")
        marked = f' <span class="warn">{e(run.warning)}</span>' if run.warning else ""
        rows.append([f'<td dir="auto"><code>{e(run.run_dir.name)}</code>{marked}</td>', *scores,
                     td(baseline if isinstance(baseline, float) else "not recorded"),
                     td(f"{m.get('best_epoch', '?')} of {m.get('epochs_run', '?')}"), td(m.get("n", "?")),
                     *[td(json.dumps(run.task.get(k), default=str)) for k in differing]])
    f1_name = dict((key, title) for title, key in headline_rows(runs[0].metrics)).get("f1", "f1")
    body = section("runs", "Runs", table(["run", "accuracy [95%]", f"{f1_name} [95%]", "baseline accuracy",
                                          "kept epoch", "test texts", *differing], rows)
                   + "<p class=\"muted\">Whether a difference is real or noise: <code>tk compare RUN...</code> "
                     "(on the task's decision metric, paired on the same test rows).</p>")
    histories = [(run.run_dir.name, run.metrics.get("history") or []) for run in runs]
    weighted = "class_weights" in differing
    caption = ("One line per run. These runs weigh their validation loss by different class_weights, so the "
               "losses do not compare across runs: compare accuracy and F1 above." if weighted
               else "One line per run.")
    body += section("curves", "Validation loss", figure(figures.compare_curves(histories), caption))
    body += section("settings", "Shared settings", table(["key", "value"], [
        [td(k), td(json.dumps(runs[0].task.get(k), default=str))] for k in shared]))
    return page("tk report: comparison", f"<header><h1>Comparing {len(runs)} runs</h1></header>{body}")


