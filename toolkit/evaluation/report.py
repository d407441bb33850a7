"""Plain-text tables for metrics; shared by the CLI and the benchmark."""

from __future__ import annotations

from typing import Any

HEADLINE = ("accuracy", "f1", "precision", "recall", "f1_weighted")


def format_metrics(metrics: dict[str, Any]) -> str:
    n = metrics.get("n")
    lines = [f"Test metrics ({n} examples, 95% bootstrap intervals):" if n else "Test metrics:"]
    for name in HEADLINE:
        if name in metrics:
            ci = metrics.get(f"{name}_ci")
            interval = f"  [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            lines.append(f"  {name:<12} {metrics[name]:.4f}{interval}")
    per_class = metrics.get("per_class", {})
    names = [name for name in per_class if isinstance(per_class[name], dict) and "support" in per_class[name]
             and name not in ("macro avg", "weighted avg")]
    if names:
        lines.append(f"  {'class':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
        for name in names:
            row = per_class[name]
            lines.append(f"  {name:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1-score']:>6.3f} "
                         f"{int(row['support']):>7}")
    if "best_epoch" in metrics:
        lines.append(f"  kept epoch {metrics['best_epoch']} of {metrics['epochs_run']} (lowest validation loss)"
                     if metrics.get("task") else f"  kept epoch {metrics['best_epoch']}")
    return "\n".join(lines)
