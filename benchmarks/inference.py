"""Prediction throughput on the CPU: tk's path (oneDNN fused linear layers on bf16 weight copies, bf16
attention) against plain bf16 autocast over the fp32 model, and against the model held in bf16 (every op in
bf16, LayerNorm and softmax included); same run, same texts, interleaved rounds.

    TK_DATA_DIR=../shared/data python benchmarks/inference.py RUN [--rows 2000] [--rounds 3]

RUN is a finished run (its dataset's test split supplies the texts). All
sides pad per batch, longest first, with the run's eval_batch_size; the
tokenizing is done once, outside the timing. The largest difference from the
first side's probabilities is printed too: a faster side counts only if it
also answers the same.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from toolkit.cli.group import quiet_libraries
    from toolkit.memory import reuse_freed_memory

    quiet_libraries()
    reuse_freed_memory()  # as the tk command does
    import torch

    from toolkit.data.loading import load_named
    from toolkit.data.tokens import encode_texts
    from toolkit.evaluation import cpu_inference
    from toolkit.evaluation.inference import predict_probabilities
    from toolkit.plugins import PluginManager
    from toolkit.runs.saved import load_run

    saved = load_run(args.run)
    task = saved.task
    test = load_named(PluginManager().load(), task.dataset, base=REPO).split("test")
    texts = list(test.select(range(min(args.rows, len(test))))["text"])
    encoded = encode_texts(saved.tokenizer, texts, task.max_length, task.truncation)
    sides = {"autocast, unfused": (saved.model, True, False),
             "tk: oneDNN fused": (saved.model, True, True),
             "model held in bf16": (copy.deepcopy(saved.model).to(torch.bfloat16), False, False)}
    seconds = {name: [] for name in sides}
    answers = {}
    fused_available = cpu_inference.onednn_linear_available
    for _ in range(args.rounds):
        for name, (model, autocast, fused) in sides.items():
            cpu_inference.onednn_linear_available = fused_available if fused else lambda: False
            started = time.perf_counter()
            answers[name] = predict_probabilities(model, encoded, task.eval_batch_size, bf16=autocast)
            seconds[name].append(time.perf_counter() - started)
    cpu_inference.onednn_linear_available = fused_available
    print(f"{len(texts):,} texts of {task.dataset} at max_length {task.max_length}, batch {task.eval_batch_size}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds (median)")
    baseline = statistics.median(next(iter(seconds.values())))
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"{name:<28} {len(texts) / median:7.1f} texts/s  {baseline / median:5.2f}x")
    first, *others = answers.values()
    for name, other in list(answers.items())[1:]:
        print(f"{name}: largest probability difference {np.abs(first - other).max():.4f}; answers that differ: "
              f"{int((first.argmax(axis=1) != other.argmax(axis=1)).sum())} of {len(texts)}")


if __name__ == "__main__":
    main()
