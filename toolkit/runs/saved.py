"""Using a finished run: predict new texts, evaluate on new data."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import CORE_SETTINGS, TaskConfig, build_task
from toolkit.errors import TkError
from toolkit.evaluation.inference import predict_probabilities
from toolkit.runs.folders import read_json, run_status
from toolkit.evaluation.scoring import positive_class, score
from toolkit.data.tokens import encode_texts


@dataclass
class SavedRun:
    run_dir: Path
    task: TaskConfig
    model: Any
    tokenizer: Any

    @property
    def labels(self) -> tuple[str, ...]:
        config = self.model.config
        return tuple(config.id2label[i] for i in range(config.num_labels))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        encoded = encode_texts(self.tokenizer, texts, self.task.max_length, self.task.truncation)
        return predict_probabilities(self.model, encoded, self.task.eval_batch_size)


def load_run(run_dir: Path) -> SavedRun:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (run_dir / "model").is_dir():
        status = run_status(run_dir)
        raise TkError(f"{run_dir} holds no saved model (run status: {status}). "
                      + ("Finish it with: tk run --resume " + str(run_dir) if status == "interrupted" else
                         "Pass a folder that tk run completed (tk list --runs shows them)."))
    task = task_of(run_dir)
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    return SavedRun(run_dir, task, model, tokenizer)


def task_of(run_dir: Path, pm=None) -> TaskConfig:
    """The task a run was trained with. Keys no longer declared (a plugin since removed, an older tk) are left out."""
    values = dict(read_json(run_dir / "config.json")["task"])
    declared = tuple(pm.settings().values()) if pm is not None else ()
    known = set(CORE_SETTINGS) | {setting.name for setting in declared}
    return build_task(values.pop("name"), {k: v for k, v in values.items() if k in known}, run_dir / "config.json",
                      declared)


def evaluate_run(pm, saved: SavedRun, data: str | None, split: str) -> dict[str, Any]:
    """The saved model on a dataset split (all of its rows), with the run's own label names."""
    from toolkit.data.loading import load_named

    dataset = pm.dataset(saved.task.dataset)
    if dataset.labels != saved.labels:
        raise TkError(f"{saved.run_dir}: the model's labels {saved.labels} differ from dataset "
                      f"'{dataset.name}' labels {dataset.labels}.")
    base = read_json(saved.run_dir / "config.json").get("base")  # the task's data key is relative to it
    labelled = load_named(pm, dataset.name, data, saved.task.data, Path(base) if base else None)
    rows = labelled.split(split)
    started = time.perf_counter()
    probabilities = saved.probabilities(list(rows["text"]))
    metrics = score(pm, rows["label"], probabilities, dataset.labels, confidence=True,
                    positive_label=positive_class(saved.task, dataset.labels, str(saved.run_dir)),
                    baseline_label=saved_baseline(saved.run_dir, dataset.labels))
    metrics.update({"run": str(saved.run_dir), "data_source": labelled.source.describe(), "split": split,
                    "data_given": data is not None,
                    "seconds": round(time.perf_counter() - started, 2), "notes": labelled.notes})
    return metrics


def saved_baseline(run_dir: Path, label_names: tuple[str, ...]) -> int | None:
    """The class the run's training split held most (saved in its metrics.json); None for older runs."""
    path = run_dir / "metrics.json"
    baseline = (read_json(path).get("baseline") or {}) if path.exists() else {}
    label = baseline.get("label")
    if baseline.get("source") != "training split" or label not in label_names:
        return None
    return label_names.index(label)
