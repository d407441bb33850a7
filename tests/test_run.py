import json

import pytest
from transformers import pipeline

from toolkit.config import with_overrides
from toolkit.runs.pipeline import run_task
from toolkit.tasks_file import load_config
from toolkit.training.progress import Progress


def quiet():
    return Progress(echo=lambda text: None, bar=False)


@pytest.mark.parametrize("bf16", ["on", "off"])  # both paths bf16 = "auto" can take, whatever this CPU picks
def test_run_writes_a_complete_loadable_run(pm, project, bf16):
    task = with_overrides(load_config(project / "tasks.toml").task("toy"), {"bf16": bf16})
    outcome = run_task(pm, task, output=project / "runs", base=project, progress=quiet())

    run = outcome.run_dir
    assert outcome.status == "complete"
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.9, metrics
    low, high = metrics["accuracy_ci"]
    assert low <= metrics["accuracy"] <= high
    assert len(metrics["history"]) == 4
    assert {"manifest.json", "config.json", "history.json", "predictions.csv", "loss.png"} <= {
        p.name for p in run.iterdir()}
    assert not (run / "checkpoints").exists()
    classifier = pipeline("text-classification", model=str(run / "model"))
    assert classifier("good great wonderful best")[0]["label"] == "pos"


def test_multiclass_run(pm, project):
    task = load_config(project / "tasks.toml").task("toy3")
    outcome = run_task(pm, task, output=project / "runs", base=project, progress=quiet())
    # Chance is 1/3. The tiny model either learns all three classes (1.0) or, on some seeds and batch orders,
    # settles with two of them merged (0.667): either is a run that learned, and no trajectory is assumed.
    assert outcome.metrics["accuracy"] > 0.6
    assert "f1_weighted" in outcome.metrics
    assert len(outcome.metrics["confusion_matrix"]) == 3


def test_same_seed_same_metrics(pm, project):
    task = with_overrides(load_config(project / "tasks.toml").task("toy"), {"epochs": 1, "learning_rate": 1e-3})
    first = run_task(pm, task, output=project / "runs", base=project, progress=quiet())
    second = run_task(pm, task, output=project / "runs", base=project, progress=quiet())
    assert first.run_dir != second.run_dir
    assert first.metrics["history"][0]["validation_loss"] == second.metrics["history"][0]["validation_loss"]
    assert first.metrics["accuracy"] == second.metrics["accuracy"]
