"""Checking an export against the run's own model on the same rows, before tk export calls it done."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from toolkit.data.rows import column
from toolkit.evaluation.intervals import mcnemar_exact
from toolkit.evaluation.report import interval_text
from toolkit.evaluation.scoring import positive_class, score
from toolkit.runs.saved import saved_baseline
from toolkit.training.device import use_bf16

MIN_AGREEMENT = 0.99  # the share of rows on which the export must give the run's answer (tk export --min-agreement)


def timed_probabilities(model: Any, texts: list[str]) -> tuple[np.ndarray, float]:
    """Probabilities and texts/s, tokenizing included (as tk evaluate times it), after one text untimed (the
    first call sets up kernels and thread pools)."""
    model.probabilities(texts[:1])
    started = time.perf_counter()
    probabilities = model.probabilities(texts)
    seconds = time.perf_counter() - started
    return probabilities, len(texts) / seconds if seconds > 0 else float("inf")


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
    ours, ours_speed = timed_probabilities(run, texts)
    theirs, theirs_speed = timed_probabilities(export, texts)
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
        "texts_per_second": {"run": round(ours_speed, 1), "export": round(theirs_speed, 1)},
        "run_bf16": use_bf16(run.task.bf16),  # the run's side rounds to bf16: about 0.01 apart from float32
        "metrics": {side: {key: found.get(key) for key in METRIC_KEYS if key in found}
                    for side, found in metrics.items()},
    }


# multi-label: subset accuracy and micro F1; a _ci_note says why a metric has no interval (too few rows)
METRIC_KEYS = ("accuracy", "accuracy_ci", "accuracy_ci_note", "f1", "f1_ci", "f1_ci_note")


def describe(check: dict[str, Any], backend: str) -> list[str]:
    """The check as lines for the terminal and the export's README.md."""
    def metric_line(side: str, name: str) -> str:
        found = check["metrics"][side]
        parts = []
        for key in ("accuracy", "f1"):
            if found.get(key) is not None:
                parts.append(f"{key.replace('_', ' ')} {found[key]:.3f}{interval_text(found, key).replace('  ', ' ')}")
        return f"  {name:<22} " + ", ".join(parts)

    speed = check["texts_per_second"]
    return [f"Checked on {check['rows']:,} rows: the export gives the run's answer on {check['agreement']:.2%} "
            f"({check['disagreements']:,} differ); largest probability difference "
            f"{check['max_probability_difference']:.2g}"
            + (" (the run scores in bf16 on this machine, whose rounding alone moves probabilities about 0.01)"
               if check.get("run_bf16") else ""),
            metric_line("run", "run (tk, PyTorch)"), metric_line("export", f"export ({backend})"),
            f"  McNemar exact p (same accuracy) = {check['mcnemar_p']:.3g}",
            f"  texts/s on this machine, tokenizing included: run {speed['run']:,.1f}, export {speed['export']:,.1f} "
            f"({speed['export'] / speed['run']:.2f}x)"]
