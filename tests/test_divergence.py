"""A run whose loss becomes nan or inf stops at that step, failed, with no metrics that look like a result."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import train_toy
from toolkit.errors import TkError
from toolkit.training import policy


@pytest.fixture
def nan_from_step_3(monkeypatch):
    """The policy's loss, but nan from the third step on (the arithmetic of a diverged run, on any CPU)."""
    real, calls = policy.training_loss, []

    def diverging(logits, labels, task, weights=None, valid=None, total=None):
        calls.append(1)
        loss = real(logits, labels, task, weights, valid, total)
        return loss * float("nan") if len(calls) >= 3 else loss

    monkeypatch.setattr(policy, "training_loss", diverging)


def test_a_nan_loss_stops_the_run_failed_on_every_engine(pm, project, engine, nan_from_step_3):
    with pytest.raises(TkError, match=r"Training loss became nan at step 3\b.*learning_rate") as raised:
        train_toy(pm, project, engine=engine, epochs=2)
    assert "\n" not in str(raised.value)
    run_dir = next((project / "runs").iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "predictions.csv").exists()


def test_nan_validation_predictions_stop_the_epoch():
    with pytest.raises(policy.NonFiniteLoss, match="after epoch 2 hold nan"):
        policy.epoch_record(2, [0.5], np.array([0, 1]), np.array([[np.nan, np.nan], [0.5, 0.5]]), 1.0,
                            lambda labels, probabilities: {})


def test_the_first_bad_step_is_named():
    task = toy_task_like(learning_rate=2e-5)
    with pytest.raises(policy.NonFiniteLoss, match="became inf at step 12"):
        policy.check_losses([0.7, 0.6, float("inf"), float("nan")], 10, task)
    policy.check_losses([0.7, 0.6], 10, task)  # finite: nothing said


def toy_task_like(**values):
    from toolkit.config import build_task

    return build_task("t", {"dataset": "toy", "model": "tiny", **values}, Path("tasks.toml"))


@pytest.mark.parametrize("values, said", [
    ({"learning_rate": 2e5}, "learning_rate = 200000 is outside"),
    ({"learning_rate": 1e-9}, "barely change"),
    ({"class_weights": {"a": 1e308}}, "class_weights range"),
])
def test_settings_beyond_the_sane_range_warn(values, said):
    task = toy_task_like(**values)
    weights = np.array([1.0, 1e308]) if "class_weights" in values else None
    assert any(said in line for line in policy.range_warnings(task, weights))


def test_usual_settings_do_not_warn():
    assert policy.range_warnings(toy_task_like(learning_rate=3e-5), np.array([1.0, 4.0])) == []


def test_the_warning_comes_before_training(pm, project, nan_from_step_3):
    said = []
    from toolkit.training.progress import Progress

    with pytest.raises(TkError):
        train_toy(pm, project, progress=Progress(said.append, bar=False), learning_rate=50.0)
    warned = next(i for i, line in enumerate(said) if "learning_rate = 50 is outside" in line)
    assert warned < next(i for i, line in enumerate(said) if "Run folder" in line)
