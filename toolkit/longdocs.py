"""The pooled answer for long texts, outside the CLI: what ``tk predict`` gives a long_text = "chunks" run.

    from toolkit.longdocs import predict_long
    predict_long("runs/imdb-minilm-20261127-041500", ["A long review ..."])

``transformers.pipeline("text-classification", model=RUN/model)`` sees one
window only (it truncates at the model's limit, or fails beyond it); this
cuts each text into the run's windows, runs the model on every window and
pools the windows' probabilities per text, exactly as tk run scored the test
split. Not part of the plugin API.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from toolkit.config import build_task
from toolkit.runs.saved import SavedRun, load_run
from toolkit.training.progress import library_bars_off


def predict_long(path: str | Path, texts: list[str], *, max_length: int | None = None, stride: int | None = None,
                 pooling: str | None = None) -> list[dict[str, Any]]:
    """One ``{"label", "score", "probabilities"}`` per text, like a pipeline's answers with ``top_k=None`` folded;
    a multi-label model's also holds ``labels``, those at or above their thresholds.

    ``path``: a tk run folder or its ``model/`` folder (the run's max_length,
    stride and pooling are used), or any saved classifier folder (then
    ``max_length`` defaults to 128). Keyword arguments override the run's values.
    """
    saved = _load(Path(path), max_length)
    overrides = {k: v for k, v in (("max_length", max_length), ("stride", stride), ("pooling", pooling))
                 if v is not None}
    saved.task = replace(saved.task, long_text="chunks", **overrides)
    probabilities = saved.probabilities(list(texts))
    answers = [{"label": saved.labels[int(row.argmax())], "score": float(row.max()),
                "probabilities": {name: float(value) for name, value in zip(saved.labels, row)}}
               for row in probabilities]
    if saved.multi_label:  # every label at or above its saved threshold, most probable first
        for answer, labels in zip(answers, saved.label_sets(probabilities)):
            answer["labels"] = labels
    return answers


def _load(path: Path, max_length: int | None):
    for run_dir in (path, path.parent):
        if (run_dir / "config.json").is_file() and (run_dir / "model").is_dir():
            return load_run(run_dir)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    task = build_task(path.name, {"dataset": "-", "model": str(path), "max_length": max_length or 128,
                                  "long_text": "chunks"}, path)
    with library_bars_off():
        return SavedRun(path, task, AutoModelForSequenceClassification.from_pretrained(path),
                        AutoTokenizer.from_pretrained(path))
