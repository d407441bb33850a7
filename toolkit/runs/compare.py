"""Comparing runs: which differences are real and which are noise.

Two runs on the same test rows are compared with McNemar's exact test on
their paired predictions (Dietterich, 1998). Groups of runs over several
seeds are compared with Welch's t-test on their accuracies. p < 0.05 is
"real"; anything else is marked as within noise.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import TkError

SIGNIFICANCE = 0.05


@dataclass
class RunSummary:
    label: str
    metrics: dict[str, Any]
    correct: np.ndarray | None  # per test row: prediction right?
    test_fingerprint: str | None
    path: Path | None = None

    @property
    def best_validation_loss(self) -> float:
        return min(r["validation_loss"] for r in self.metrics["history"])


def summarise(run_dir: Path, label: str | None = None) -> RunSummary:
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.exists():
        raise TkError(f"{run_dir} has no metrics.json: not a completed tk run (tk list --runs shows each status).")
    metrics = json.loads(metrics_file.read_text())
    manifest_file = run_dir / "manifest.json"
    fingerprint = None
    if manifest_file.exists():
        fingerprint = json.loads(manifest_file.read_text())["data_fingerprint"].get("test", {}).get("sha256")
    correct = None
    if (run_dir / "predictions.csv").exists():
        with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
            correct = np.array([row["label"] == row["predicted"] for row in csv.DictReader(handle)])
    return RunSummary(label or run_dir.name, metrics, correct, fingerprint, run_dir)


def mcnemar_p(a: RunSummary, b: RunSummary) -> float | None:
    """Exact McNemar p-value for two runs' paired test predictions; None when rows differ."""
    from toolkit.evaluation.intervals import mcnemar_exact

    if a.correct is None or b.correct is None or a.test_fingerprint != b.test_fingerprint:
        return None
    if len(a.correct) != len(b.correct):
        return None
    return mcnemar_exact(a.correct, b.correct)


def welch_p(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:
        return 1.0 if statistics.mean(a) == statistics.mean(b) else 0.0
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def verdict(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"real (p={p:.3f})" if p < SIGNIFICANCE else f"noise (p={p:.2f})"


def compare_runs(runs: list[RunSummary]) -> str:
    """One row per run; the best test accuracy is the reference for 'vs best'."""
    best = max(runs, key=lambda r: r.metrics["accuracy"])
    header = (f"{'run':<34} {'train s':>7} {'best ep':>7} {'val loss':>8} {'accuracy [95% CI]':>22} "
              f"{'f1 [95% CI]':>22} {'overfit':>7}  vs best")
    lines = [header, "-" * (len(header) + 10)]
    for run in runs:
        m = run.metrics
        against = "best" if run is best else verdict(mcnemar_p(run, best))
        lines.append(f"{run.label:<34} {m['train_seconds']:>7.1f} {m['best_epoch']:>7} {run.best_validation_loss:>8.4f} "
                     f"{_with_ci(m, 'accuracy'):>22} {_with_ci(m, 'f1'):>22} "
                     f"{'yes' if m.get('diagnosis', {}).get('overfitting') else 'no':>7}  {against}")
    return "\n".join(lines)


def compare_groups(groups: dict[str, list[RunSummary]]) -> str:
    """Mean ± sd over seeds per setting; Welch's t-test against the best mean accuracy."""
    accuracy = {name: [r.metrics["accuracy"] for r in runs] for name, runs in groups.items()}
    best = max(accuracy, key=lambda name: statistics.mean(accuracy[name]))
    header = (f"{'setting':<34} {'seeds':>5} {'train s':>9} {'val loss':>15} {'accuracy':>15} {'f1':>15} "
              f"{'overfit':>7}  vs best")
    lines = [header, "-" * (len(header) + 10)]
    for name, runs in groups.items():
        f1 = [r.metrics["f1"] for r in runs]
        overfit = sum(bool(r.metrics.get("diagnosis", {}).get("overfitting")) for r in runs)
        against = "best" if name == best else verdict(welch_p(accuracy[name], accuracy[best]))
        lines.append(f"{name:<34} {len(runs):>5} {statistics.mean(r.metrics['train_seconds'] for r in runs):>9.1f} "
                     f"{_mean_sd([r.best_validation_loss for r in runs]):>15} {_mean_sd(accuracy[name]):>15} "
                     f"{_mean_sd(f1):>15} {f'{overfit}/{len(runs)}':>7}  {against}")
    return "\n".join(lines)


def _with_ci(metrics: dict[str, Any], name: str) -> str:
    ci = metrics.get(f"{name}_ci")
    return f"{metrics[name]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{metrics[name]:.3f}"


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"
