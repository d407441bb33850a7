"""95% confidence intervals for classification metrics, and McNemar's exact test: pure statistics.

An interval covers the sampling noise of the scored rows only: how much the
number would move on another sample of the same size from the same
distribution. Seed, data-split and training variation are not in it (a sweep
over seeds measures those).

- Proportions (accuracy; a binary task's precision and recall) get Wilson
  score intervals (scipy ``binomtest(...).proportion_ci(method="wilson")``):
  good coverage at small n and never zero width at 0 or 1 (50/50 correct:
  [0.929, 1]). Precision's denominator, the rows predicted positive, is itself
  random; its interval conditions on that count.
- F1 scores (and multiclass macro precision/recall, which are averages of
  proportions) get a paired bootstrap over the scored rows with the BCa
  method (scipy ``bootstrap(method="BCa")``), which corrects the percentile
  interval's bias and skew. Where BCa fails (a degenerate jackknife) or its
  interval leaves out the estimate, the percentile interval of the same
  resamples is used. Above ``MAX_BCA_ROWS`` rows the O(rows²) jackknife is
  skipped for the percentile interval, which BCa then barely moves.
- A macro average over a class with fewer than ``BCA_MIN_CLASS_ROWS`` rows
  gets the percentile interval: a resample often lacks such a class (one row:
  37% of resamples) and averages over the others, which BCa's bias
  correction mistakes for the estimator's bias. Simulated on TREC's 50
  classes with 500 test rows (``benchmarks/macro_f1_coverage.py``), BCa held
  the population value 81% of the time, the percentile interval 92%.
- No interval is better than a falsely certain one: with no rows in the
  denominator (Wilson), fewer than ``MIN_BOOTSTRAP_ROWS`` rows entering the
  statistic, or resamples that (almost) all agree, the interval is None and a
  note says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
MIN_BOOTSTRAP_ROWS = 30
MAX_BCA_ROWS = 10_000  # the jackknife costs O(rows²): about 2 s at 10,000 rows
BCA_MIN_CLASS_ROWS = 3  # a macro average over a class with fewer rows takes the percentile interval
BATCH_CELLS = 4_000_000  # resampled rows held in memory at once
TOO_SMALL = "n too small"
ALL_EQUAL = "every resample gave the same value, so the bootstrap cannot measure the noise (it is not zero)"


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    method: str | None = None  # "wilson", "bca" or "percentile"; None with a note
    note: str | None = None

    def entries(self, name: str) -> dict:
        """metrics.json keys: ``<name>_ci`` ([low, high] or None), ``_ci_method`` or ``_ci_note``."""
        if self.low is None:
            return {f"{name}_ci": None, f"{name}_ci_note": self.note}
        return {f"{name}_ci": [self.low, self.high], f"{name}_ci_method": self.method}


def none(note: str) -> Interval:
    return Interval(None, None, None, note)


def wilson(successes: int, n: int, what: str = "rows") -> Interval:
    """Wilson score interval for ``successes`` out of ``n``; None when ``n`` is 0."""
    from scipy.stats import binomtest

    if n <= 0:
        return none(f"{TOO_SMALL}: no {what}")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Interval(float(ci.low), float(ci.high), "wilson")


def bootstrap(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], estimates: Sequence[float],
              rows: Sequence[int], seed: int = 0, bca: Sequence[bool] | None = None) -> list[Interval]:
    """Paired bootstrap intervals for the outputs of a vectorised ``statistic(*data, axis=-1)``.

    ``estimates`` are the statistic on the data itself; ``rows`` the number of
    rows that enter each output (F1 of one class: the rows that are or are
    predicted that class), which must reach ``MIN_BOOTSTRAP_ROWS``. ``bca``:
    per output, False to take the percentile interval (default: BCa for all).
    """
    from scipy.stats import bootstrap as scipy_bootstrap

    n = len(data[0])
    if n < 2 or max(rows) < MIN_BOOTSTRAP_ROWS:
        return [none(_too_few(count)) for count in rows]
    method = "BCa" if n <= MAX_BCA_ROWS else "percentile"
    options = dict(paired=True, vectorized=True, confidence_level=CONFIDENCE, batch=max(1, BATCH_CELLS // n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa's "cannot be calculated" warning: handled below, per output
        result = scipy_bootstrap(data, statistic, n_resamples=BOOTSTRAP_RESAMPLES, method=method,
                                 rng=np.random.default_rng(seed), **options)
    distribution = np.atleast_2d(result.bootstrap_distribution)
    chosen = [(np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high),
               method.lower())]
    if method == "BCa":
        fallback = scipy_bootstrap(data, statistic, n_resamples=0, method="percentile", bootstrap_result=result,
                                   **options).confidence_interval
        chosen.append((np.atleast_1d(fallback.low), np.atleast_1d(fallback.high), "percentile"))
    intervals = []
    for i, (estimate, count, wants_bca) in enumerate(zip(estimates, rows, bca or [True] * len(rows))):
        if count < MIN_BOOTSTRAP_ROWS:
            intervals.append(none(_too_few(count)))
            continue
        if np.ptp(distribution[i]) == 0:
            intervals.append(none(ALL_EQUAL))
            continue
        for low, high, name in chosen if wants_bca else chosen[-1:]:  # BCa, then percentile where BCa failed
            if np.isfinite(low[i]) and np.isfinite(high[i]) and low[i] <= estimate <= high[i]:
                break
        if not (np.isfinite(low[i]) and np.isfinite(high[i])) or high[i] <= low[i]:
            intervals.append(none(f"nearly {ALL_EQUAL} (a zero-width interval)"))
        else:
            intervals.append(Interval(float(low[i]), float(high[i]), name))
    return intervals


def bca_for_macro(support: np.ndarray) -> bool:
    """Whether a macro average over the classes with these row counts (0: absent) may take BCa."""
    support = np.asarray(support)
    return not (support[support > 0] < BCA_MIN_CLASS_ROWS).any()


def _too_few(count: int) -> str:
    return f"{TOO_SMALL}: {count} rows enter it, the bootstrap needs {MIN_BOOTSTRAP_ROWS}"


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for two classifiers' per-row correctness on the same rows."""
    from scipy.stats import binomtest

    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
