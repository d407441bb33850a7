"""report.html of a tune folder: the verdict, the optimisation history, parameter importances, every trial
(pruned and failed ones marked, with why) and the final comparison; built as the run report is (every string
escaped, figures as inline SVG, no scripts)."""

from __future__ import annotations

from typing import Any

from toolkit.runs import report_figures as figures
from toolkit.runs.report_html import e, figure, page, section, table, td
from toolkit.runs.tune_final import describe


def render(record: dict[str, Any]) -> str:
    body = [f"<h1>tk tune: {e(record['task'])}</h1>",
            f'<p class="muted">Study {e(record["study"])} in {e(record["storage"])}; validation '
            f'{e(record["metric"])} ({e(record["direction"])}); {e(trial_count(record))}.</p>',
            verdict(record), history(record), importance(record), trials(record), final(record)]
    return page(f"tk tune {record['task']}", "".join(body))


def trial_count(record: dict[str, Any]) -> str:
    """'8 trials', with interrupted ones apart: they do not count towards --trials."""
    interrupted = sum(t["state"] == "interrupted" for t in record["trials"])
    counted = len(record["trials"]) - interrupted
    return f"{counted} trials" + (f" and {interrupted} interrupted (not counted)" if interrupted else "")


def verdict(record: dict[str, Any]) -> str:
    lines = (record.get("summary") or ["No final comparison yet."]) + record.get("edges", [])
    kind = "ok" if any(item.get("verdict") == "better" for item in (record.get("final") or {}).get(
        "versus_default", [])) else "warn"
    return section("verdict", "Verdict", "".join(f'<p class="{kind}">{e(line)}</p>' for line in lines))


def history(record: dict[str, Any]) -> str:
    """Each trial's validation value in order, the best so far as a line; pruned trials at their last epoch."""
    points = [(t["number"], t["value"] if t["state"] == "complete" else last_epoch(t), t["state"])
              for t in record["trials"]]
    points = [p for p in points if p[1] is not None]
    if not points:
        return section("history", "Optimisation history", "<p>No trial has a validation value yet.</p>")
    from matplotlib.ticker import MaxNLocator  # matplotlib: imported when a page is drawn, not at tk's start

    minimise = record["direction"] == "minimize"
    with figures._figure(6.5, 3.2) as (fig, ax):
        for state, marker in (("complete", "o"), ("pruned", "x")):
            shown = [p for p in points if p[2] == state]
            if shown:
                ax.scatter([p[0] for p in shown], [p[1] for p in shown], marker=marker, label=state)
        best, line = None, []
        for number, value, state in points:
            if state == "complete" and (best is None or (value < best if minimise else value > best)):
                best = value
            line.append((number, best))
        line = [(n, v) for n, v in line if v is not None]
        if line:
            ax.step([n for n, _ in line], [v for _, v in line], where="post", label="best so far")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered: no tick at 0.5
        ax.set_xlabel("trial")
        ax.set_ylabel(f"validation {record['metric']}")
        ax.legend()
        svg = figures.to_svg(fig)
    caption = "Pruned trials are shown at their last reported epoch's value."
    return section("history", "Optimisation history", figure(svg, caption))


def last_epoch(trial: dict[str, Any]) -> float | None:
    epochs = trial.get("epochs") or {}
    return epochs[max(epochs, key=int)] if epochs else None


def importance(record: dict[str, Any]) -> str:
    found = record.get("importances") or {}
    if not found:
        return section("importances", "Parameter importances",
                       "<p>Not enough finished trials (at least two, with varied values) to estimate them.</p>")
    rows = [[td(key), td(float(value), 3)] for key, value in found.items()]
    return section("importances", "Parameter importances",
                   table(["parameter", "importance (fANOVA)"], rows)
                   + '<p class="muted">optuna.importance over the finished trials: how much of the variation of '
                     "the validation value each parameter explains. With few trials, a rough guide.</p>")


def trials(record: dict[str, Any]) -> str:
    keys = list(record["space"])
    rows = []
    for t in record["trials"]:
        why, value = t.get("error") or "", t["value"] if t["state"] == "complete" else None
        if t["state"] == "pruned":
            why, value = f"pruned after epoch {max(map(int, t['epochs']), default='?')}", last_epoch(t)
        elif t["state"] == "interrupted":  # an epoch's value of a trial that ended unfinished ranks nothing
            why = "its worker stopped; it does not count, and a new trial took its place"
        rows.append([td(t["number"]), td(t["state"] + (" (default)" if t.get("default") else "")),
                     td(value if value is not None else "")]
                    + [td(shown(t["params"].get(key, ""))) for key in keys] + [td(why), td(t.get("run_dir") or "")])
    pruned = sum(t["state"] == "pruned" for t in record["trials"])
    failed = sum(t["state"] == "failed" for t in record["trials"])
    note = (f'<p class="muted">{pruned} pruned (stopped after an epoch where they were worse than the median of '
            f"the complete trials at that epoch), {failed} failed (the error is the trial's; its log is in "
            "trials/NNN/log.txt).</p>")
    return section("trials", "Trials", table(["trial", "state", f"validation {record['metric']}", *keys,
                                              "why", "run folder"], rows) + note)


def shown(value: Any) -> str:
    """A parameter's value as text: 2e-05, not 0.0000."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def final(record: dict[str, Any]) -> str:
    found = record.get("final")
    if not found:
        return section("final", "Final comparison", "<p>Not run (--top 0, or trials still running).</p>")
    table_text = "\n".join(found.get("table") or [])
    configs = "".join(f"<li>{e(label)}: {e(describe(item['params']) or 'the task as configured')}</li>"
                      for label, item in found.get("configs", {}).items())
    return section("final", "Final comparison on the test split",
                   f"<p>Seeds {e(', '.join(map(str, found.get('seeds', []))))}, none used by the search.</p>"
                   f"<ul>{configs}</ul><pre>{e(table_text)}</pre>"
                   + "".join(f"<p>{e(item['sentence'])}</p>" for item in found.get("versus_default", [])))
