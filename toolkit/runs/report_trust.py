"""report.html sections on how far to trust a run: calibration before and after its temperature, accuracy
against coverage, and (for tk cv) the folds; each returns HTML, or '' when the run has nothing to show."""

from __future__ import annotations

from typing import Any

from toolkit.evaluation import calibration
from toolkit.runs import report_figures as figures
from toolkit.runs.report_data import RunData
from toolkit.runs.report_html import e, figure, section, table, td
from toolkit.saving import read_json


def temperature(run: RunData) -> str:
    found = run.metrics.get("calibration")
    if not isinstance(found, dict):
        return ""
    bins = found.get("bins", 10)
    if found.get("method") != "temperature":
        return section("temperature", "Temperature scaling",
                       f'<p dir="auto">Not applied ({e(found.get("reason") or "not recorded")}): the saved model '
                       f"gives its probabilities as trained; ECE {_with_ci(found.get('ece'), found.get('ece_ci'))} "
                       f"on the test split ({bins} equal-width bins).</p>" + _off_bins(found, run.multi_label))
    shown = found["temperature"]
    shown = f"{shown:.3f}" if isinstance(shown, (int, float)) else ", ".join(f"{t:.2f}" for t in shown)
    rows = [[td("before (as trained)"), td(_with_ci(found.get("ece_before"), found.get("ece_before_ci")))],
            [td("after (saved model)"), td(_with_ci(found.get("ece_after"), found.get("ece_after_ci")))],
            [td("change"), td(_with_ci(_change(found), found.get("ece_change_ci")))]]
    reliability = found.get("reliability") or {}
    svg = reliability_pair(reliability.get("before"), reliability.get("after"), bins,
                           run.multi_label) if reliability.get("before") else ""
    nll = found.get("fitted_nll") or found.get("validation_nll")  # validation_nll: runs from before spare rows
    texts = (f"{found.get('fitted_texts')} spare training texts (rows train_size left unused, never trained or "
             "selected on)" if found.get("fitted_on") == "spare training rows" else
             f"{found.get('fitted_texts') or found.get('validation_texts', '?')} validation texts")
    caption = (f"Temperature {shown} fitted on {texts} (NLL {nll[0]:.4f} -> {nll[1]:.4f}) and baked "
               "into the saved classifier head, so tk predict, tk evaluate and transformers.pipeline all give the "
               f"calibrated probabilities. Expected calibration error on the test split, {bins} equal-width bins, "
               f"95% intervals: {found.get('interval') or 'not computed'} (the change: the same resamples).")
    body = table(["test split", "ECE [95% interval]"], rows) + _off_bins(found, run.multi_label)
    return section("temperature", "Temperature scaling", body + (figure(svg, caption) if svg else
                                                                 f'<p class="muted">{e(caption)}</p>'))


def _off_bins(found: dict, multi_label: bool) -> str:
    """The bins where the saved model is wrong about itself beyond noise, which a small ECE can hide."""
    bins = found.get("miscalibrated_bins") or []
    if not bins:
        return ""
    sentences = "; ".join(calibration.bins_in_words(bins, multi_label))
    return (f'<p dir="auto">On the test split, {e(sentences)} (Wilson intervals at {bins[0]["level"]:.1%}, 95% '
            "over every bin tested).</p>")


def _change(found: dict) -> float | None:
    before, after = found.get("ece_before"), found.get("ece_after")
    return round(after - before, 4) if isinstance(before, (int, float)) and isinstance(after, (int, float)) else None


def _with_ci(value: Any, ci: Any) -> str:
    if not isinstance(value, (int, float)):
        return "not recorded"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def reliability_pair(before: dict, after: dict, bins: int, multi_label: bool) -> str:
    """Accuracy per confidence bin before and after calibration on one axes, and the texts per bin."""
    import numpy as np

    centres = (np.arange(bins) + 0.5) / bins
    what = "label probability" if multi_label else "top-label confidence"
    with figures._figure(4.2, 3.2, 2) as (rel_ax, hist_ax):
        rel_ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
        for name, stats, style in (("before", before, "s--"), ("after", after, "o-")):
            points = [(c, a) for c, a in zip(stats["confidence"], stats["accuracy"]) if a is not None]
            if points:
                rel_ax.plot(*zip(*points), style, label=name)
        rel_ax.set(xlabel=f"mean {what} in bin", ylabel="share right" if not multi_label else "share with the label",
                   xlim=(0, 1), ylim=(0, 1.02), title="Reliability before and after")
        rel_ax.legend(loc="upper left")
        width = 0.4 / bins
        hist_ax.bar(centres - width / 2, before["rows"], width=width, label="before")
        hist_ax.bar(centres + width / 2, after["rows"], width=width, label="after")
        hist_ax.set(xlabel=what, ylabel="texts" if not multi_label else "(text, label) pairs", xlim=(0, 1),
                    title="Per bin")
        hist_ax.legend()
        return figures.pair([rel_ax, hist_ax])


def coverage(run: RunData) -> str:
    rows = (run.metrics.get("calibration") or {}).get("selective") if isinstance(run.metrics.get("calibration"),
                                                                                  dict) else None
    if not rows:
        return ""
    cells = [[td(f"{r['min_confidence']:.2f}"), td(int(r["answered"])), td(float(r["coverage"]), 3),
              td(_with_ci(r.get("accuracy"), r.get("accuracy_ci")) if r.get("accuracy") is not None else "—")]
             for r in rows]
    rule = ("every label's probability at least t or at most 1 - t; right: the whole label set"
            if run.multi_label else "top probability at least t")
    found = run.metrics["calibration"]
    highest = found.get("highest_confidence")
    surest = f" The surest answer on these rows was {highest:.3f}." if isinstance(highest, (int, float)) else ""
    return section("coverage", "Accuracy against coverage", table(
        ["answer when sure ≥ t", "texts answered", "coverage", "accuracy on those [95% Wilson]"], cells)
        + f'<p class="muted">Selective prediction on the test split: answer only when sure ({e(rule)}); '
          "tk predict --min-confidence t marks the others abstained. These are the test rows of the headline "
          "numbers, so a t chosen from this table is chosen on them and its accuracy here flatters it: check the "
          f"t you choose on other data (tk evaluate --data).{surest}</p>")


def models_in_words(summary: dict[str, Any]) -> str:
    """Whose probabilities the audit ranked with, as a sentence (the CLI and the report say it)."""
    models = summary.get("models") or [{"model": "fine-tune"}]
    if len(models) == 1:
        return f"Probabilities: the {models[0]['model']}'s."
    return ("Probabilities: " + " and ".join(f"the {m['model']}'s (accuracy on the given labels {m['accuracy']:.3f}, "
                                             f"weight {m['weight']:.2f})" for m in models) + ", averaged.")


def disagreements_in_words(found: dict[str, Any]) -> str:
    """What the estimate is made of: the rows whose label the models' answer differs from, of which it counts
    the confident ones. Mistakes of a weak model count as much as wrong labels (the CLI and the report say it)."""
    differ, rows = found.get("model_disagreements"), found.get("rows") or 0
    if differ is None or not rows:
        return ""
    return (f"The models' answer differs from the given label on {differ:,} of the {rows:,} rows (accuracy on the "
            f"given labels {1 - differ / rows:.3f}); the estimate counts those it is confident of, so it holds the "
            "models' own confident mistakes too: the weaker the model, the more the count says of it rather than "
            "of the labels. Review the top rows before trusting either number.")


def estimate_in_words(found: dict[str, Any], how: str = "") -> str:
    """tk audit's estimated error count with its interval, ``how`` it was drawn, and why it is wide:
    '291 (95% interval 157 to 793, HOW; wide where classes are small: ...)'."""
    ci = found.get("estimated_errors_ci")
    if not ci:
        return f"{found.get('estimated_errors', 0):,}"
    said = "".join([f", {how}" if how else "", f"; {found['estimated_errors_note']}"
                    if found.get("estimated_errors_note") else ""])
    return f"{found.get('estimated_errors', 0):,} (95% interval {ci[0]:,} to {ci[1]:,}{said})"


def audit_section(found: dict[str, Any]) -> str:
    """tk audit's summary (audit.json): the estimate with its interval and the top of the ranked rows."""
    head = (f"<p dir=\"auto\">{e(found.get('audited'))}: {found.get('rows', 0):,} rows; estimated label errors "
            f"{e(estimate_in_words(found))}; flagged {found.get('flagged', 0):,}. {e(models_in_words(found))} "
            f"{e(disagreements_in_words(found))} Every row, ranked: audit.csv.</p>")
    warning = f'<p class="warn" dir="auto">{e(found["warning"])}.</p>' if found.get("warning") else ""
    rows = [[td(int(r["row"])), td(r["label"]), td(r["suggested"]), td(float(r["score"]), 3),
             f'<td dir="auto">{e(str(r["text"])[:300])}</td>', td(r["reason"])] for r in found.get("top") or []]
    return section("audit", "Label audit", warning + head + table(
        ["row", "given", "suggested", "label quality", "text", "reason"], rows)
        + '<p class="muted">Confident learning (cleanlab); a low label quality means the model, out of sample, '
          "gives the given label little probability. Review before changing data (docs/metrics.md).</p>")


def audit(run: RunData) -> str:
    path = run.run_dir / "audit.json"
    return audit_section(read_json(path)) if path.is_file() else ""
