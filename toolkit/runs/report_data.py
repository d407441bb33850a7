"""What a run's report.html is made from: its metrics, manifest and predictions, read through the run
loader, and the label arrays the sections draw."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.runs.loader import open_run


@dataclass
class RunData:
    run_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    predictions: list[dict[str, str]]
    warning: str | None = None  # --allow-incomplete: why this is not a complete run's page
    cv_fold: int | None = None  # a tk cv fold's folder: its "test" rows are the fold held out

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.manifest.get("labels") or []]

    @property
    def task(self) -> dict[str, Any]:
        return self.manifest.get("task") or {}

    @property
    def multi_label(self) -> bool:
        return self.metrics.get("problem") == "multi-label"


def load_run_data(run_dir: Path, allow_incomplete: bool = False, writing: bool = False) -> RunData:
    """The files the page is made from, through the run loader: a folder that is not a complete, intact run
    is a TkError that says so (``writing``: tk run writing the page of the run it is saving)."""
    folder = open_run(Path(run_dir), allow_incomplete or writing, verify="none" if writing else "results")
    return RunData(folder.path, folder.metrics, folder.manifest, folder.predictions(),
                   None if writing else folder.warning, folder.config.get("cv_fold"))


def label_arrays(run: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(true ids, predicted ids, probability matrix) from predictions.csv, or None when it is unusable."""
    labels = run.labels
    index = {name: i for i, name in enumerate(labels)}
    try:
        y = np.array([index[row["label"]] for row in run.predictions])
        pred = np.array([index[row["predicted"]] for row in run.predictions])
        probs = np.array([[float(row[f"p_{name}"]) for name in labels] for row in run.predictions])
    except (KeyError, ValueError, TypeError):
        return None
    return (y, pred, probs) if len(y) else None


def label_sets(run: RunData) -> tuple[np.ndarray, np.ndarray] | None:
    """Multi-label: (true multi-hot rows, probabilities) from predictions.csv, or None when it is unusable."""
    labels = run.labels
    try:
        truth = np.array([[name in json.loads(row["label"]) for name in labels] for row in run.predictions])
        probs = np.array([[float(row[f"p_{name}"]) for name in labels] for row in run.predictions])
    except (KeyError, ValueError, TypeError):
        return None
    return (truth, probs) if len(truth) else None
