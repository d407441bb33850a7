"""Checking an export against the run's own model on the same rows, before tk export calls it done."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from toolkit.data.rows import column
from toolkit.evaluation.intervals import mcnemar_exact
from toolkit.evaluation.paired import metric_name
from toolkit.evaluation.report import interval_text
from toolkit.evaluation.scoring import positive_class, score
from toolkit.runs.saved import saved_baseline
from toolkit.training.device import use_bf16

MIN_AGREEMENT = 0.99  # the share of rows on which the export must give the run's answer (tk export --min-agreement)


ROUND_ROWS = 32  # the fewest rows a timing round scores: smaller parts would time batching, not the model
MAX_ROUNDS = 4


def timed_pair(run: Any, export: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Both models' probabilities, and texts/s of each, tokenizing included (as tk evaluate times it).

    The rows are scored in interleaved rounds (run, export; then export, run; ...), so a change in the
    machine's load while checking falls on both sides alike; each round's ratio is kept, and their range says
    how steady the machine was. One text each goes first, untimed (it sets up kernels and thread pools)."""
    run.probabilities(texts[:1])
    export.probabilities(texts[:1])
    parts = np.array_split(np.arange(len(texts)), max(1, min(MAX_ROUNDS, len(texts) // ROUND_ROWS)))
    found: dict[str, list[np.ndarray]] = {"run": [], "export": []}
    seconds = {"run": [], "export": []}
    for number, part in enumerate(parts):
        for side in ("run", "export") if number % 2 == 0 else ("export", "run"):
            model = run if side == "run" else export
            started = time.perf_counter()
            found[side].append(model.probabilities([texts[i] for i in part]))
            seconds[side].append(max(time.perf_counter() - started, 1e-9))
    speed = {side: len(texts) / sum(spent) for side, spent in seconds.items()}
    ratios = [ours / theirs for ours, theirs in zip(seconds["run"], seconds["export"])]  # export's speed-up
    return (np.concatenate(found["run"]), np.concatenate(found["export"]),
            {"run": round(speed["run"], 1), "export": round(speed["export"], 1),
             "rounds": len(parts), "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)]})


def answers(model: Any, probabilities: np.ndarray) -> np.ndarray:
    """Single-label: each row's class id; multi-label: each row's 0/1 label set under the tuned thresholds."""
    if model.multi_label:
        return (probabilities >= model.thresholds).astype(np.int8)
    return probabilities.argmax(axis=1)


def correct(model: Any, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per row: the answer is the truth (multi-label: the whole label set, as subset accuracy counts it)."""
    return (predicted == truth).all(axis=1) if model.multi_label else predicted == truth


def compare(pm, run: Any, export: Any, rows: Any, task: Any) -> dict[str, Any]:
    """Both models on ``rows``: agreement, the largest probability difference, accuracy and F1 with their 95%
    intervals, McNemar's exact p for their accuracies, and texts/s of each on this machine."""
    texts, truth = column(rows, "text"), np.asarray(column(rows, "label"))
    ours, theirs, speed = timed_pair(run, export, texts)
    ours_answers, theirs_answers = answers(run, ours), answers(export, theirs)
    same = (ours_answers == theirs_answers).all(axis=1) if run.multi_label else ours_answers == theirs_answers
    options = dict(confidence=True, positive_label=positive_class(task, run.labels, str(run.run_dir)),
                   baseline_label=saved_baseline(run.run_dir, run.labels), thresholds=run.thresholds)
    metrics = {"run": score(pm, truth, ours, run.labels, **options),
               "export": score(pm, truth, theirs, run.labels, **options)}
    truth_answers = truth.astype(np.int8) if run.multi_label else truth
    return {
        "rows": len(texts),
        "agreement": float(same.mean()) if len(texts) else None,
        "disagreements": int((~same).sum()),
        "max_probability_difference": float(np.abs(ours - theirs).max()) if len(texts) else None,
        "mcnemar_p": mcnemar_exact(correct(run, ours_answers, truth_answers),
                                   correct(run, theirs_answers, truth_answers)),
        "texts_per_second": speed,
        "run_bf16": use_bf16(run.task.bf16),  # the run's side rounds to bf16: about 0.01 apart from float32
        "metrics": {side: {key: found.get(key) for key in METRIC_KEYS if key in found}
                    for side, found in metrics.items()},
    }


# multi-label: subset accuracy and micro F1; a _ci_note says why a metric has no interval (too few rows);
# problem and positive_label say which F1 it is (macro, micro, one class's)
METRIC_KEYS = ("accuracy", "accuracy_ci", "accuracy_ci_note", "f1", "f1_ci", "f1_ci_note", "problem", "positive_label")


def describe(check: dict[str, Any], backend: str) -> list[str]:
    """The check as lines for the terminal and the export's README.md."""
    def metric_line(side: str, name: str) -> str:
        found = check["metrics"][side]
        parts = []
        for key in ("accuracy", "f1"):
            if found.get(key) is not None:
                parts.append(f"{metric_name(key, found)} {found[key]:.3f}"
                             f"{interval_text(found, key).replace('  ', ' ')}")
        return f"  {name:<22} " + ", ".join(parts)

    speed = check["texts_per_second"]
    return [f"Checked on {check['rows']:,} rows: the export gives the run's answer on {check['agreement']:.2%} "
            f"({check['disagreements']:,} differ); largest probability difference "
            f"{check['max_probability_difference']:.2g}"
            + (" (int8 quantization moves probabilities more than rounding does; the floor is on the answers)"
               if backend.endswith("int8") else
               " (the run scores in bf16 on this machine, whose rounding alone moves probabilities, typically "
               "by about 0.01 and more for texts near a decision boundary)"
               if check.get("run_bf16") else ""),
            metric_line("run", "run (tk, PyTorch)"), metric_line("export", f"export ({backend})"),
            f"  McNemar exact p (same accuracy) = {check['mcnemar_p']:.3g}",
            f"  texts/s on this machine, tokenizing included: run {speed['run']:,.1f}, export {speed['export']:,.1f} "
            f"({speed['export'] / speed['run']:.2f}x{_spread(speed)})"]


def _spread(speed: dict[str, Any]) -> str:
    """'; 1.25x to 1.38x over 4 interleaved rounds': how much the ratio moved while the machine checked."""
    low, high = speed.get("ratio_range") or (None, None)
    if low is None or speed.get("rounds", 1) < 2:
        return "; one round, so no spread"
    return f"; {low:.2f}x to {high:.2f}x over {speed['rounds']} interleaved rounds"
