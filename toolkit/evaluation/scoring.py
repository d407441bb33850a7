"""The metrics stage: every plugin's tk_compute_metrics answer, merged into one dict."""

from __future__ import annotations

from typing import Any

import numpy as np


def score(pm, labels, probabilities: np.ndarray, label_names: tuple[str, ...],
          confidence: bool = False) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    # pluggy calls the last registered plugin first; reversing lets later plugins add or override.
    for result in reversed(pm.hook.tk_compute_metrics(labels=np.asarray(labels), probabilities=probabilities,
                                                      label_names=label_names, confidence=confidence)):
        merged.update(result or {})
    return merged
