"""report.html's class sections, readable from two classes to hundreds: the confusion matrix and per-class scores.

Up to ``FIGURE_CLASSES`` classes, the confusion matrix is a figure, row-normalised (each true class's rows
sum to 1, so a large class does not drown the rest) with each share printed, and per-class scores get bars.
Beyond that, labels and numbers would be a few pixels tall: the most frequent confusions become a table,
and per-class scores a table sorted worst first, each recall and precision with its Wilson interval.
"""

from __future__ import annotations

import numpy as np

from toolkit.evaluation.intervals import wilson
from toolkit.runs import report_figures as figures
from toolkit.runs.report_data import RunData
from toolkit.runs.report_html import figure, section, table, td

FIGURE_CLASSES = 20
TOP_CONFUSIONS = 25
AVERAGES = ("macro avg", "weighted avg", "micro avg", "samples avg")
NOT_RECORDED_HTML = '<p class="muted">Not recorded for this run.</p>'


def confusion(run: RunData) -> str:
    if run.multi_label:
        return ""  # no classes to confuse: each label is scored on its own (per-label scores)
    matrix = run.metrics.get("confusion_matrix")
    if not matrix or len(matrix) != len(run.labels):
        return section("confusion", "Confusion matrix", NOT_RECORDED_HTML)
    counts = np.asarray(matrix, dtype=np.int64)
    if len(run.labels) <= FIGURE_CLASSES:
        return section("confusion", "Confusion matrix", figure(
            figures.confusion(counts, run.labels),
            "Rows: true class; columns: predicted class. Each cell is the share of the true class's test rows "
            "(each row sums to 1), so small classes show as clearly as large ones; n: the class's test rows."))
    return section("confusion", "Most frequent confusions", top_confusions(counts, run.labels))


def top_confusions(counts: np.ndarray, labels) -> str:
    """The off-diagonal cells with the most rows, as a table: true class, predicted class, rows, share."""
    support = counts.sum(axis=1)
    wrong = counts.copy()
    np.fill_diagonal(wrong, 0)
    order = np.argsort(-wrong, axis=None, kind="stable")[:TOP_CONFUSIONS]
    cells = [(int(i), int(j)) for i, j in zip(*np.unravel_index(order, wrong.shape)) if wrong[i, j] > 0]
    if not cells:
        return '<p class="ok">No test row was confused with another class.</p>'
    rows = [[td(str(labels[i])), td(str(labels[j])), td(int(wrong[i, j])), td(float(wrong[i, j] / support[i]), 3),
             td(int(support[i]))] for i, j in cells]
    total = int(wrong.sum())
    return (f"<p>{len(labels):,} classes: too many for a readable matrix. The {len(cells)} most frequent "
            f"confusions, {int(sum(wrong[i, j] for i, j in cells)):,} of the {total:,} wrong test rows; the whole "
            "matrix is in metrics.json (<code>confusion_matrix</code>).</p>"
            + table(["true class", "predicted as", "rows", "share of the true class", "true class rows"], rows))


def per_class(run: RunData) -> str:
    report = run.metrics.get("per_class") or {}
    kept = {name: r for name, r in report.items() if isinstance(r, dict) and name not in AVERAGES}
    rows = [(name, float(r["precision"]), float(r["recall"]), float(r["f1-score"]), int(r["support"]))
            for name, r in kept.items()]
    if not rows:
        return section("per-class", "Per-class scores", NOT_RECORDED_HTML)
    cells = [[td(n), td(p, 3), td(r, 3), td(f, 3), td(s)] for n, p, r, f, s in rows]
    if run.multi_label:
        cells = [row + [td(_interval(kept[row_name], "f1-score")), td(kept[row_name].get("threshold", "—"), 3)]
                 for row, (row_name, *_) in zip(cells, rows)]
        bars = (figure(figures.per_class_bars(rows), "n: test rows with the label; each label predicted where its "
                       "probability reaches its threshold (tuned on the validation split).")
                if len(rows) <= FIGURE_CLASSES else "")
        return section("per-class", "Per-label scores", bars + table(
            ["label", "precision", "recall", "F1", "support", "F1 95% interval", "threshold"], cells))
    if len(rows) <= FIGURE_CLASSES:
        return section("per-class", "Per-class scores", figure(figures.per_class_bars(rows), "n: test rows of the class.")
                       + table(["class", "precision", "recall", "F1", "support"], cells))
    return section("per-class", "Per-class scores", many_classes(rows, run.metrics.get("confusion_matrix")))


def many_classes(rows, matrix) -> str:
    """Every class as a table row, worst F1 first, recall and precision with Wilson intervals from the counts."""
    predicted = np.asarray(matrix).sum(axis=0) if matrix else None
    order = sorted(range(len(rows)), key=lambda k: (rows[k][3], -rows[k][4]))
    cells = []
    for k in order:
        name, precision, recall, f1, support = rows[k]
        hits = int(round(recall * support))
        shown_recall = wilson(hits, support) if support else None
        shown_precision = wilson(hits, int(predicted[k])) if predicted is not None and predicted[k] else None
        cells.append([td(str(name)), td(f1, 3), td(recall, 3), td(_range(shown_recall)), td(precision, 3),
                      td(_range(shown_precision)), td(support)])
    return (f"<p>{len(rows):,} classes, worst F1 first (the classes the model misses most sit at the top). "
            "Intervals: 95% Wilson, from the test rows of the class (recall) and the rows predicted as it "
            "(precision); — where there are none.</p>"
            + table(["class", "F1", "recall", "recall 95%", "precision", "precision 95%", "support"], cells))


def _range(interval) -> str:
    return "—" if interval is None or interval.low is None else f"[{interval.low:.3f}, {interval.high:.3f}]"


def _interval(row: dict, name: str) -> str:
    ci = row.get(f"{name}_ci")
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"
