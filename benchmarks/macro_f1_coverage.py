"""How often tk's 95% macro-F1 interval holds the population's macro F1, with many tiny classes.

A simulation shaped like TREC's 50 fine classes: class frequencies are
TREC's training frequencies, each test set draws 500 rows (as TREC_10 has),
and a classifier with a known confusion matrix answers them, so the
population macro F1 is exact. Each repetition scores one test set and asks
whether the interval holds that value. Compared: macro F1 resampled over the
classes of the *test set* (a resample that lacks one scored it 0: tk before),
over each *resample's* classes (the plug-in rule: the same function the
estimate is) with BCa, and tk's interval now (the plug-in rule, with the
percentile interval where a class has one or two rows).

    python benchmarks/macro_f1_coverage.py [--repeats 300] [--rows 500]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from plugins.metrics import tk_compute_metrics
from toolkit.evaluation import intervals
from toolkit.evaluation.counts import class_counts, class_scores, headline

TREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "extra" / "trec" / "train_5500.label"


def class_frequencies() -> np.ndarray:
    counts = Counter(line.split()[0] for line in TREC.read_text(encoding="latin-1").splitlines() if line.strip())
    values = np.array(sorted(counts.values(), reverse=True), dtype=float)
    return values / values.sum()


def confusion(prior: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """P(prediction | class): a recall per class (rarer classes learned worse); errors go to common classes."""
    k = len(prior)
    recall = np.clip(rng.beta(5, 2, size=k) - 0.3 * (prior < np.median(prior)), 0.05, 0.98)
    matrix = np.tile(prior, (k, 1))
    np.fill_diagonal(matrix, 0)
    matrix = matrix / matrix.sum(axis=1, keepdims=True) * (1 - recall)[:, None]
    np.fill_diagonal(matrix, recall)
    return matrix


def population_macro_f1(prior: np.ndarray, matrix: np.ndarray) -> float:
    joint = prior[:, None] * matrix
    tp = np.diag(joint)
    return float(np.mean(2 * tp / (joint.sum(axis=0) + joint.sum(axis=1))))


def test_set_classes(present: np.ndarray, k: int):
    """The rule before: macro F1 over the test set's classes, 0 for one a resample lacks."""
    def macro_f1(y, p, axis=-1):
        return class_scores(class_counts(y, p, k))["f1"][..., present].mean(axis=-1)[None]
    return macro_f1


def resample_classes(k: int):
    """The plug-in rule: each resample's own classes, as the estimate uses the test set's."""
    def macro_f1(y, p, axis=-1):
        return headline(class_counts(y, p, k))["f1_macro"][None]
    return macro_f1


def one_hot(predictions: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[predictions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    prior = class_frequencies()
    k = len(prior)
    names = tuple(f"c{i}" for i in range(k))
    matrix = confusion(prior, rng)
    truth = population_macro_f1(prior, matrix)
    print(f"{k} classes, {args.rows} test rows, population macro F1 {truth:.4f}, {args.repeats} test sets")
    ways = ("test set's classes, BCa (tk before)", "each resample's classes, BCa",
            "tk now (each resample's, percentile)")
    held, above, widths = Counter(), Counter(), {way: [] for way in ways}
    estimates = []
    for repeat in range(args.repeats):
        y = rng.choice(k, size=args.rows, p=prior)
        p = np.array([rng.choice(k, p=matrix[label]) for label in y])
        estimate = float(headline(class_counts(y, p, k))["f1_macro"])
        estimates.append(estimate)
        present = np.bincount(y, minlength=k) > 0
        before = intervals.bootstrap((y, p), test_set_classes(present, k), [estimate], [args.rows], seed=repeat)[0]
        plug_in = intervals.bootstrap((y, p), resample_classes(k), [estimate], [args.rows], seed=repeat)[0]
        now = tk_compute_metrics(y, one_hot(p, k), names, confidence=True)["f1_macro_ci"]
        for way, (low, high) in zip(ways, ((before.low, before.high), (plug_in.low, plug_in.high), now)):
            held[way] += low <= truth <= high
            above[way] += truth > high
            widths[way].append(high - low)
    print(f"estimate: mean {np.mean(estimates):.4f} (bias {np.mean(estimates) - truth:+.4f}), "
          f"sd {np.std(estimates):.4f}")
    for way in ways:
        print(f"{way:<40} coverage {held[way] / args.repeats:.3f}, truth above it "
              f"{above[way] / args.repeats:.3f}, mean width {np.mean(widths[way]):.4f}")


if __name__ == "__main__":
    main()
