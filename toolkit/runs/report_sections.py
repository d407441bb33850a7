"""The sections of a run's report.html, in page order; each returns HTML, or '' when it has nothing to show.

Keys other engineers add over time (``step_loss``, ``baseline``,
``classes_absent``, ``warnings``, ``select_metric``, ``data_checks``,
``engine``) are optional: absent, their part says "not recorded" or is left out.
"""

from __future__ import annotations

import json

import numpy as np

from toolkit.config import long_text_in_windows
from toolkit.evaluation import classical
from toolkit.evaluation.report import headline_rows, interval_methods, thousands, undefined_precision
from toolkit.runs import report_figures as figures
from toolkit.runs import report_trust
from toolkit.runs.report_classes import confusion, per_class
from toolkit.runs.report_data import RunData, label_arrays, label_sets
from toolkit.runs.report_html import e, figure, row_td, section, table, td, text_cell

NOT_RECORDED = '<p class="muted">Not recorded for this run.</p>'


def summary(run: RunData) -> str:
    m = run.metrics
    rows = []
    for title, name in headline_rows(m):
        if isinstance(m.get(name), (int, float)):
            ci = m.get(f"{name}_ci")
            rows.append([td(title), td(float(m[name])), td(f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—")])
    baseline = m.get("baseline")
    if run.multi_label and isinstance(baseline, dict) and isinstance(baseline.get("labels"), list):
        always = ", ".join(map(str, baseline["labels"])) or "no label"
        for key, title in (("accuracy", "subset accuracy"), ("hamming_loss", "hamming loss")):
            if isinstance(baseline.get(key), (int, float)):
                rows.append([td(f"baseline {title} (always “{always}”: each label's majority value)"),
                             td(float(baseline[key])), td("")])
    elif isinstance(baseline, dict) and isinstance(baseline.get("accuracy"), (int, float)):
        label = f" (always “{baseline['label']}”)" if baseline.get("label") is not None else ""
        rows.append([td(f"majority-class baseline accuracy{label}"), td(float(baseline["accuracy"])), td("")])
    else:
        rows.append([td("majority-class baseline"), td("not recorded"), td("")])
    rows += linear_rows(m)
    methods = interval_methods(m) or "95% intervals"
    notes = [f"{thousands(m.get('n'))} test texts; {methods}. They cover the test set's sampling noise only."]
    if "best_epoch" in m:
        rule = m.get("select_metric") or run.task.get("select_metric") or "validation loss"
        notes.append(f"Kept epoch {m['best_epoch']} of {m.get('epochs_run', '?')} (selected on {rule}).")
    absent = m.get("classes_absent")
    if absent:
        notes.append("Classes with no test rows (their scores mean nothing): " + ", ".join(map(str, absent)) + ".")
    notes += [undefined_precision(m)] if undefined_precision(m) else []  # as the console and the model card say
    warnings = "".join(f'<p class="warn" dir="auto">{e(w)}</p>' for w in m.get("warnings") or [])
    return section("summary", "Test metrics", warnings + table(["metric", "value", "95% interval"], rows)
                   + "".join(f'<p dir="auto">{e(note)}</p>' for note in notes))


def linear_rows(m: dict) -> list[list[str]]:
    """The linear baseline's scores with intervals, then the fine-tune's paired differences from it."""
    return [[td(what), td(value), td(interval)] for what, value, interval in classical.table_rows(m)]


def epochs(run: RunData) -> str:
    history = run.metrics.get("history") or []
    if not history:
        return section("epochs", "Per-epoch table", NOT_RECORDED)
    best = run.metrics.get("best_epoch")
    rows = [[td(f"{r.get('epoch')}{' (kept)' if r.get('epoch') == best else ''}"),
             *[td(r.get(k)) if isinstance(r.get(k), float) else td("—") for k in
               ("train_loss", "validation_loss", "accuracy", "f1")],
             td(f"{r['seconds']:.1f}" if isinstance(r.get("seconds"), (int, float)) else "—")] for r in history]
    return section("epochs", "Per-epoch table", table(
        ["epoch", "training loss", "validation loss", "val. accuracy", "val. F1", "seconds"], rows))


def curves(run: RunData) -> str:
    history = run.metrics.get("history") or []
    if not history:
        return ""
    steps = run.metrics.get("step_loss") or None
    per_epoch = None
    if steps:
        total = (run.manifest.get("training") or {}).get("global_steps") or max(s[0] for s in steps)
        per_epoch = total / max(run.metrics.get("epochs_run") or len(history), 1)
    caption = ("Training loss at every logged step (x: step ÷ steps per epoch) with the validation loss at each "
               "epoch's end." if per_epoch else "Training loss (mean over each epoch) and validation loss per epoch; "
               "step-level loss was not recorded.")
    return section("curves", "Learning curves", figure(figures.curves(history, steps, per_epoch), caption))


def threshold(run: RunData) -> str:
    arrays = label_arrays(run)
    if len(run.labels) != 2 or arrays is None:
        return ""
    y, _, probs = arrays
    positive = run.metrics.get("positive_label")
    k = run.labels.index(positive) if positive in run.labels else 1
    if len(set(y.tolist())) < 2:
        return section("threshold", "Precision-recall and ROC", '<p class="muted">Needs both classes in the test '
                       'split; it holds one.</p>')
    svg, pr_auc, roc_auc = figures.threshold_curves((y == k).astype(int), probs[:, k], run.labels[k])
    return section("threshold", "Precision-recall and ROC", figure(svg, (
        f"Positive class: {run.labels[k]}; score: its probability in predictions.csv. Average precision "
        f"(PR AUC) {pr_auc:.3f}, ROC AUC {roc_auc:.3f} (scikit-learn).")))


def calibration(run: RunData) -> str:
    if run.multi_label:
        return label_calibration(run)
    arrays = label_arrays(run)
    if arrays is None:
        return section("calibration", "Calibration", NOT_RECORDED)
    y, pred, probs = arrays
    svg, ece = figures.calibration(probs.max(axis=1), y == pred)
    return section("calibration", "Calibration", figure(svg, (
        f"Top-label confidence (the predicted class's probability) in {figures.BINS} equal-width bins; expected "
        f"calibration error {ece:.3f} = the share-weighted mean gap between accuracy and confidence per bin.")))


def label_calibration(run: RunData) -> str:
    """Multi-label: every (text, label) probability against whether the text has the label."""
    arrays = label_sets(run)
    if arrays is None:
        return section("calibration", "Calibration", NOT_RECORDED)
    truth, probs = arrays
    svg, ece = figures.calibration(probs.ravel(), truth.ravel(), what="label probability", hit="share with the label")
    return section("calibration", "Calibration", figure(svg, (
        f"Each label's probability for each text, in {figures.BINS} equal-width bins, against the share of those "
        f"(text, label) pairs where the text has the label; expected calibration error {ece:.3f}.")))


def lengths(run: RunData) -> str:
    texts = [row.get("text", "") for row in run.predictions]
    max_length = run.task.get("max_length")
    if not texts or not isinstance(max_length, int):
        return section("lengths", "Token lengths", NOT_RECORDED)
    try:
        counts = token_counts(run, texts)
    except Exception as error:  # noqa: BLE001  a damaged tokenizer file fails in transformers in many ways
        return section("lengths", "Token lengths", f'<p class="muted">The saved tokenizer did not load: {e(error)}</p>')
    over = int((counts > max_length).sum())
    side = run.task.get("truncation", "head")
    text = (f"{len(counts):,} scored texts, median {int(np.median(counts)):,} tokens, longest {int(counts.max()):,}. "
            f"{over:,} ({over / len(counts):.1%}) are longer than max_length {max_length} and were "
            + (f"read as overlapping windows, pooled per text ({e(run.task.get('pooling', 'mean'))})."
               if long_text_in_windows(run.task.get("long_text")) else f"cut (truncation: {side})."))
    return section("lengths", "Token lengths", figure(figures.token_lengths(counts, max_length), text))


def token_counts(run: RunData, texts: list[str]) -> np.ndarray:
    """Tokens per text with the run's own saved (fast) tokenizer, special tokens in, nothing cut."""
    from transformers import AutoTokenizer
    from transformers.utils import logging

    tokenizer = AutoTokenizer.from_pretrained(run.run_dir / "model", use_fast=True)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # "sequence longer than the maximum" is what this measures
    try:
        ids = tokenizer(texts, truncation=False)["input_ids"]
    finally:
        logging.set_verbosity(verbosity)
    return np.array([len(x) for x in ids])


def data_checks(run: RunData) -> str:
    checks = run.manifest.get("data_checks")
    notes = "".join(f'<p dir="auto">{e(note)}</p>' for note in run.manifest.get("notes") or [])
    source = f'<p dir="auto">Data: {e(run.manifest.get("data_source", "not recorded"))}</p>'
    if not isinstance(checks, dict):
        return section("data-checks", "Data and its checks", source + notes + NOT_RECORDED)
    def counted(rows: dict | None) -> str:
        return ", ".join(f"{e(k)} {e(f'{v:,}' if isinstance(v, int) else v)}" for k, v in (rows or {}).items())

    rows = counted(checks.get("rows"))
    split = checks.get("split_rows")  # the console's "Rows:" line: after splitting and leaving rows out
    rows = rows and (f"{counted(split)} (of the data's {rows}, before tk run split, subset and left rows out)"
                     if split else rows)
    found = [[td(f.get("level", "")), td(f.get("check", "")),
              text_cell(f.get("message", ""), len(str(f.get("message", "")))),  # tk's own finding: whole
              td(f.get("count", "")), text_cell("\n".join(example_text(x)[:300] for x in f.get("examples") or []),
                                                1200)]
             for f in checks.get("findings") or []]
    body = (f"<p>Rows: {rows or 'not recorded'}</p>"
            + (table(["level", "check", "finding", "count", "examples"], found) if found
               else '<p class="ok">No findings.</p>'))
    return section("data-checks", "Data and its checks", source + notes + body)


def example_text(example) -> str:
    """A data check's example as tk check prints it: its texts come quoted already ('...'), so they are shown
    as they are; anything else (a list of row numbers) as JSON."""
    return example if isinstance(example, str) else json.dumps(example, ensure_ascii=False, default=str)


def diagnosis(run: RunData) -> str:
    found = run.metrics.get("diagnosis")
    title = "Overfitting and underfitting"
    if not isinstance(found, dict):
        return section("diagnosis", title, NOT_RECORDED)
    if not found.get("overfitting"):
        body = '<p class="ok">No sign of overfitting: validation loss did not rise while training loss fell.</p>'
    else:
        advice = "".join(f'<li dir="auto">{e(a)}</li>' for a in found.get("advice") or [])
        body = (f'<p class="warn" dir="auto">{e(found.get("message", ""))}</p>'
                + (f"<p>To try:</p><ul>{advice}</ul>" if advice else ""))
    under = run.metrics.get("underfitting")
    if isinstance(under, dict) and under.get("underfitting"):
        advice = "".join(f'<li dir="auto">{e(a)}</li>' for a in under.get("advice") or [])
        body += (f'<p class="warn" dir="auto">{e(under.get("message", ""))}</p>'
                 + (f"<p>To try:</p><ul>{advice}</ul>" if advice else ""))
    elif isinstance(under, dict) and under.get("still_improving"):  # what tk run printed, said here too
        body += f'<p class="warn" dir="auto">{e(under.get("message", ""))}</p>'
    elif isinstance(under, dict):
        body += ("<p class=\"ok\">No sign of underfitting: validation loss clearly below that of predicting the "
                 "base rates, and the model predicts most classes.</p>")
    return section("diagnosis", title, body)


def mistakes(run: RunData) -> str:
    worst = run.metrics.get("worst_mistakes")
    if worst is None:
        return section("mistakes", "Most confident mistakes", NOT_RECORDED)
    if not worst:
        return section("mistakes", "Most confident mistakes", '<p class="ok">No mistakes on the test split.</p>')
    numbered = all("row" in m for m in worst)  # runs before the row numbers were kept have none
    rows = [([row_td(m["row"])] if numbered else []) + [text_cell(m.get("text", "")), td(m.get("label", "")),
                                                     td(m.get("predicted", "")), td(m.get("confidence", ""))]
            for m in worst]
    header = (["row"] if numbered else []) + ["text", "true", "predicted", "confidence"]
    return section("mistakes", "Most confident mistakes", table(header, rows)
                   + '<p class="muted">Texts as metrics.json keeps them (the first 500 characters); predictions.csv '
                     "holds every scored text whole.</p>")


def details(run: RunData) -> str:
    m = run.manifest
    asked = run.task.get("engine")  # the task's key ("auto"), shown beside the engine it resolved to: one row
    engine = m.get("engine") or "not recorded"
    facts = {"engine": f"{engine} (task key engine = {json.dumps(asked)})" if asked and asked != engine else engine,
             "training seconds": run.metrics.get("train_seconds"),
             "seed": m.get("seed"), "data fingerprint": json.dumps(m.get("data_fingerprint"), default=str)}
    rows = [[td(k), td(str(v))] for k, v in facts.items()]
    rows += [[td(k), td(json.dumps(v, default=str))] for k, v in sorted(run.task.items()) if k != "engine"]
    rows += [[td(k), td(v)] for k, v in sorted((m.get("versions") or {}).items())]
    return section("details", "Settings and versions", table(["key", "value"], rows))


ALL = (summary, epochs, curves, confusion, per_class, threshold, calibration, report_trust.temperature,
       report_trust.coverage, lengths, data_checks, report_trust.audit, diagnosis, mistakes, details)
