"""Time MiniLM training steps on the CPU: tk's step levers on and off, in alternating blocks of one process.

    python benchmarks/cpu_step.py                      # 16 x 32 tokens, one padded row (a Sentiment140 batch)
    python benchmarks/cpu_step.py --width 128 --no-pad # an IMDB batch: every review fills 128 tokens

Both sides run the Trainer engine's step by hand (bf16 autocast, eager attention, the policy's fused AdamW
and clipping) on the same batch and the same model, which keeps training. "plain" is transformers' own
eager attention with torch's dropout; "tk" adds the trainer plugin's CPU levers (PCG64 dropout, bf16
attention, float32 dropout outputs, the reused embedding-gradient buffer). Blocks alternate so that the
machine's load changes both sides alike; medians per side are printed. Huge pages follow
THP_MEM_ALLOC_ENABLE (tk sets 1 when imported; run with THP_MEM_ALLOC_ENABLE=0 to compare).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from transformers import AutoModelForSequenceClassification

from plugins.engines.eager.embedding_gradient import reused_embedding_gradient
from plugins.engines.eager.fast_dropout import fast_dropout
from plugins.models.minilm import bundled_model_dir
from toolkit.config import build_task
from toolkit.memory import reuse_freed_memory
from toolkit.training import policy


@contextlib.contextmanager
def tk_levers(model):
    with fast_dropout(model), reused_embedding_gradient(model) as gradient:
        yield gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32, help="tokens per text (default 32)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-pad", action="store_true", help="no padded row, so no attention mask is built")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per block (after 2 untimed)")
    args = parser.parse_args()
    reuse_freed_memory()  # as the tk command does

    task = build_task("bench", {"dataset": "-", "model": "-"}, "benchmark")
    model = AutoModelForSequenceClassification.from_pretrained(
        str(bundled_model_dir()), num_labels=2, attn_implementation="eager").train()
    optimizer = policy.build_optimizer(model, task)
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (args.batch, args.width))
    labels = torch.randint(0, 2, (args.batch,))
    mask = torch.ones_like(ids)
    if not args.no_pad:
        mask[0, args.width // 2:] = 0

    def step(gradient=None) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = policy.training_loss(model(input_ids=ids, attention_mask=mask).logits, labels, task)
        loss.backward()
        policy.clip_gradients_if_needed(model.parameters(), gradient.rows_of() if gradient else None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    sides = {"plain": contextlib.nullcontext, "tk": lambda: tk_levers(model)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, levers in sides.items():
            with levers() as gradient:
                step(gradient), step(gradient)
                times[name] += [step(gradient) for _ in range(args.steps)]
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"{args.batch} x {args.width} tokens{'' if args.no_pad else ', one padded row'}: "
          + ", ".join(f"{name} {ms:.1f} ms" for name, ms in medians.items())
          + f" per step ({medians['plain'] / medians['tk']:.2f}x)")


if __name__ == "__main__":
    main()
