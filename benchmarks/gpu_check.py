"""Checks of the CUDA-graph training step on a GPU (a script for a lent GPU, not part of the test suite).

    python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --cold     # where the first epoch's extra seconds go
    python benchmarks/gpu_check.py --cold --warm   # the same after tk's background GPU warm-up

1. Same function: with dropout off and fp32 (TF32 off), steps replayed as
   graphs leave the same weights as the same steps run eagerly, over batches
   of three widths, a short batch and a changing learning rate.
2. Dropout still draws fresh masks on every replay.
3. Time per training step at the BERT-base shape in bf16: eager against replayed graph.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functools import partial  # noqa: E402

from plugins.engines.cuda_graphs.step import GraphSteps  # noqa: E402
from toolkit.config import TaskConfig  # noqa: E402
from toolkit.training import policy  # noqa: E402
from toolkit.training.batches import DeviceSplit  # noqa: E402
from toolkit.training.policy import build_optimizer  # noqa: E402
from toolkit.training.strategy import StepPlan  # noqa: E402

# Without CUDA it runs eagerly on the CPU: a dry run that catches mistakes before a GPU is lent.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TASK = TaskConfig(name="check", dataset="none", model="none", learning_rate=1e-3, max_length=128)


def bert(dropout: float, **shape):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=2, **shape)
    return BertForSequenceClassification(config).to(DEVICE)


def random_split(rows: int, max_length: int, vocab: int) -> dict:
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, max_length + 1, rows)
    return {"input_ids": [rng.integers(1000, vocab, n).tolist() for n in lengths], "length": lengths.tolist(),
            "labels": rng.integers(0, 2, rows).tolist()}


def trainer_for(model, data: DeviceSplit, batch_size: int, bf16: bool, capture: bool) -> GraphSteps:
    """The cuda-graphs strategy on ``data`` in one process, as the training loop sets it up."""
    capture = capture and DEVICE.type == "cuda"
    optimizer = build_optimizer(model, TASK, rate_on=DEVICE if capture else None)
    step = GraphSteps()
    step.capture = capture  # eager on a GPU too, for the comparison
    step.setup(model, optimizer, StepPlan(data, batch_size, 1, 0, bf16, steps_per_epoch=1024,
                                          training_loss=partial(policy.training_loss, task=TASK, weights=None),
                                          batch_weight=partial(policy.batch_weight, task=TASK, weights=None),
                                          flag=torch.zeros(1, device=DEVICE)))
    return step


def set_rate(optimizer, rate: float) -> None:
    """Device-tensor rates (what a captured graph reads) are filled in place; plain floats replaced."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(rate)
        else:
            group["lr"] = rate


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def check_same_function() -> float:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    shape = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}
    data = DeviceSplit.from_split(random_split(200, 128, 30522), 128, 0, DEVICE)
    batches = [(np.arange(i * 16, i * 16 + 16), width) for i, width in enumerate([128, 64, 32, 128, 64, 32])]
    batches.append((np.r_[np.arange(150, 160), -np.ones(6, dtype=int)], 128))  # a short batch
    models = []
    for capture in (False, True):
        model = bert(0.0, **shape)
        step = trainer_for(model, data, 16, bf16=False, capture=capture)
        for index, (rows, width) in enumerate(batches * 2):
            set_rate(step.optimizer, 1e-3 * (1 - index / 20))
            step.train_step(torch.as_tensor(rows, device=DEVICE), width)
        sync()
        models.append((model, sum(step.take_losses()), sorted(step.graphs)))
    (eager, eager_loss, _), (graphed, graphed_loss, widths) = models
    worst = max(((a - b).norm() / a.norm()).item() for a, b in zip(eager.parameters(), graphed.parameters()))
    print(f"1. graphs {widths}: summed loss eager {eager_loss:.6f} graphed {graphed_loss:.6f}; "
          f"largest relative weight difference {worst:.2e}")
    assert abs(eager_loss - graphed_loss) < 1e-3 * abs(eager_loss) and worst < 1e-4, "graphed step differs"
    torch.backends.cuda.matmul.allow_tf32 = True
    return worst


def check_dropout_varies() -> None:
    data = DeviceSplit.from_split(random_split(64, 64, 30522), 64, 0, DEVICE)
    model = bert(0.1, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    step = trainer_for(model, data, 16, bf16=True, capture=True)
    set_rate(step.optimizer, 0.0)  # weights stay put: only dropout can change the loss
    rows = torch.arange(16, device=DEVICE)
    losses = []
    for _ in range(3):
        step.train_step(rows, 64)
        losses.append(sum(step.take_losses()))
    print(f"2. same batch, same weights, three replays: losses {', '.join(f'{x:.5f}' for x in losses)}")
    assert len(set(losses)) == 3 or DEVICE.type != "cuda", "dropout masks repeat across replays"


def time_steps(batch_size: int, capture: bool, steps: int) -> float:
    data = DeviceSplit.from_split(random_split(batch_size * 8, 128, 30522), 128, 0, DEVICE)
    data.host_lengths[:] = 128
    data.lengths.fill_(128)
    step = trainer_for(bert(0.1), data, batch_size, bf16=True, capture=capture)
    batches = torch.arange(batch_size * 8, device=DEVICE).view(8, batch_size)
    for i in range(3):
        step.train_step(batches[i], 128)
    sync()
    times = []
    for i in range(steps):
        started = time.perf_counter()
        step.train_step(batches[i % 8], 128)
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def cold_start() -> None:
    """Where the first epoch's extra seconds go, in a fresh process: each phase of the first capture."""
    from plugins.engines.cuda_graphs import step as static_step
    from toolkit.evaluation.inference import predict_probabilities
    from toolkit.training.device import start_gpu_warm_up, wait_for_gpu_warm_up

    marks = [("start", time.perf_counter())]
    if "--warm" in sys.argv:
        start_gpu_warm_up()  # as tk run does while it loads and tokenizes the data

    def mark(name):
        sync()
        marks.append((name, time.perf_counter()))

    torch.zeros(1, device=DEVICE)
    mark("CUDA context")
    model = bert(0.1)
    mark("BERT-base built on the device")
    data = DeviceSplit.from_split(random_split(2000, 128, 30522), 128, 0, DEVICE)
    mark("2000 rows to the device")
    wait_for_gpu_warm_up()
    mark("background warm-up joined")
    step = trainer_for(model, data, 16, bf16=True, capture=True)
    static_step.prime_optimizer_state(step.optimizer, step.params)
    mark("optimizer state primed")
    for i in range(2):
        step._forward_backward(128)
        mark(f"warm-up {i + 1}")
    for p in step.params:
        p.grad = None
    if DEVICE.type == "cuda":
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step._step(128)
        mark("capture")
    for i in range(2):
        graph.replay() if DEVICE.type == "cuda" else step._step(128)
        mark(f"replay {i + 1}")
    import sklearn.metrics  # noqa: F401
    mark("import sklearn.metrics")
    split = random_split(500, 128, 30522)
    for i in range(2):
        predict_probabilities(model, split, 64, bf16=True)
        mark(f"evaluate 500 rows ({i + 1})")
    for (_, before), (name, after) in zip(marks, marks[1:]):
        print(f"   {name:<32} {(after - before) * 1000:8.1f} ms")


def main() -> None:
    import transformers

    if "--cold" in sys.argv:
        cold_start()
        return

    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU (dry run, no capture)"
    print(f"{name}, torch {torch.__version__}, transformers {transformers.__version__}")
    check_same_function()
    check_dropout_varies()
    print("3. BERT-base shape, bf16, median ms per training step (synchronised each step):")
    for batch_size in (16, 32, 64) if DEVICE.type == "cuda" else (2,):
        eager = time_steps(batch_size, capture=False, steps=30 if DEVICE.type == "cuda" else 2)
        graphed = time_steps(batch_size, capture=True, steps=100 if DEVICE.type == "cuda" else 2)
        print(f"   {batch_size}x128: eager {eager:6.1f} ms, graph {graphed:6.1f} ms, {eager / graphed:4.1f}x")


if __name__ == "__main__":
    main()
