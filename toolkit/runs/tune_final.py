"""The end of tk tune: the top configurations and the default, each re-run over further seeds and scored on
the test split (the only time the search reads it), then compared.

Each configuration is trained once per seed (``--seeds``), seeds the search never used; the runs are
ordinary complete run folders under ``final/``. The table is tk sweep's (mean ± sd over seeds, Welch's
t-test against the best mean). The verdict on each configuration against the default is on the task's
decision metric: run and default of the same seed share their test rows, so each seed gives a paired
difference with its bootstrap replicates over the rows. The interval holds the noise of training and of the
test set alike: ``seed_and_row_interval``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import TaskConfig, with_overrides
from toolkit.errors import TkError, user_message
from toolkit.evaluation import paired
from toolkit.runs.compare import SIGNIFICANCE, RunSummary, format_group_rows, group_rows, summarise
from toolkit.runs.diagnoses import warnings_across
from toolkit.runs.endings import RunOutcome
from toolkit.runs.folders import run_status
from toolkit.runs.pipeline import resume_task, run_task
from toolkit.saving import write_json
from toolkit.training import checkpoints
from toolkit.training.progress import Progress

FINAL_FILE = "final.json"  # which final run folder holds which configuration and seed: a re-run reuses them
DEFAULT = "default"


FINAL_AGAIN = ("Run the same tk tune command again: the final runs that are complete are reused, and this one "
               "goes on from its last finished epoch (or starts again where none had finished).")


def final_runs(pm, task: TaskConfig, configs: dict[str, dict[str, Any]], seeds: list[int], *, data: str | None,
               base: Path | None, folder: Path, progress: Progress, where: str | None = None
               ) -> dict[str, list[RunSummary]]:
    """Every configuration at every seed, trained and tested: a complete run of an earlier attempt is reused,
    an interrupted one resumed from its last finished epoch. ``where``: tk run's, for a tune over --data FILE."""
    record_path = folder / FINAL_FILE
    folder.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, str]] = json.loads(record_path.read_text()) if record_path.exists() else {}
    groups: dict[str, list[RunSummary]] = {}
    for label, params in configs.items():
        for seed in seeds:
            name = done.get(label, {}).get(str(seed))
            run_dir = folder / name if name and (folder / name).is_dir() else None
            if run_dir is None or run_status(run_dir) != "complete":
                words = describe(params) if label != DEFAULT else "the task as configured" + (
                    f", with --space {describe(params)}" if params else "")  # a --space KEY=V pins the default's too
                progress.note(f"\nFinal run: {label} ({words}), seed {seed}")
                try:
                    outcome = go_on_or_start(pm, run_dir, with_overrides(
                        task, {**params, "seed": seed, "split_seed": task.data_seed}, "tk tune"),
                        data=data, base=base, folder=folder, progress=progress, where=where)
                except TkError as error:
                    progress.note(f"Final run {label}, seed {seed} failed: {user_message(error)}")
                    continue
                if outcome.run_dir is not None:  # an interrupted one too: the next attempt resumes it
                    done.setdefault(label, {})[str(seed)] = outcome.run_dir.name
                    write_json(record_path, done)
                if outcome.status != "complete":
                    raise KeyboardInterrupt
                run_dir = outcome.run_dir
            groups.setdefault(label, []).append(summarise(run_dir, f"{label} (seed {seed})"))
    return groups


def go_on_or_start(pm, run_dir: Path | None, task: TaskConfig, *, data: str | None, base: Path | None,
                   folder: Path, progress: Progress, where: str | None) -> RunOutcome:
    """An earlier attempt's interrupted final run resumed from its last finished epoch; else a new run (a
    folder interrupted before its first epoch ended holds nothing to resume: it is replaced, not left)."""
    if run_dir is not None and run_status(run_dir) == "interrupted":
        if checkpoints.latest(run_dir / "checkpoints") is not None:
            progress.note(f"Resuming {run_dir} from its last finished epoch")
            return resume_task(pm, run_dir, progress, go_on=FINAL_AGAIN)
        shutil.rmtree(run_dir)
        progress.note(f"Removed {run_dir}: interrupted before its first epoch ended, it held nothing to resume")
    return run_task(pm, task, data=data, output=folder, base=base, progress=progress, where=where,
                    go_on=FINAL_AGAIN)


def describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={f'{value:.3g}' if isinstance(value, float) else value}" for key, value in params.items())


def compare_final(groups: dict[str, list[RunSummary]], ranked: list[str]) -> dict[str, Any]:
    """The table over seeds, and each of ``ranked`` (best first) against the default, in words and numbers."""
    if DEFAULT not in groups or not ranked or not any(label in groups for label in ranked):
        return {"table": [], "versus_default": [], "summary": ["No final comparison: the default or every top "
                                                               "configuration lacks a complete final run."]}
    rows = group_rows(groups)
    compared = [label for label in ranked if label in groups]
    # each configuration against the default is one more chance of a 'better' by luck: Bonferroni's intervals
    level = 1 - SIGNIFICANCE / len(compared)
    found = [against_default(groups[label], groups[DEFAULT], label, ranked.index(label), level, len(compared))
             for label in compared]
    return {"rows": rows, "table": format_group_rows(rows).splitlines(), "versus_default": found,
            "summary": [item["sentence"] for item in found] + success_caveats(found, groups)}


def against_default(runs: list[RunSummary], default: list[RunSummary], label: str, place: int,
                    level: float = 1 - SIGNIFICANCE, compared: int = 1) -> dict[str, Any]:
    """Seed by seed, this configuration minus the default on the decision metric; the ``level`` interval from
    the seeds' spread and, within each seed, the test rows. ``compared``: configurations tested against the
    default (the interval's level is 1 - 0.05 / compared, Bonferroni's, when more than one is)."""
    metric = paired.decision_metric(default[0].metrics)
    named = paired.metric_name(metric, default[0].metrics)
    by_seed = {seed_of(run): run for run in default}
    estimates, replicates, unpaired, scored = [], [], 0, set()
    for run in runs:
        other = by_seed.get(seed_of(run))
        if other is None or run.scored is None or other.scored is None:
            continue
        same = (run.test_fingerprint is not None and run.test_fingerprint == other.test_fingerprint
                and len(run.scored) == len(other.scored) and np.array_equal(run.scored.labels, other.scored.labels))
        unpaired += not same
        estimate, spread = paired.resampled(run.scored, other.scored, (metric,), paired=same, seed=seed_of(run))
        estimates.append(estimate[metric])
        replicates.append(spread[0])
        scored.add(len(run.scored))
    who = "The best configuration" if place == 0 else f"Configuration #{place + 1}"
    if not estimates:
        return {"label": label, "metric": metric, "seeds": 0, "verdict": "n/a",
                "sentence": f"{who} ({label}): no seed with test predictions shared with the default's runs."}
    difference = float(np.mean(estimates))
    low, high = seed_and_row_interval(estimates, replicates, level)
    low, high = max(low, -1.0), min(high, 1.0)  # a difference of two scores in [0, 1]: nothing outside is possible
    shown = f"{difference:+.3f} {named} [{low:+.3f}, {high:+.3f}]"
    interval = f"{level:.1%}".replace(".0%", "%") + " interval"
    rows = f"the {scored.pop():,} test rows" if len(scored) == 1 else "the test rows"
    how = (f"mean over {len(estimates)} seeds; {interval} from the seeds' spread and {rows}"
           if len(estimates) > 1 else f"one seed, so the seeds' spread is not in the {interval}, only {rows}")
    if compared > 1:
        how += (f"; {interval}s, not 95%, as {compared} configurations are each compared with the default "
                "(Bonferroni)")
    if len(estimates) == 2:
        from scipy import stats

        t = stats.t.ppf(1 - (1 - level) / 2, 1)
        how += (f"; with two seeds Student's t has one degree of freedom ({t:.1f} standard errors each side): "
                "--seeds 3 or more narrows it")
    if low > 0:
        verdict, sentence = "better", f"{who} ({label}) beats the default by {shown} ({how})."
    elif high < 0:
        verdict, sentence = "worse", f"{who} ({label}) is worse than the default: {shown} ({how})."
    else:
        verdict, sentence = "noise", f"{who} ({label}) is not distinguishable from the default: {shown} ({how})."
    return {"label": label, "metric": metric, "metric_name": named, "seeds": len(estimates),
            "difference": round(difference, 6), "ci": [round(low, 6), round(high, 6)], "level": round(level, 6),
            "verdict": verdict, "unpaired_seeds": unpaired, "sentence": sentence}


def recommended(versus_default: list[dict[str, Any]], groups: dict[str, list[RunSummary]],
                metric: str) -> dict[str, Any] | None:
    """The final run to use: of the best configuration that beats the default (else the default's), the seed
    with the best validation value of the task's select_metric at its kept epoch, chosen on validation alone
    (the seeds share the search's validation rows)."""
    better = [item["label"] for item in versus_default if item["verdict"] == "better" and item["label"] in groups]
    label = better[0] if better else DEFAULT
    runs = [run for run in groups.get(label, []) if run.path is not None]
    if not runs:
        return None
    rows = {id(run): next((r for r in run.metrics["history"] if r.get("epoch") == run.metrics.get("best_epoch")),
                          run.metrics["history"][-1]) for run in runs}  # each run's kept epoch
    key = metric if metric != "loss" and all(metric in row for row in rows.values()) else "validation_loss"
    pick = (min if key == "validation_loss" else max)(runs, key=lambda run: float(rows[id(run)][key]))
    why = ("it beats the default" if better else "no configuration was shown to beat it") + (
        f"; of its {len(runs)} final runs, the one with the best validation {key.removeprefix('validation_')} at "
        "its kept epoch"
        if len(runs) > 1 else "")
    sentence = (f"Model to use: {pick.path} ({'the default' if label == DEFAULT else label}, seed {seed_of(pick)}: "
                f"{why}; chosen on validation, never on the test split). tk serve, tk export and tk predict take it.")
    return {"label": label, "run_dir": str(pick.path), "seed": seed_of(pick), "sentence": sentence}


def success_caveats(versus_default: list[dict[str, Any]], groups: dict[str, list[RunSummary]]) -> list[str]:
    """Under a "beats the default", what that configuration's own final runs warn of, in a line: beating the
    default is no verdict on whether the model is good (a linear baseline as good, a class never predicted)."""
    lines = []
    for item in versus_default:
        if item["verdict"] != "better":
            continue
        files = [run.path / "metrics.json" for run in groups[item["label"]] if run.path is not None]
        texts = [text for text, _, _ in warnings_across(files)]
        if texts:
            said = "; ".join(dict.fromkeys(gist(text) for text in texts))
            lines.append(f"Beating the default does not make {item['label']} good: its final runs warn that {said} "
                         "(the warnings below).")
    return lines


def gist(warning: str) -> str:
    """A warning's first clause, without its parentheses: 'the linear baseline is as good as the fine-tune
    within noise'."""
    text = re.sub(r"\s*\([^()]*\)", "", warning)
    text = re.split(r": |\. |\.$", text, maxsplit=1)[0]
    return text[:1].lower() + text[1:]


def seed_and_row_interval(differences: list[float], replicates: list[np.ndarray],
                          level: float = 1 - SIGNIFICANCE) -> tuple[float, float]:
    """The ``level`` interval of the mean paired difference over K seeds, from two sources of noise added as
    variances: the seeds' spread, s² / K with Student's t at K - 1 degrees of freedom (a bootstrap over three seeds
    would be far too narrow: it has three values to draw from), and the test rows, the mean of each seed's
    bootstrap variance (the seeds share their test rows, so their row noise does not average out)."""
    from scipy import stats

    k, mean = len(differences), float(np.mean(differences))
    rows = float(np.mean([np.var(r, ddof=1) for r in replicates]))
    upper = 1 - (1 - level) / 2
    seeds = stats.t.ppf(upper, k - 1) ** 2 * float(np.var(differences, ddof=1)) / k if k > 1 else 0.0
    half = float(np.sqrt(seeds + stats.norm.ppf(upper) ** 2 * rows))
    return mean - half, mean + half


def seed_of(run: RunSummary) -> int | None:
    return (run.settings or {}).get("seed")


def ranked_configs(trials: list[Any], direction: str, top: int,
                   default_params: dict[str, Any]) -> list[tuple[int, dict[str, Any], float]]:
    """The ``top`` best finished trials by their validation value, each configuration once, the default's
    left out (it is the reference): (trial number, params, value)."""
    finished = [t for t in trials if t.get("state") == "complete" and t.get("value") is not None]
    finished.sort(key=lambda t: t["value"], reverse=direction == "maximize")
    chosen: list[tuple[int, dict[str, Any], float]] = []
    seen = [default_params]
    for t in finished:
        if t["params"] in seen:
            continue
        seen.append(t["params"])
        chosen.append((t["number"], t["params"], t["value"]))
        if len(chosen) == top:
            break
    return chosen
