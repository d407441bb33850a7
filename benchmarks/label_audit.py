"""The cv -> audit -> run -> compare loop on IMDB with a known share of labels flipped (issue 30's targets).

    python benchmarks/label_audit.py --rows 2000 --test 500 --folds 5          # the issue's target size
    python benchmarks/label_audit.py --rows 600 --test 300 --epochs 1          # what a busy CPU allows
    python benchmarks/label_audit.py --test 2000 --seeds 3                     # the retrain over three seeds
    python benchmarks/label_audit.py --test 2000 --seeds 5 --clean             # and what the noise cost

Samples ``--rows`` IMDB training reviews (seeded), flips ``--noise`` of their labels, and runs with minilm:
tk run on the noisy data (time, accuracy, ECE before/after calibration), tk cv (time against the run),
tk audit (precision of its top rows and at its estimated count, against the flipped rows), then tk run on
the copy tk audit wrote with the estimated count dropped, and tk compare of the two runs (McNemar, same
test rows). With ``--seeds N`` both runs are trained with seeds 1..N (the cv and the audit once, with the
task's seed): each seed's pair is compared by McNemar, and the mean accuracy change gets a t interval over
the N seeds, since one retrain's change is within what a seed varies by. ``--clean`` also trains on the same
rows with their true labels, per seed, so the change is set against what the flipped labels cost. Prints one JSON document; lab
notes go to benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
IMDB = ROOT.parent / "shared" / "data" / "imdb" / "plain_text"


def tk(*args: str, cwd: Path) -> dict:
    started = time.perf_counter()
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "tk"), *args, "--json"], capture_output=True, text=True,
                            cwd=cwd)
    if result.returncode != 0:
        sys.exit(f"tk {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    document = json.loads(result.stdout)
    document["_seconds"] = round(time.perf_counter() - started, 1)
    return document


def write(folder: Path, name: str, texts, labels) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=1, help="train the noisy and the corrected run with N seeds")
    parser.add_argument("--clean", action="store_true",
                        help="also train on the same rows with their true labels: what the flipped labels cost")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tk-label-audit"))
    parser.add_argument("--imdb", type=Path, default=IMDB, help="the imdb/plain_text folder of the shared data")
    args = parser.parse_args()
    import pyarrow.parquet as pq

    rng = np.random.default_rng(42)
    train = pq.read_table(args.imdb / "train-00000-of-00001.parquet").to_pandas()
    test = pq.read_table(args.imdb / "test-00000-of-00001.parquet").to_pandas()
    train = train.iloc[rng.permutation(len(train))[:args.rows]].reset_index(drop=True)
    test = test.iloc[rng.permutation(len(test))[:args.test]].reset_index(drop=True)
    names = np.array(["neg", "pos"])
    given = train["label"].to_numpy().copy()
    flipped = rng.choice(args.rows, size=int(round(args.noise * args.rows)), replace=False)
    given[flipped] = 1 - given[flipped]
    noisy = args.work / "noisy"
    write(noisy, "train", train["text"], names[given])
    write(noisy, "test", test["text"], names[test["label"].to_numpy()])
    settings = ["--set", "model=minilm", "--set", f"max_length={args.max_length}", "--set", f"epochs={args.epochs}",
                "--set", "learning_rate=1e-4", "--output", str(args.work / "runs")]
    seeds = [42] if args.seeds == 1 else list(range(1, args.seeds + 1))
    runs = [tk("run", "--data", str(noisy), *settings, "--set", f"seed={seed}", cwd=args.work) for seed in seeds]
    run = runs[0]
    cv = tk("cv", "--data", str(noisy), "--folds", str(args.folds), *settings, cwd=args.work)
    audit = tk("audit", cv["cv_dir"], cwd=args.work)
    ranked = [int(r["row"]) for r in csv.DictReader(open(Path(cv["cv_dir"]) / "audit.csv", encoding="utf-8"))]
    truth = set((flipped + 1).tolist())  # row numbers count from 1
    estimate = audit["estimated_errors"]

    def precision_recall(k: int) -> dict:
        hits = len(set(ranked[:k]) & truth)
        return {"k": k, "precision": round(hits / max(k, 1), 3), "recall": round(hits / len(truth), 3)}

    fixed = args.work / "fixed"
    fixed.mkdir(exist_ok=True)
    (fixed / "test.csv").write_bytes((noisy / "test.csv").read_bytes())
    tk("audit", cv["cv_dir"], "--write", str(fixed / "train.csv"), "--drop", str(estimate), cwd=args.work)
    reruns = [tk("run", "--data", str(fixed), *settings, "--set", f"seed={seed}", cwd=args.work) for seed in seeds]
    retrains = [retrain_pair(seed, noisy_run, rerun, args.work)
                for seed, noisy_run, rerun in zip(seeds, runs, reruns)]
    ceiling = {}
    if args.clean:
        clean = args.work / "clean"
        write(clean, "train", train["text"], names[train["label"].to_numpy()])
        (clean / "test.csv").write_bytes((noisy / "test.csv").read_bytes())
        cleans = [tk("run", "--data", str(clean), *settings, "--set", f"seed={seed}", cwd=args.work) for seed in seeds]
        ceiling = clean_ceiling(runs, reruns, cleans)
    calibration = run["metrics"]["calibration"]
    print(json.dumps({
        "rows": args.rows, "test": args.test, "flipped": len(truth), "folds": args.folds, "epochs": args.epochs,
        "max_length": args.max_length,
        "run_seconds": run["_seconds"], "cv_seconds": cv["_seconds"], "cv_over_run": round(cv["_seconds"] /
                                                                                            run["_seconds"], 2),
        "noisy_accuracy": run["metrics"]["accuracy"], "noisy_accuracy_ci": run["metrics"]["accuracy_ci"],
        "temperature": calibration.get("temperature"), "ece_before": calibration.get("ece_before"),
        "ece_before_ci": calibration.get("ece_before_ci"), "ece_after": calibration.get("ece_after"),
        "ece_after_ci": calibration.get("ece_after_ci"),
        "cv_pooled_accuracy": cv["summary"]["pooled"]["accuracy"],
        "estimated_errors": estimate, "estimated_errors_ci": audit["estimated_errors_ci"],
        "audit_models": audit.get("models"),
        "at_top_noise_share": precision_recall(len(truth)), "at_estimate": precision_recall(estimate),
        "retrain_by_seed": retrains, "retrain_over_seeds": over_seeds([pair["change"] for pair in retrains]),
        "clean_labels": ceiling,
    }, indent=1, default=str))


def retrain_pair(seed: int, noisy_run: dict, rerun: dict, work: Path) -> dict:
    """One seed's noisy run against the same seed's run on the corrected copy: tk compare's McNemar."""
    compared = tk("compare", noisy_run["run_dir"], rerun["run_dir"], cwd=work)
    return {"seed": seed, "noisy_accuracy": noisy_run["metrics"]["accuracy"],
            "fixed_accuracy": rerun["metrics"]["accuracy"], "fixed_accuracy_ci": rerun["metrics"]["accuracy_ci"],
            "change": round(rerun["metrics"]["accuracy"] - noisy_run["metrics"]["accuracy"], 4),
            "compare": compared.get("runs")}


def clean_ceiling(runs: list[dict], reruns: list[dict], cleans: list[dict]) -> dict:
    """What the flipped labels cost (clean minus noisy) and what the corrected copy left (clean minus corrected),
    per seed and over seeds: recovery is the share of the cost the corrected copy won back."""
    accuracy = lambda documents: np.array([d["metrics"]["accuracy"] for d in documents])  # noqa: E731
    noisy, fixed, clean = accuracy(runs), accuracy(reruns), accuracy(cleans)
    cost, left = clean - noisy, clean - fixed
    return {"clean_accuracy": clean.round(4).tolist(), "cost_of_noise": over_seeds(cost.tolist()),
            "left_after_correction": over_seeds(left.tolist()),
            "share_recovered": round(float((fixed - noisy).mean() / cost.mean()), 3) if cost.mean() > 0 else None}


def over_seeds(changes: list[float]) -> dict:
    """The mean accuracy change with a 95% t interval over seeds (each seed one draw of the retrain's change)."""
    values = np.asarray(changes, dtype=float)
    if len(values) < 2:
        return {"seeds": len(values), "mean_change": float(values.mean())}
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return {"seeds": len(values), "mean_change": round(float(values.mean()), 4),
            "ci95": [round(float(values.mean() - half), 4), round(float(values.mean() + half), 4)]}


if __name__ == "__main__":
    main()
