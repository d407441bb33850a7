"""ONNX graphs tk export can write, against tk's own scoring path in bf16 and in float32, on one run's test rows.

    python benchmarks/onnx_variants.py RUN [--rows 2000]

Exports RUN's model once with torch.onnx (dynamo), fuses a copy with onnxscript's ``optimize_for_ort`` (what
tk export does by default), quantizes both to int8, and scores the run's test texts (predictions.csv) with
each graph and with tk's path (the task's bf16 setting, and bf16 off), in one process, from the same token
ids (tokenizing not timed), in four interleaved rounds. Prints texts/s, the ratio to tk's default path,
label agreement with it, the largest probability difference and accuracy.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.data.tokens import encode_as_task
from toolkit.runs.export import exportable_model, fuse_for_onnx_runtime, quantize_int8, write_onnx
from toolkit.runs.exported import onnx_probabilities, open_session
from toolkit.runs.saved import load_run

ROUNDS = 4
DEFAULT = "tk (task's bf16)"  # tk's default scoring path: the ratios' baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    with open(args.run / "predictions.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))[:args.rows]
    run = load_run(args.run, bare=True)
    ids = encode_as_task(run.tokenizer, [row["text"] for row in rows], run.task)["input_ids"]
    truth = np.array([run.labels.index(row["label"]) for row in rows])
    float32_run = copy.copy(run)
    float32_run.task = dataclasses.replace(run.task, bf16="off")
    folder = Path(tempfile.mkdtemp())
    try:
        graphs = build_graphs(args.run, folder, run.task.max_length)
        sides = {DEFAULT: run_side(run), "tk (bf16 off)": run_side(float32_run),
                 **{name: onnx_side(open_session(path)) for name, path in graphs.items()}}
        seconds, found = timed(sides, ids)
    finally:
        shutil.rmtree(folder)
    reference = found[DEFAULT]
    print(f"{len(ids):,} texts, mean {np.mean([len(row) for row in ids]):.0f} tokens, max_length "
          f"{run.task.max_length}")
    print(f"{'side':<20} {'texts/s':>8} {'ratio':>6} {'agreement':>9} {'max |dp|':>8} {'accuracy':>8}")
    for name, probabilities in found.items():
        answers = probabilities.argmax(axis=1)
        print(f"{name:<20} {len(ids) / seconds[name]:>8.1f} {seconds[DEFAULT] / seconds[name]:>5.2f}x "
              f"{np.mean(answers == reference.argmax(axis=1)):>9.2%} {np.abs(probabilities - reference).max():>8.4f} "
              f"{np.mean(answers == truth):>8.4f}")


def build_graphs(run_dir: Path, folder: Path, max_length: int) -> dict[str, Path]:
    write_onnx(exportable_model(run_dir), folder / "plain.onnx", max_length)
    shutil.copy(folder / "plain.onnx", folder / "fused.onnx")
    print("fusions:", fuse_for_onnx_runtime(folder / "fused.onnx"))
    for name in ("plain", "fused"):
        quantize_int8(folder / f"{name}.onnx", folder / f"{name}-int8.onnx")
    return {name: folder / f"{name}.onnx" for name in ("plain", "fused", "plain-int8", "fused-int8")}


def run_side(run):
    return lambda ids: run.score({"input_ids": ids, "document": list(range(len(ids)))})


def onnx_side(session):
    return lambda ids: onnx_probabilities(session, ids, multi_label=False)


def timed(sides, ids):
    """Each side's seconds over all rows and its probabilities, in rounds whose side order alternates."""
    for score in sides.values():
        score(ids[:8])  # kernels and thread pools set up, untimed
    seconds = dict.fromkeys(sides, 0.0)
    found = {name: [] for name in sides}
    for number, part in enumerate(np.array_split(np.arange(len(ids)), ROUNDS)):
        chunk = [ids[i] for i in part]
        for name in list(sides) if number % 2 == 0 else list(sides)[::-1]:
            started = time.perf_counter()
            found[name].append(sides[name](chunk))
            seconds[name] += time.perf_counter() - started
    return seconds, {name: np.concatenate(parts) for name, parts in found.items()}


if __name__ == "__main__":
    main()
