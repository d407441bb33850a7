"""One training policy, several engines: both engines decide alike; the engine is explicit."""

import json

import numpy as np
import pytest
import torch

from tests.helpers import InterruptAt, as_trained, fails_with, ok, quiet, toy_task, train_toy
from toolkit.evaluation.inference import predict_probabilities
from toolkit.records import EpochRecord
from toolkit.runs import folders
from toolkit.runs.pipeline import prepare, resume_task
from toolkit.runs.saved import load_run
from toolkit.training import epochs, policy

SCRIPTED_LOSSES = [0.50, 0.40, 0.40, 0.45, 0.30, 0.20]  # epoch 3 ties epoch 2: the earlier epoch is kept


@pytest.fixture
def scripted(monkeypatch):
    """Validation losses follow SCRIPTED_LOSSES; every snapshot of best weights is recorded with its epoch."""
    losses = iter(SCRIPTED_LOSSES)
    monkeypatch.setattr(epochs, "validation_loss", lambda labels, probabilities, weights=None: next(losses))
    snapshots = []
    real_snapshot = policy.snapshot_weights

    def recording_snapshot(model):
        weights = real_snapshot(model)
        snapshots.append({k: v.clone() for k, v in weights.items()})
        return weights

    monkeypatch.setattr(policy, "snapshot_weights", recording_snapshot)
    return snapshots


def test_engines_take_the_same_decisions(pm, project, engine, scripted):
    # calibration off: the saved weights are compared with epoch 2's as trained (a temperature rescales the head)
    outcome = train_toy(pm, project, engine=engine, epochs=6, patience=2, calibration="off")
    history = outcome.metrics["history"]
    # epoch 2 improves; 3 ties (no gain), 4 is worse: patience 2 stops after epoch 4.
    assert [row["validation_loss"] for row in history] == SCRIPTED_LOSSES[:4]
    assert outcome.metrics["best_epoch"] == 2 and outcome.metrics["epochs_run"] == 4
    assert len(scripted) == 2, "best weights are kept at epochs 1 and 2 only"
    saved = load_run(outcome.run_dir).model.state_dict()
    for key, value in scripted[-1].items():
        assert torch.equal(saved[key].float(), value.float().cpu()), f"{engine}: saved model is not epoch 2's ({key})"
    recorded = json.loads((outcome.run_dir / "config.json").read_text())["engine"]
    assert recorded == engine


def test_history_means_the_same_on_both_engines(pm, project, engine):
    """The validation loss of the saved (best) model, recomputed, is the best epoch's history row."""
    outcome = train_toy(pm, project, engine=engine, epochs=3, bf16="off")
    prepared = prepare(pm, toy_task(project, engine=engine, bf16="off"), None, project, quiet())
    validation = prepared.tokenized["validation"]
    probabilities = as_trained(predict_probabilities(load_run(outcome.run_dir).model, validation, 64), outcome.run_dir)
    recomputed = policy.validation_loss(np.asarray(validation["labels"]), probabilities)
    best = outcome.metrics["history"][outcome.metrics["best_epoch"] - 1]
    assert recomputed == pytest.approx(best["validation_loss"], abs=1e-4)
    assert best["validation_loss"] == min(row["validation_loss"] for row in outcome.metrics["history"])
    assert all(row["train_loss"] > 0 and row["seconds"] > 0 for row in outcome.metrics["history"])
    history = json.loads((outcome.run_dir / "history.json").read_text())
    for row in history:  # the training loss is the mean of the epoch's step losses, on both engines
        assert row["steps"] == 160 // 8 and len(row["step_losses"]) == 20
        assert row["train_loss"] == pytest.approx(np.mean(row["step_losses"]), abs=1e-5)
    curve = outcome.metrics["step_loss"]
    assert [point[0] for point in curve] == list(range(1, 61)) and curve[-1][1] == history[-1]["step_losses"][-1]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_metrics(pm, project, engine, with_dropout):
    steps_per_epoch = 160 // 8
    whole = train_toy(pm, project, "whole", engine=engine, epochs=3)
    stopped = train_toy(pm, project, "parts", progress=InterruptAt(steps_per_epoch + 5), engine=engine, epochs=3)
    assert stopped.status == "interrupted" and folders.run_status(stopped.run_dir) == "interrupted"
    assert (stopped.run_dir / "checkpoints" / f"checkpoint-{steps_per_epoch}" / "tk_state.json").is_file()

    resumed = resume_task(pm, stopped.run_dir, quiet())
    assert resumed.status == "complete" and folders.run_status(stopped.run_dir) == "complete"
    assert resumed.metrics["accuracy"] == whole.metrics["accuracy"]
    assert len(resumed.metrics["history"]) == 3
    for a, b in zip(resumed.metrics["history"], whole.metrics["history"]):
        assert a["validation_loss"] == pytest.approx(b["validation_loss"], abs=1e-6)
    assert not (stopped.run_dir / "checkpoints").exists()


def test_selection_ties_keep_the_earlier_epoch_and_patience_stops():
    task = toy_task_config(patience=2, epochs=10, select_metric="accuracy")
    selection = policy.Selection(task)
    decisions = [selection.end_epoch(EpochRecord(i + 1, 1.0, 1.0, acc, 0.5, 1.0))
                 for i, acc in enumerate([0.7, 0.8, 0.8, 0.79])]
    assert [d.improved for d in decisions] == [True, True, False, False]
    assert [d.stop for d in decisions] == [False, False, False, True]
    assert selection.best_epoch == 2
    restored = policy.Selection(task)
    restored.restore(json.loads(json.dumps(selection.state())))
    assert restored.best_epoch == 2 and restored.epochs_without_gain == 2 and restored.history == selection.history


def test_last_epoch_stops_without_patience():
    selection = policy.Selection(toy_task_config(patience=0, epochs=2))
    assert not selection.end_epoch(EpochRecord(1, 1.0, 0.5, 0.5, 0.5, 1.0)).stop
    assert selection.end_epoch(EpochRecord(2, 1.0, 0.9, 0.5, 0.5, 1.0)).stop


def test_learning_rate_schedule_and_decay_groups():
    task = toy_task_config(learning_rate=1e-3, warmup_ratio=0.1, weight_decay=0.1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    optimizer = policy.build_optimizer(model, task)
    decays = sorted((g["weight_decay"], len(g["params"])) for g in optimizer.param_groups)
    assert decays == [(0.0, 3), (0.1, 1)]  # only the Linear weight decays
    scheduler = policy.build_scheduler(optimizer, task, 100)
    rates = []
    for step in range(101):
        if step in (0, 5, 10, 55, 100):
            rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.0, 5e-4, 1e-3, 5e-4, 0.0])


@pytest.mark.parametrize("scale", [0.01, 100.0])  # gradients within the limit, and far above it
def test_eager_clipping_gives_clip_grad_norm_numbers(scale):
    torch.manual_seed(0)
    grads = [torch.randn(30, 20) * scale, torch.randn(7) * scale]
    expected = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    clipped = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for params in (expected, clipped):
        for param, grad in zip(params, grads):
            param.grad = grad.clone()
    norm = torch.nn.utils.clip_grad_norm_(expected, policy.MAX_GRAD_NORM)
    assert torch.equal(policy.clip_gradients_if_needed(clipped), norm)
    for a, b in zip(expected, clipped):
        assert torch.equal(a.grad, b.grad)
    assert (torch.cat([p.grad.flatten() for p in clipped]).norm() <= policy.MAX_GRAD_NORM + 1e-5)


def toy_task_config(**values):
    from toolkit.config import build_task

    return build_task("t", {"dataset": "d", "model": "m", **values}, "test")


def test_engine_is_printed_and_listed(project):
    output = ok("run", "toy", "--set", "epochs=1", "--output", project / "runs")
    assert "Engine: eager (auto; cuda-graphs: it needs a CUDA GPU)" in output or torch.cuda.is_available()
    listing = ok("list")
    assert "Engines:" in listing and "cuda-graphs" in listing and "engine auto: eager" in listing
    assert "fast_dropout" in listing and "resume_point_seconds" in listing


def test_unknown_engine_suggests(project):
    fails_with("task 'toy', key 'engine': Unknown engine 'eagr'. Did you mean 'eager'?",
               "run", "toy", "--set", "engine=eagr")


def test_the_retired_trainer_engine_names_its_replacement(project):
    fails_with('The engine "trainer" (the Hugging Face Trainer) was retired', "run", "toy", "--set", "engine=trainer",
               "--output", project / "runs")
    assert not (project / "runs").exists() or not any((project / "runs").iterdir())


def test_cuda_graphs_without_a_gpu_is_refused(project):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    fails_with('engine = "cuda-graphs" cannot train here: it needs a CUDA GPU', "run", "toy", "--set",
               "engine=cuda-graphs", "--output", project / "runs")


def test_cpu_batches_are_padded_to_a_multiple_of_4_tokens_with_the_same_answers(tiny_model):
    """The eager strategy's CPU batches: longest text rounded up to 4 tokens (fewer widths for oneDNN to build
    kernels for), never past max_length, the padding masked, so the model answers as for the longest."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification

    from plugins.engines.eager.step import CPU_WIDTH_STEP
    from toolkit.training.batches import DeviceSplit, batch_width

    split = {"input_ids": [[2, 7, 8, 9, 3], [2, 7, 3], [2] + [9] * 15 + [3]], "length": [5, 3, 17], "labels": [0, 0, 1]}
    data = DeviceSplit.from_split(split, 18, 0, torch.device("cpu"))
    lengths = np.array(split["length"])
    width = [batch_width(lengths, np.arange(n), 18, True, CPU_WIDTH_STEP) for n in (1, 2, 3)]
    assert width == [8, 8, 18]  # 5 -> 8, 17 -> 20 capped at max_length
    ids, mask, labels = data.batch(torch.tensor([0, 1]), 8)
    assert ids.shape == (2, 8) and mask.sum(dim=1).tolist() == [5, 3] and labels.tolist() == [0, 0]
    longest = data.batch(torch.tensor([0, 1]), 5)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits,
                                   model(input_ids=longest[0], attention_mask=longest[1]).logits)
