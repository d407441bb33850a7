"""The core training loop, its batch plan and the two step strategies (cuda-graphs runs eagerly on the CPU:
CI has no GPU; what capture adds on top is checked on a GPU by benchmarks/gpu_check.py)."""

import json
from functools import partial

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from plugins.engines.cuda_graphs.step import CAPTURE_COST, WIDTH_STEP, GraphSteps
from plugins.engines.eager.step import EagerSteps
from tests.helpers import train_toy
from toolkit.config import build_task
from toolkit.training import policy, resume_points
from toolkit.training.batches import (
    STEP_COST_PER_TOKEN,
    DeviceSplit,
    batch_width,
    epoch_batches,
    plan_widths,
    planned_width,
)
from toolkit.training.policy import build_optimizer
from toolkit.training.strategy import StepPlan

TASK = build_task("t", {"dataset": "toy", "model": "tiny", "learning_rate": 1e-2, "max_length": 64}, "test")


def tiny_classifier(tiny_model):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    with torch.no_grad():
        model.classifier.weight.mul_(10)  # confident and wrong on some rows: a gradient norm that clipping cuts
    return model.eval()  # no dropout: both sides must compute the same numbers


def toy_split(rows=20, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, rows)
    return {"input_ids": [rng.integers(5, 40, n).tolist() for n in lengths], "length": lengths.tolist(),
            "labels": rng.integers(0, 2, rows).tolist()}


def step_plan(split, batch_size=8, processes=1, rank=0):
    return StepPlan(DeviceSplit.from_split(split, 64, 0, torch.device("cpu")), batch_size, processes, rank,
                    bf16=False, steps_per_epoch=4,
                    training_loss=partial(policy.training_loss, task=TASK, weights=None),
                    batch_weight=partial(policy.batch_weight, task=TASK, weights=None), flag=torch.zeros(1))


@pytest.mark.parametrize("strategy", [EagerSteps, GraphSteps])
def test_a_step_with_a_short_batch_equals_a_plain_training_step_on_its_real_rows(tiny_model, strategy):
    split = toy_split()
    real_rows = np.array([3, 7, 11, 12, 19])
    width = batch_width(np.array(split["length"]), real_rows, 64, True, WIDTH_STEP)

    model = tiny_classifier(tiny_model)
    step = strategy()
    step.setup(model, build_optimizer(model, TASK), step_plan(split))
    step.train_step(torch.tensor(np.r_[real_rows, [-1, -1, -1]]), width)  # 3 empty slots

    reference = tiny_classifier(tiny_model)
    optimizer = build_optimizer(reference, TASK)
    ids = torch.zeros((len(real_rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(real_rows):
        ids[i, :split["length"][row]] = torch.tensor(split["input_ids"][row])
        mask[i, :split["length"][row]] = 1
    labels = torch.tensor([split["labels"][row] for row in real_rows])
    loss = reference(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    assert torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0) > 1.5  # the step clipped
    optimizer.step()

    assert step.take_losses() == pytest.approx([loss.item()], rel=1e-5)
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        # The clipped gradients, and the weights AdamW made of them (its first step is nearly scale-free, and
        # amplifies rounding where a gradient is near its epsilon: hence the looser weights tolerance).
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-8, msg=name)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), tiny_classifier(tiny_model).parameters()))


@pytest.mark.parametrize("grouped", [False, True])
def test_epoch_batches_hold_every_row_once_in_a_seeded_order(grouped):
    lengths = np.random.default_rng(0).integers(1, 70, 103)
    batches = epoch_batches(lengths, 16, seed=1, epoch=1, grouped=grouped)
    assert batches.shape == (7, 16)
    assert sorted(batches[batches >= 0]) == list(range(103)) and (batches < 0).sum() == 112 - 103
    assert np.array_equal(batches, epoch_batches(lengths, 16, seed=1, epoch=1, grouped=grouped))
    assert not np.array_equal(batches, epoch_batches(lengths, 16, seed=1, epoch=2, grouped=grouped))


def test_grouped_batches_carry_less_padding():
    lengths = np.random.default_rng(0).integers(5, 70, 2000)

    def padded_widths(grouped):
        batches = epoch_batches(lengths, 16, seed=0, epoch=1, grouped=grouped)
        return sum(batch_width(lengths, rows, 70, True, WIDTH_STEP) for rows in batches)

    assert padded_widths(True) < 0.8 * padded_widths(False)


def test_batch_widths_are_a_few_fixed_shapes():
    lengths = np.array([5, 33, 64, 70])
    width = partial(batch_width, lengths, max_length=70, step=WIDTH_STEP)
    assert width(np.array([0, -1]), dynamic_padding=True) == WIDTH_STEP
    assert width(np.array([0, 1]), dynamic_padding=True) == 2 * WIDTH_STEP
    assert width(np.array([2]), dynamic_padding=True) == 64
    assert width(np.array([3, 0]), dynamic_padding=True) == 70  # capped at max_length
    assert width(np.array([0]), dynamic_padding=False) == 70
    assert batch_width(lengths, np.array([0, -1]), 70, True, step=4) == 8  # the eager CPU step: 5 tokens -> 8


def modelled_cost(widths, plan, batch_size):
    steps = sum(1.0 + STEP_COST_PER_TOKEN * batch_size * planned_width(plan, width) for width in widths)
    return steps + CAPTURE_COST * len(plan)


@pytest.mark.parametrize("max_length,batch_size", [(70, 16), (128, 16), (512, 16), (512, 64)])
def test_planned_widths_are_the_cheapest_set_under_the_cost_model(max_length, batch_size):
    from itertools import combinations

    lengths = np.minimum(np.random.default_rng(max_length).lognormal(np.log(max_length / 3), 0.8, 2000), max_length)
    lengths = np.maximum(lengths.astype(int), 1)
    widths = np.concatenate([[batch_width(lengths, rows, max_length, True, WIDTH_STEP) for rows in
                              epoch_batches(lengths, batch_size, seed=0, epoch=epoch, grouped=True)]
                             for epoch in (1, 2)])
    plan = plan_widths(widths, batch_size, CAPTURE_COST)
    narrower = sorted(set(widths.tolist()) - {max_length})
    every_plan = [[*subset, max_length] for size in range(len(narrower) + 1) for subset in combinations(narrower, size)]
    assert plan[-1] == max_length and all(planned_width(plan, width) >= width for width in widths)
    assert modelled_cost(widths, plan, batch_size) == pytest.approx(
        min(modelled_cost(widths, other, batch_size) for other in every_plan))
    assert plan_widths(widths, batch_size, capture_cost=0.0) == sorted(set(widths.tolist()))  # eager: no padding


def test_short_texts_train_at_one_width_when_captures_cost_more_than_the_padding_saves():
    widths = np.array([32] * 150 + [64] * 80 + [70] * 20)  # 2,000 tweets, 2 epochs, batch 16
    assert plan_widths(widths, 16, CAPTURE_COST) == [70]
    assert plan_widths(np.array([32] * 5000 + [512] * 10), 16, CAPTURE_COST) == [32, 512]  # many steps: worth a second shape


def test_each_engine_trains_and_saves_a_complete_run(pm, project, engine):
    outcome = train_toy(pm, project, engine=engine)
    assert outcome.status == "complete" and outcome.metrics["accuracy"] >= 0.9
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["engine"] == engine and manifest["training"]["strategy"] == engine
    if engine == "cuda-graphs":
        assert manifest["training"]["captured"] is False  # no GPU: the same step, eagerly
    else:
        assert manifest["training"]["fast_dropout"] is not torch.cuda.is_available()  # a CPU lever
    assert manifest["training"]["global_steps"] == 4 * 160 // 8
    assert len(outcome.metrics["history"]) == 4
    assert not (outcome.run_dir / "checkpoints").exists()


def test_resume_points_are_written_as_the_strategy_asks(pm, project, engine, monkeypatch):
    written = []
    monkeypatch.setattr(resume_points.CheckpointWriter, "save",
                        lambda self, name, state, policy_state: written.append((name, len(policy_state["history"]))))
    train_toy(pm, project, engine=engine, epochs=3, output="every-epoch",
              **({"resume_point_seconds": 0} if engine == "cuda-graphs" else {}))
    assert written == [("checkpoint-20", 1), ("checkpoint-40", 2)]  # none after the last epoch
    if engine == "cuda-graphs":  # its default: a resume point once 60 s of training would be lost (toy epochs: never)
        written.clear()
        train_toy(pm, project, engine=engine, epochs=3, output="interval")
        assert written == []


def test_the_two_strategies_train_the_same_run(pm, project, monkeypatch):
    """The same data, seed and loop through eager steps and the graph step's eager path: the same decisions
    and history, and the same saved weights within float32 tolerance (the widths differ: 4 vs 32 tokens, padding
    masked; the tiny model has no dropout, so no random draw depends on a width)."""
    import plugins.engines.cuda_graphs

    monkeypatch.setattr(plugins.engines.cuda_graphs, "unavailable", lambda task: None)
    runs = {engine: train_toy(pm, project, engine=engine, bf16="off", epochs=3, output=engine)
            for engine in ("eager", "cuda-graphs")}
    eager, graphs = (runs[name].metrics for name in ("eager", "cuda-graphs"))
    assert eager["best_epoch"] == graphs["best_epoch"] and eager["epochs_run"] == graphs["epochs_run"] == 3
    for ours, theirs in zip(eager["history"], graphs["history"]):
        for key in ("train_loss", "validation_loss", "accuracy", "f1"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), (ours["epoch"], key)
    weights = {name: load_file(runs[name].run_dir / "model" / "model.safetensors") for name in runs}
    assert weights["eager"].keys() == weights["cuda-graphs"].keys()
    for key, value in weights["eager"].items():
        torch.testing.assert_close(value, weights["cuda-graphs"][key], rtol=1e-4, atol=1e-5, msg=key)
    assert eager["accuracy"] == graphs["accuracy"]


def test_the_onednn_probe_leaves_the_global_random_state_alone():
    """The first bf16 prediction of a process probes oneDNN with a small random layer. Drawn from the global
    generator, it shifted every later dropout mask of a run whose first validation it was: a run resumed in a
    new process then trained differently from the uninterrupted one (tests/test_faults.py saw it)."""
    from toolkit.evaluation import cpu_inference

    cpu_inference.onednn_linear_available.cache_clear()
    before = torch.get_rng_state()
    cpu_inference.onednn_linear_available()
    assert torch.equal(torch.get_rng_state(), before)
