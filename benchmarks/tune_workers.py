"""Two `tk tune` workers on one storage against one worker (issue 32's scaling target), core for core.

    TK_DATA_DIR=../shared/data python benchmarks/tune_workers.py                 # 20 trials, sentiment140
    TK_DATA_DIR=../shared/data python benchmarks/tune_workers.py --trials 6 --rows 120   # a dry run

One worker pinned to one core (``taskset``, one torch thread) runs the study alone; then two workers, each
pinned to a core of its own, share a fresh SQLite study of the same size. Each worker gets the cores one
trial uses, which is what "a machine with enough cores" means for the ratio; the cores used are printed.
Every trial trains the same amount: the search varies the learning rate and weight decay only (epochs,
batch size and max_length fixed), with no pruning and no final comparison, so the ratio measures the
sharing, not the sampler's luck. The study is read back to check N trials ran in total and none twice.
Prints one JSON document; lab notes go to benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TK = ROOT / ".venv" / "bin" / "tk"


def tune_command(args: argparse.Namespace, storage: str, output: Path) -> list[str]:
    fixed = {"train_size": args.rows, "validation_size": max(args.rows // 5, 20), "eval_size": 100,
             "epochs": args.epochs, "batch_size": 16, "max_length": args.max_length, "warmup_ratio": 0.0,
             "linear_baseline": "false"}
    sets = [item for key, value in fixed.items() for item in ("--set", f"{key}={value}")]
    return [str(TK), "tune", args.task, "--trials", str(args.trials), "--storage", storage, "--output", str(output),
            "--pruner", "none", "--top", "0", "--space", "learning_rate=1e-5..2e-4:log",
            "--space", "weight_decay=0.0..0.1", *sets]


def start(command: list[str], core: int, log: Path) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(["taskset", "-c", str(core), *command], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=environment, cwd=ROOT)


def workers(args: argparse.Namespace, name: str, cores: list[int]) -> dict:
    """Run one worker per core on a fresh study; wall seconds until the last exits, and what the study holds."""
    import optuna

    folder = args.work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    started = time.perf_counter()
    processes = [start(tune_command(args, storage, folder / f"worker-{core}"), core, folder / f"worker-{core}.log")
                 for core in cores]
    codes = [process.wait() for process in processes]
    seconds = time.perf_counter() - started
    if any(codes):
        sys.exit(f"{name}: a worker exited {codes}; see {folder}/worker-*.log")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=f"tk-tune-{args.task}", storage=storage)
    states = [trial.state.name for trial in study.trials]
    trained = sorted(path.parent.name for path in folder.glob("worker-*/tune-*/trials/*/result.json"))
    return {"workers": len(cores), "cores": cores, "seconds": round(seconds, 1), "trials": len(states),
            "complete": states.count("COMPLETE"), "trial_folders": len(trained),
            "trained_twice": len(trained) - len(set(trained)),
            "per_worker": {f"core {core}": len(list((folder / f"worker-{core}").glob("tune-*/trials/*/result.json")))
                           for core in cores}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="sentiment140-minilm")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, default=400, help="training rows of each trial")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tk-tune-workers"))
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores")
    one = workers(args, "one-worker", [0])
    two = workers(args, "two-workers", [0, 1])
    print(json.dumps({"task": args.task, "trials": args.trials, "rows": args.rows, "epochs": args.epochs,
                      "max_length": args.max_length, "threads_per_worker": 1, "one": one, "two": two,
                      "ratio": round(two["seconds"] / one["seconds"], 3)}, indent=2))


if __name__ == "__main__":
    main()
