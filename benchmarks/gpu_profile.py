"""Where a GPU's time goes in tk's training step and evaluation (a script for a lent GPU, not a test).

    python benchmarks/gpu_profile.py            # on CUDA; on a CPU it is a short dry run

1. The replayed step at BERT-base shape, bf16: the kernels one step launches
   (from a profiled eager step: same kernels, same durations) against the
   replayed step's wall time. Their sum far below the step time means the
   step waits on launches, not arithmetic.
2. Replayed step time and capture time at 16 x 32, 64, 96, 128 and 512
   tokens: the constants of ``plan_widths``' cost model.
3. Evaluation of IMDB test reviews at 128 tokens: tokenizing, and the model's
   share at two batch sizes (TK_DATA_DIR and TK_BENCH_TOKENIZER as for
   benchmarks/speed.py).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gpu_check import DEVICE, bert, random_split, sync, trainer_for  # noqa: E402
from toolkit.training.batches import DeviceSplit  # noqa: E402

ON_GPU = DEVICE.type == "cuda"
SHAPE = {} if ON_GPU else {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 128}


def full_width_step(batch_size: int, width: int, capture: bool):
    data = DeviceSplit.from_split(random_split(batch_size * 4, width, 30522), width, 0, DEVICE)
    data.host_lengths[:] = width
    data.lengths.fill_(width)
    step = trainer_for(bert(0.1, **SHAPE), data, batch_size, bf16=True, capture=capture)
    return step, torch.arange(batch_size * 4, device=DEVICE).view(4, batch_size)


def median_ms(step, batches, width: int, repeats: int) -> float:
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        step.train_step(batches[i % len(batches)], width)
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def kernel_profile() -> None:
    from torch.profiler import ProfilerActivity, profile

    step, batches = full_width_step(16, 128, capture=ON_GPU)
    step.train_step(batches[0], 128)
    sync()
    replayed = median_ms(step, batches, 128, 50 if ON_GPU else 2)
    eager, _ = full_width_step(16, 128, capture=False)
    eager.run(batches[0], 128)
    sync()
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if ON_GPU else [ProfilerActivity.CPU]
    with profile(activities=activities) as trace:
        eager.run(batches[1], 128)
        sync()
    # Device-side events, less the ranges that annotate them (the optimizer's step spans its own kernels).
    kernels = [event for event in trace.events() if event.device_type == torch.autograd.DeviceType.CUDA
               and not getattr(event, "is_user_annotation", False) and not event.name.startswith("Optimizer.")]
    busy = sum(event.time_range.elapsed_us() for event in kernels) / 1000
    print(f"1. 16x128 step: replayed {replayed:.2f} ms; one step launches {len(kernels)} kernels "
          f"adding up to {busy:.2f} ms of GPU time")
    by_name: Counter = Counter()
    counts: Counter = Counter()
    for event in kernels:
        name = event.name[:90]
        by_name[name] += event.time_range.elapsed_us() / 1000
        counts[name] += 1
    for name, ms in by_name.most_common(18):
        print(f"   {ms:7.3f} ms {counts[name]:5d}x  {name}")


def width_costs() -> None:
    print("2. replayed step and capture time by width (16 rows, bf16):")
    widths = (32, 64, 96, 128, 512) if ON_GPU else (32,)
    for width in widths:
        step, batches = full_width_step(16, width, capture=ON_GPU)
        started = time.perf_counter()
        step.train_step(batches[0], width)
        sync()
        first = (time.perf_counter() - started) * 1000
        replayed = median_ms(step, batches, width, 40 if ON_GPU else 2)
        print(f"   16x{width:<4} capture+first step {first:7.1f} ms, replayed step {replayed:6.2f} ms")


def evaluation() -> None:
    from toolkit.data.tokens import encode_texts
    from toolkit.evaluation.inference import predict_probabilities
    from toolkit.models import load_tokenizer

    data_dir = os.environ.get("TK_DATA_DIR")
    tokenizer_dir = os.environ.get("TK_BENCH_TOKENIZER")
    if not data_dir or not tokenizer_dir:
        print("3. skipped: set TK_DATA_DIR and TK_BENCH_TOKENIZER")
        return
    import pyarrow.parquet as pq

    rows = 25000 if ON_GPU else 256
    texts = pq.read_table(Path(data_dir) / "imdb/plain_text/test-00000-of-00001.parquet",
                          columns=["text"]).column("text").to_pylist()[:rows]
    tokenizer = load_tokenizer(tokenizer_dir)
    started = time.perf_counter()
    encoded = encode_texts(tokenizer, texts, 128)
    tokenize = time.perf_counter() - started
    model = bert(0.1, **SHAPE).eval()
    predict_probabilities(model, {"input_ids": encoded["input_ids"][:512]}, 64, bf16=True)  # first-call set-up
    line = f"3. {rows} IMDB reviews at 128 tokens: tokenizing {tokenize:.2f} s ({rows / tokenize:,.0f}/s)"
    for batch_size in (64, 256):
        sync()
        started = time.perf_counter()
        predict_probabilities(model, encoded, batch_size, bf16=True)
        sync()
        seconds = time.perf_counter() - started
        line += f"; model, batch {batch_size}: {seconds:.2f} s ({rows / seconds:,.0f}/s)"
    print(line)


def main() -> None:
    from toolkit.training.device import use_precompiled_attention

    if ON_GPU:
        use_precompiled_attention()  # as tk run does: no cuDNN attention
    name = torch.cuda.get_device_name() if ON_GPU else "CPU (dry run: tiny model, no capture)"
    print(f"{name}, torch {torch.__version__}")
    for part in (kernel_profile, width_costs, evaluation):
        try:
            part()
        except Exception as error:  # one part failing must not cost the others' numbers
            print(f"{part.__name__} failed: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
