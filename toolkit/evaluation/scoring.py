"""The metrics stage: every plugin's tk_compute_metrics answer, merged into one dict."""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.errors import TkError


def require_metrics(pm) -> None:
    """A run or evaluation with no tk_compute_metrics plugin would end 'complete' with no scores."""
    if not pm.hook.tk_compute_metrics.get_hookimpls():
        raise TkError("No plugin computes metrics (tk_compute_metrics): is the built-in 'metrics' plugin disabled? "
                      "Remove it from TK_DISABLE_PLUGINS or install a metrics plugin.")


def score(pm, labels, probabilities: np.ndarray, label_names: tuple[str, ...],
          confidence: bool = False) -> dict[str, Any]:
    require_metrics(pm)
    merged: dict[str, Any] = {}
    # pluggy calls the last registered plugin first; reversing lets later plugins add or override.
    for result in reversed(pm.hook.tk_compute_metrics(labels=np.asarray(labels), probabilities=probabilities,
                                                      label_names=label_names, confidence=confidence)):
        merged.update(result or {})
    return merged
