"""report.html: one self-contained page per run (or one comparing runs) that a browser opens offline.

Every text on the page comes from users' data, so the page is built like a
web app that takes hostile input: each string passes through ``html.escape``
and sits inside an element, figures are inline SVG, and a Content-Security-
Policy forbids scripts and every fetch.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import TkError
from toolkit.runs import report_figures as figures
from toolkit.runs.model_card import data_name
from toolkit.saving import write_text

TEXT_CHARS = 1000  # longer texts are cut on the page, and the page says so
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
HEADLINE = ("accuracy", "f1", "precision", "recall", "f1_weighted")
HEADLINE_MULTILABEL = {"f1": "f1 (micro)", "precision": "precision (micro)", "recall": "recall (micro)",
                       "f1_macro": "f1_macro", "accuracy": "subset accuracy", "hamming_loss": "hamming loss"}
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;
color:#222;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}
h2{font-size:1.15rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border-bottom:1px solid #eee;padding:.25rem .6rem;
text-align:left;vertical-align:top}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}figure{margin:.5rem 0}figure svg{width:100%;height:auto;display:block}
.panels{display:flex;flex-wrap:wrap;gap:.5rem}.panels svg{flex:1 1 20rem;min-width:0}
td.text{white-space:pre-wrap;overflow-wrap:anywhere;min-width:14rem;max-width:40rem}
.cut,.muted{color:#777;font-size:.85em}.warn{background:#fff4e5;border-left:4px solid #f0a030;padding:.4rem .7rem}
.ok{background:#eef8ee;border-left:4px solid #4a4;padding:.4rem .7rem}code{overflow-wrap:anywhere}
@media (max-width:40rem){body{font-size:14px;padding:.5rem}th,td{padding:.2rem .35rem}}
@media print{body{max-width:none;font-size:11pt}.scroll{overflow:visible}section,figure,tr{break-inside:avoid}
h2{break-after:avoid}}
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def text_cell(text: Any, limit: int = TEXT_CHARS) -> str:
    """A user's text in a table cell: escaped, direction left to the browser, cut with a note when long."""
    text = str(text)
    note = (f' <span class="cut">[cut: first {limit:,} of {len(text):,} characters shown]</span>'
            if len(text) > limit else "")
    return f'<td class="text" dir="auto">{e(text[:limit])}{note}</td>'


def table(header: list[str], rows: list[list[str]]) -> str:
    """``rows`` hold ready-made cells (``<td>...``); ``header`` plain strings, escaped here."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def td(value: Any, digits: int = 4) -> str:
    """A cell: a float with ``digits`` decimals, an int (a count) with thousands separators, else text."""
    if isinstance(value, float):
        return f'<td class="num">{value:.{digits}f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>'
    return f'<td dir="auto">{e(value)}</td>'


def row_td(number: Any) -> str:
    """A row number: as the file numbers it (found by it, like a line number), so no thousands separators."""
    return f'<td class="num">{e(number)}</td>'


def section(ident: str, title: str, body: str) -> str:
    return f'<section id="{e(ident)}"><h2>{e(title)}</h2>{body}</section>'


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption class=\"muted\">{e(caption)}</figcaption></figure>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")


@dataclass
class RunData:
    run_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    predictions: list[dict[str, str]]
    warning: str | None = None  # --allow-incomplete: why this is not a complete run's page

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.manifest.get("labels") or []]

    @property
    def task(self) -> dict[str, Any]:
        return self.manifest.get("task") or {}

    @property
    def multi_label(self) -> bool:
        return self.metrics.get("problem") == "multi-label"


def load_run_data(run_dir: Path, allow_incomplete: bool = False, writing: bool = False) -> RunData:
    """The files the page is made from, through the run loader: a folder that is not a complete, intact run
    is a TkError that says so (``writing``: tk run writing the page of the run it is saving)."""
    from toolkit.runs.loader import open_run

    folder = open_run(Path(run_dir), allow_incomplete or writing, verify="none" if writing else "results")
    return RunData(folder.path, folder.metrics, folder.manifest, folder.predictions(),
                   None if writing else folder.warning)


def render_report(run_dir: Path, allow_incomplete: bool = False, writing: bool = False) -> str:
    from toolkit.runs import report_sections as sections

    run = load_run_data(run_dir, allow_incomplete, writing)
    name = run.metrics.get("task") or run.task.get("name") or run.run_dir.name
    header = (f"<header><h1 dir=\"auto\">{e(name)}</h1><p class=\"muted\" dir=\"auto\">Run folder "
              f"<code>{e(run.run_dir.name)}</code> · model {e(run.task.get('model', 'not recorded'))} · data "
              f"{e(data_name(run.manifest) if run.task.get('dataset') else 'not recorded')}</p></header>")
    if run.warning:
        header += f'<p class="warn">{e(run.warning)}</p>'
    parts = [header] + [part(run) for part in sections.ALL]
    return page(f"tk report: {name}", "".join(p for p in parts if p))


def write_report(run_dir: Path, output: Path | None = None, allow_incomplete: bool = False,
                 writing: bool = False) -> Path:
    """Write ``run_dir/report.html`` (or ``output``) and return its path."""
    path = Path(output) if output else Path(run_dir) / "report.html"
    write_text(path, render_report(Path(run_dir), allow_incomplete, writing))
    return path


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run folders as given; a sweep folder (no metrics.json, runs inside) stands for its runs."""
    found = []
    for path in map(Path, paths):
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
    from toolkit.evaluation.report import headline_rows

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


def label_arrays(run: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(true ids, predicted ids, probability matrix) from predictions.csv, or None when it is unusable."""
    labels = run.labels
    index = {name: i for i, name in enumerate(labels)}
    try:
        y = np.array([index[row["label"]] for row in run.predictions])
        pred = np.array([index[row["predicted"]] for row in run.predictions])
        probs = np.array([[float(row[f"p_{name}"]) for name in labels] for row in run.predictions])
    except (KeyError, ValueError, TypeError):
        return None
    return (y, pred, probs) if len(y) else None


def label_sets(run: RunData) -> tuple[np.ndarray, np.ndarray] | None:
    """Multi-label: (true multi-hot rows, probabilities) from predictions.csv, or None when it is unusable."""
    labels = run.labels
    try:
        truth = np.array([[name in json.loads(row["label"]) for name in labels] for row in run.predictions])
        probs = np.array([[float(row[f"p_{name}"]) for name in labels] for row in run.predictions])
    except (KeyError, ValueError, TypeError):
        return None
    return (truth, probs) if len(truth) else None
