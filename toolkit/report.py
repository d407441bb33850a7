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
    if "best_epoch" in metrics:
        lines.append(f"  kept epoch {metrics['best_epoch']} of {metrics['epochs_run']} (lowest validation loss)"
                     if metrics.get("task") else f"  kept epoch {metrics['best_epoch']}")
    return "\n".join(lines)
