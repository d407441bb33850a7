"""Long documents: which pooling of a chunks run's windows answers best, from one prediction pass.

    TK_DATA_DIR=../shared/data python benchmarks/pooling.py RUN [--rows 5000]

RUN is a finished ``long_text = "chunks"`` run on the imdb dataset. The
windows of a seeded sample of ROWS test reviews are scored once; their
probabilities are then pooled each way tk could (``mean``, ``max``, and the
mean of log-probabilities, a geometric mean, as a third candidate) and the
accuracies compared on the same reviews (Wilson intervals, exact McNemar).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def geometric_mean(probabilities: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """Softmax of the windows' mean log-probabilities (the mean of logits, up to a per-window constant)."""
    from toolkit.evaluation.pooling import pool

    logs = pool(np.log(np.clip(probabilities, 1e-12, None)), documents, "mean")
    exps = np.exp(logs - logs.max(axis=1, keepdims=True))
    return exps / exps.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()

    from toolkit.cli import _quiet_libraries

    _quiet_libraries()
    from toolkit.data.loading import load_named
    from toolkit.data.tokens import encode_windows
    from toolkit.evaluation.inference import predict_probabilities
    from toolkit.evaluation.intervals import mcnemar_exact, wilson
    from toolkit.evaluation.pooling import pool
    from toolkit.plugins import PluginManager
    from toolkit.runs.saved import load_run
    from toolkit.training.device import use_bf16

    saved = load_run(args.run)
    task = saved.task
    if task.long_text != "chunks":
        sys.exit(f"{args.run} is not a long_text = 'chunks' run")
    data = load_named(PluginManager().load(), task.dataset, base=REPO)
    test = data.split("test").shuffle(seed=task.seed).select(range(args.rows))
    names = data.dataset.labels
    truth = np.array([saved.labels.index(names[i]) for i in test["label"]])
    encoded = encode_windows(saved.tokenizer, list(test["text"]), task.max_length, task.window_stride)
    started = time.perf_counter()
    windows = predict_probabilities(saved.model, encoded, task.eval_batch_size, use_bf16(task.bf16))
    seconds = time.perf_counter() - started
    documents = np.asarray(encoded["document"])
    print(f"{args.rows} reviews, {len(documents)} windows ({len(documents) / args.rows:.2f} per review), "
          f"scored in {seconds:.0f} s ({len(documents) / seconds:.0f} windows/s)")
    pooled = {"mean": pool(windows, documents, "mean"), "max": pool(windows, documents, "max"),
              "geometric mean": geometric_mean(windows, documents)}
    correct = {name: p.argmax(axis=1) == truth for name, p in pooled.items()}
    for name, right in correct.items():
        interval = wilson(int(right.sum()), len(right))
        against = "" if name == "mean" else f"   vs mean: McNemar p = {mcnemar_exact(right, correct['mean']):.3g}"
        print(f"{name:<15} accuracy {right.mean():.4f} [{interval.low:.4f}, {interval.high:.4f}]{against}")


if __name__ == "__main__":
    main()
