"""class_weights: one weighted loss, the same on every engine, recorded in metrics.json."""

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from tests.helpers import as_trained, fails_with, quiet, toy_task, train_toy
from toolkit.config import build_task, with_overrides
from toolkit.errors import TkError
from toolkit.evaluation.inference import predict_probabilities
from toolkit.runs.pipeline import prepare
from toolkit.runs.saved import load_run
from toolkit.training import policy

NAMES = ["ham", "spam", "other"]


def task_with(weights):
    return build_task("t", {"dataset": "d", "model": "m", "class_weights": weights}, "tasks.toml")


def test_balanced_is_scikit_learns_rule_and_an_absent_class_keeps_1():
    labels = [0, 0, 0, 0, 0, 0, 1, 1]  # class 2 has no training row
    weights = policy.class_weights(task_with("balanced"), labels, NAMES)
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=np.array(labels))
    assert weights[:2] == pytest.approx(expected) and weights[2] == 1.0
    assert weights[1] == pytest.approx(8 / (2 * 2))


def test_a_table_names_labels_and_the_others_weigh_1():
    assert list(policy.class_weights(task_with({"spam": 4.0}), [0, 1], NAMES)) == [1.0, 4.0, 1.0]
    assert policy.class_weights(task_with("none"), [0, 1], NAMES) is None
    with pytest.raises(TkError, match="'sapm', which the data does not have. Labels: ham, spam, other"):
        policy.class_weights(task_with({"sapm": 4.0}), [0, 1], NAMES)


@pytest.mark.parametrize("value, message", [
    ("balance", "must be 'none', 'balanced' or a table like { spam = 4.0 }, got 'balance'. Did you mean 'balanced'?"),
    ({"spam": "high"}, "the weight of 'spam' must be a number, got 'high'"),
    ({"spam": -1.0}, "the weight of 'spam' must not be negative"),
    ({"spam": 0}, "the weight of 'spam' must be above 0"),
    (3, "must be a string or a table, got 3"),
])
def test_bad_class_weights_are_named(value, message):
    with pytest.raises(TkError, match="key 'class_weights'") as error:
        task_with(value)
    assert message in str(error.value)


def test_the_weighted_loss_is_torchs_weighted_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 1, 1, 0])
    weights = torch.tensor([0.5, 2.0, 1.5])
    expected = torch.nn.CrossEntropyLoss(weight=weights)(logits, labels)
    task = task_with("none")
    assert policy.training_loss(logits, labels, task, weights) == pytest.approx(expected.item(), abs=1e-6)
    assert policy.training_loss(logits, labels, task) == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item())
    valid = torch.tensor([1, 1, 1, 1, 0, 0])  # padding rows of a fixed-size batch count for nothing
    first_four = torch.nn.CrossEntropyLoss(weight=weights)(logits[:4], labels[:4])
    assert policy.training_loss(logits, labels, task, weights, valid) == pytest.approx(first_four.item(), abs=1e-6)


def test_the_validation_loss_is_weighted_as_training_is():
    probabilities = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels, weights = np.array([0, 1, 1]), np.array([1.0, 3.0])
    expected = -(np.log(0.8) + 3 * np.log(0.7) + 3 * np.log(0.4)) / 7
    assert policy.validation_loss(labels, probabilities, weights) == pytest.approx(expected)
    assert policy.validation_loss(labels, probabilities) == pytest.approx(-np.log([0.8, 0.7, 0.4]).mean())


def test_weighted_training_on_every_engine(pm, project, engine):
    """Weights reach the loss on both engines; metrics.json records them; the best row is the saved model's."""
    outcome = train_toy(pm, project, engine=engine, epochs=2, bf16="off", class_weights={"pos": 3.0})
    assert outcome.metrics["class_weights"] == {"neg": 1.0, "pos": 3.0}
    task = toy_task(project, engine=engine, bf16="off", class_weights={"pos": 3.0})
    validation = prepare(pm, task, None, project, quiet()).tokenized["validation"]
    probabilities = as_trained(predict_probabilities(load_run(outcome.run_dir).model, validation, 64), outcome.run_dir)
    best = outcome.metrics["history"][outcome.metrics["best_epoch"] - 1]
    weighted = policy.validation_loss(np.asarray(validation["labels"]), probabilities, np.array([1.0, 3.0]))
    assert weighted == pytest.approx(best["validation_loss"], abs=1e-4)
    unweighted = train_toy(pm, project, "plain", engine=engine, epochs=2, bf16="off")
    assert unweighted.metrics["class_weights"] is None
    assert unweighted.metrics["history"][0]["train_loss"] != pytest.approx(
        outcome.metrics["history"][0]["train_loss"], abs=1e-4), "the weights changed nothing"


def test_unknown_label_in_class_weights_stops_before_training(project):
    fails_with("class_weights names 'spam', which the data does not have. Labels: neg, pos.",
               "--tasks", project / "tasks.toml", "run", "toy", "--set", "class_weights={spam=2.0}")
    assert not (project / "runs").exists() or not any((project / "runs").glob("toy-*/model"))


def test_class_weights_are_refused_for_multi_label_tasks():
    with pytest.raises(TkError, match="'class_weights' weighs classes of single-label tasks"):
        build_task("t", {"dataset": "d", "model": "m", "problem": "multi-label", "class_weights": "balanced"}, "x")


def test_with_overrides_accepts_balanced(project):
    assert with_overrides(toy_task(project), {"class_weights": "balanced"}).class_weights == "balanced"
