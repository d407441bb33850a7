"""The fixed-shape training loop of the cuda-graphs engine, run eagerly on the CPU (CI has no GPU).

What capture adds on top (the same weights as eager steps, fresh dropout
masks per replay) is checked on a GPU by benchmarks/gpu_check.py.
"""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

import plugins.engines.cuda_graphs.loop
from plugins.engines.cuda_graphs.step import (
    CAPTURE_COST,
    STEP_COST_PER_TOKEN,
    WIDTH_STEP,
    DeviceSplit,
    TrainStep,
    batch_width,
    epoch_batches,
    plan_widths,
    planned_width,
)
from tests.helpers import train_toy
from toolkit.config import build_task
from toolkit.training.policy import build_optimizer

TASK = build_task("t", {"dataset": "toy", "model": "tiny", "learning_rate": 1e-2, "max_length": 64}, "test")


def tiny_classifier(tiny_model):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    return model.eval()  # no dropout: both sides must compute the same numbers


def toy_split(rows=20, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, rows)
    return {"input_ids": [rng.integers(5, 40, n).tolist() for n in lengths], "length": lengths.tolist(),
            "labels": rng.integers(0, 2, rows).tolist()}


def test_a_step_with_a_short_batch_equals_a_plain_training_step_on_its_real_rows(tiny_model):
    split = toy_split()
    real_rows = np.array([3, 7, 11, 12, 19])
    width = batch_width(np.array(split["length"]), real_rows, 64, True)

    model = tiny_classifier(tiny_model)
    step = TrainStep(model, build_optimizer(model, TASK),
                     DeviceSplit.from_split(split, 64, 0, torch.device("cpu")), 8, bf16=False, capture=False,
                     task=TASK)
    step.run(torch.tensor(np.r_[real_rows, [-1, -1, -1]]), width)  # 3 empty slots

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
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    optimizer.step()

    assert step.take_step_losses() == pytest.approx([loss.item()], rel=1e-5)
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)
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
        return sum(batch_width(lengths, rows, 70, True) for rows in batches)

    assert padded_widths(True) < 0.8 * padded_widths(False)


def test_batch_widths_are_a_few_fixed_shapes():
    lengths = np.array([5, 33, 64, 70])
    assert batch_width(lengths, np.array([0, -1]), 70, True) == WIDTH_STEP
    assert batch_width(lengths, np.array([0, 1]), 70, True) == 2 * WIDTH_STEP
    assert batch_width(lengths, np.array([2]), 70, True) == 64
    assert batch_width(lengths, np.array([3, 0]), 70, True) == 70  # capped at max_length
    assert batch_width(lengths, np.array([0]), 70, dynamic_padding=False) == 70


def modelled_cost(widths, plan, batch_size):
    steps = sum(1.0 + STEP_COST_PER_TOKEN * batch_size * planned_width(plan, width) for width in widths)
    return steps + CAPTURE_COST * len(plan)


@pytest.mark.parametrize("max_length,batch_size", [(70, 16), (128, 16), (512, 16), (512, 64)])
def test_planned_widths_are_the_cheapest_set_under_the_cost_model(max_length, batch_size):
    from itertools import combinations

    lengths = np.minimum(np.random.default_rng(max_length).lognormal(np.log(max_length / 3), 0.8, 2000), max_length)
    lengths = np.maximum(lengths.astype(int), 1)
    widths = np.concatenate([[batch_width(lengths, rows, max_length, True) for rows in
                              epoch_batches(lengths, batch_size, seed=0, epoch=epoch, grouped=True)]
                             for epoch in (1, 2)])
    plan = plan_widths(widths, batch_size)
    narrower = sorted(set(widths.tolist()) - {max_length})
    every_plan = [[*subset, max_length] for size in range(len(narrower) + 1) for subset in combinations(narrower, size)]
    assert plan[-1] == max_length and all(planned_width(plan, width) >= width for width in widths)
    assert modelled_cost(widths, plan, batch_size) == pytest.approx(
        min(modelled_cost(widths, other, batch_size) for other in every_plan))
    assert plan_widths(widths, batch_size, capture_cost=0.0) == sorted(set(widths.tolist()))  # eager: no padding


def test_short_texts_train_at_one_width_when_captures_cost_more_than_the_padding_saves():
    widths = np.array([32] * 150 + [64] * 80 + [70] * 20)  # 2,000 tweets, 2 epochs, batch 16
    assert plan_widths(widths, 16) == [70]
    assert plan_widths(np.array([32] * 5000 + [512] * 10), 16) == [32, 512]  # many steps: worth a second shape


def test_cuda_graphs_engine_trains_and_saves_a_complete_run(pm, project, engine):
    if engine != "cuda-graphs":
        pytest.skip("the trainer engine is covered everywhere else")
    outcome = train_toy(pm, project, engine=engine)
    assert outcome.status == "complete" and outcome.metrics["accuracy"] >= 0.9
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["engine"] == "cuda-graphs" and manifest["training"]["captured"] is False
    assert manifest["training"]["global_steps"] == 4 * 160 // 8
    assert len(outcome.metrics["history"]) == 4
    assert not (outcome.run_dir / "checkpoints").exists()


def test_resume_points_are_written_once_their_interval_passes(pm, project, engine, monkeypatch):
    if engine != "cuda-graphs":
        pytest.skip("the trainer engine writes a checkpoint every epoch")
    written = []
    monkeypatch.setattr(plugins.engines.cuda_graphs.loop.resume_points.CheckpointWriter, "save",
                        lambda self, name, state, policy_state: written.append((name, len(policy_state["history"]))))
    train_toy(pm, project, engine=engine, epochs=3, resume_point_seconds=0)
    assert written == [("checkpoint-20", 1), ("checkpoint-40", 2)]  # none after the last epoch

