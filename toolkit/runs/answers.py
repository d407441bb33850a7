"""tk predict's answers as JSON rows, in one place: tk predict --json and tk serve's /predict print these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # tk --help imports this module: numpy only when answering
    import numpy as np

DECIMALS = 4  # probabilities as tk predict prints them


def prediction_rows(model: Any, texts: list[str], probabilities: np.ndarray) -> list[dict[str, Any]]:
    """One row per text. Single-label: the most probable class and every class's probability; multi-label
    (``model.multi_label``): the labels whose probability reaches their tuned threshold, most probable first,
    with the probabilities and thresholds. ``model`` is a saved run, or an ONNX export loaded like one."""
    labels = model.labels
    if model.multi_label:
        thresholds = {name: round(float(t), DECIMALS) for name, t in zip(labels, model.thresholds)}
        return [{"text": text, "labels": found,
                 "probabilities": {name: round(float(v), DECIMALS) for name, v in zip(labels, p)},
                 "thresholds": thresholds}
                for text, p, found in zip(texts, probabilities, model.label_sets(probabilities))]
    return [{"text": text, "label": labels[int(p.argmax())],
             "probabilities": {name: round(float(v), DECIMALS) for name, v in zip(labels, p)}}
            for text, p in zip(texts, probabilities)]
