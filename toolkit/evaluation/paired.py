"""Is one classifier better than another on the metric that matters? A bootstrap of the metric difference.

Two classifiers scored on the same rows are compared *paired*: every
resample draws rows, and both are scored on those same rows, so the noise
the two share (which rows happen to be hard) cancels, as in McNemar's test.
Classifiers scored on different rows are compared *unpaired*: each one's
rows are resampled on their own, a wider interval.

The difference's 95% interval is the percentile interval of the resampled
differences; the verdict is "real" when it leaves out 0. The two-sided
p-value beside it is twice the share of resampled differences on the far
side of 0 (+1 in numerator and denominator, so never 0). Every metric is
scored through ``counts`` and ``multilabel``, the functions the test report
uses, so the differences agree with the reported numbers by construction.

The decision metric (``decision_metric``) is the task's: the metric it
selects epochs on when that is one, else micro F1 for a multi-label task,
accuracy for two classes of about equal size, macro F1 otherwise (a model
that ignores small classes can keep its accuracy and lose them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.evaluation import multilabel
from toolkit.evaluation.counts import headline
from toolkit.evaluation.intervals import mcnemar_exact

CONFIDENCE = 0.95
RESAMPLES = 2000
BATCH_CELLS = 4_000_000  # resample weights held in memory at once
BALANCED_SHARE = 0.4  # two classes count as about equal in size when the smaller has this share of the rows
SELECTABLE = ("accuracy", "f1", "f1_macro")


@dataclass(frozen=True)
class Scored:
    """A classifier's answers on some rows: ``labels`` and ``predictions`` as class ids (n,) or multi-hot
    booleans (n, labels); ``positive``: a binary task's positive class id (its f1 is that class's)."""

    labels: np.ndarray
    predictions: np.ndarray
    n_classes: int
    positive: int | None = None

    @property
    def multi_label(self) -> bool:
        return np.ndim(self.labels) == 2

    @property
    def positive_class(self) -> int | None:
        """The class whose F1 is "f1": the given one; for two classes without one, the second, as the test
        report scores it (plugins/metrics); None (macro averages) for more classes."""
        if self.positive is not None or self.multi_label:
            return self.positive
        return 1 if self.n_classes == 2 else None

    def __len__(self) -> int:
        return len(self.labels)


def decision_metric(metrics: dict[str, Any]) -> str:
    """The metric a verdict on this run is decided on (see the module docstring), from its metrics.json."""
    supports = [row["support"] for name, row in (metrics.get("per_class") or {}).items()
                if isinstance(row, dict) and "support" in row and not name.endswith(" avg")]
    return choose_metric(metrics.get("select_metric"), metrics.get("problem") == "multi-label", supports)


def choose_metric(select_metric: str | None, multi_label: bool, supports) -> str:
    """The decision metric from the task's ``select_metric``, its problem and each class's rows."""
    supports = [int(x) for x in supports]
    if select_metric == "f1" and not multi_label and len(supports) > 2:
        return "f1_macro"  # the same number: f1 is the macro average for more than two classes
    if select_metric in SELECTABLE:
        return select_metric
    if multi_label:
        return "f1"
    if len(supports) == 2 and sum(supports) and min(supports) / sum(supports) >= BALANCED_SHARE:
        return "accuracy"
    return "f1_macro"


def shown_metrics(metric: str, metrics: dict[str, Any]) -> tuple[str, ...]:
    """The metrics a comparison shows: accuracy, F1 (macro F1 once, where f1 is the macro average), and the
    decision metric where it is neither."""
    f1_is_macro = metrics.get("problem") != "multi-label" and metrics.get("positive_label") is None
    names = ("accuracy", "f1_macro" if f1_is_macro else "f1")
    return names + ((metric,) if metric not in names else ())


METRIC_NAMES = {"accuracy": "accuracy", "f1_macro": "macro F1", "hamming_loss": "Hamming loss"}


def metric_name(metric: str, metrics: dict[str, Any]) -> str:
    """How a verdict names a metric: 'macro F1', 'micro F1', "F1 of 'pos'", 'subset accuracy'."""
    if metrics.get("problem") == "multi-label":
        return {"f1": "micro F1", "accuracy": "subset accuracy"}.get(metric, METRIC_NAMES.get(metric, metric))
    if metric == "f1" and metrics.get("positive_label") is not None:
        return f"F1 of '{metrics['positive_label']}'"
    return {"f1": "macro F1"}.get(metric, METRIC_NAMES.get(metric, metric))


def _row_counts(scored: Scored) -> dict[str, np.ndarray]:
    """Per row, what it adds to each count (float, ready to be summed with resample weights)."""
    if scored.multi_label:
        return multilabel.row_counts(scored.labels, scored.predictions)
    eye = np.eye(scored.n_classes)
    labels, predictions = eye[np.asarray(scored.labels, dtype=np.int64)], eye[np.asarray(scored.predictions, np.int64)]
    return {"tp": labels * predictions, "predicted": predictions, "support": labels}


def _scores(scored: Scored, per_row: dict[str, np.ndarray], weights: np.ndarray,
            names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if scored.multi_label:
        found = multilabel.scores(multilabel.summed(per_row, weights))
    else:
        found = headline({key: weights @ value for key, value in per_row.items()}, scored.positive_class)
    return {name: np.asarray(found[name], dtype=np.float64) for name in names}


def score(scored: Scored, names: tuple[str, ...]) -> dict[str, float]:
    """The metrics themselves, on every row."""
    found = _scores(scored, _row_counts(scored), np.ones(len(scored)), names)
    return {name: float(value) for name, value in found.items()}


def differences(a: Scored, b: Scored, names: tuple[str, ...], paired: bool = True,
                seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{metric: {"difference": a - b, "ci": [low, high], "p": ..., "real": bool}}`` for each of ``names``.

    ``paired``: the same rows in the same order (every resample scores both on one draw of rows); else each
    classifier's rows are resampled on their own."""
    estimate, spread = resampled(a, b, names, paired, seed)
    tail = (1 - CONFIDENCE) / 2
    result = {}
    for i, name in enumerate(names):
        low, high = np.quantile(spread[i], [tail, 1 - tail])
        beyond = min(int((spread[i] <= 0).sum()), int((spread[i] >= 0).sum()))
        result[name] = {"difference": estimate[name], "ci": [float(low), float(high)],
                        "p": min(1.0, 2 * (beyond + 1) / (RESAMPLES + 1)), "real": bool(low > 0 or high < 0)}
    return result


def resampled(a: Scored, b: Scored, names: tuple[str, ...], paired: bool = True,
              seed: int = 0) -> tuple[dict[str, float], np.ndarray]:
    """Each metric's difference a - b, and its RESAMPLES bootstrap replicates: an array (metrics, RESAMPLES)."""
    if paired and (len(a) != len(b) or not np.array_equal(np.asarray(a.labels), np.asarray(b.labels))):
        raise ValueError("a paired comparison needs the same rows with the same labels")
    estimate_a, estimate_b = score(a, names), score(b, names)
    rows_a, rows_b = _row_counts(a), _row_counts(b)
    rng = np.random.default_rng(seed)
    batch = max(1, BATCH_CELLS // max(len(a), len(b), 1))
    replicates: list[np.ndarray] = []
    for start in range(0, RESAMPLES, batch):
        size = min(batch, RESAMPLES - start)
        weights_a = _weights(rng, len(a), size)
        weights_b = weights_a if paired else _weights(rng, len(b), size)
        found_a = _scores(a, rows_a, weights_a, names)
        found_b = _scores(b, rows_b, weights_b, names)
        replicates.append(np.stack([found_a[name] - found_b[name] for name in names]))
    return {name: estimate_a[name] - estimate_b[name] for name in names}, np.concatenate(replicates, axis=1)


def test_against(a: Scored, b: Scored, metric: str, names: tuple[str, ...], same_rows: bool = True) -> dict[str, Any]:
    """``a`` against ``b``, decided on ``metric``: ``{"test", "p", "real", "differences"}``, each of ``names``
    (a minus b) with its interval. McNemar's exact test decides on accuracy over the same rows, else the
    bootstrap (paired over the same rows, else unpaired)."""
    names = tuple(dict.fromkeys((*names, metric)))
    found = differences(a, b, names, paired=same_rows)
    shown = {name: {"difference": round(value["difference"], 6), "ci": [round(x, 6) for x in value["ci"]],
                    "p": value["p"]} for name, value in found.items()}
    if same_rows and metric == "accuracy" and not a.multi_label:
        p = mcnemar_exact(a.predictions == a.labels, b.predictions == b.labels)
        return {"test": "mcnemar", "p": p, "real": p < 1 - CONFIDENCE, "differences": shown}
    test = "paired bootstrap" if same_rows else "unpaired bootstrap"
    return {"test": test, "p": found[metric]["p"], "real": found[metric]["real"], "differences": shown}


def _weights(rng: np.random.Generator, rows: int, resamples: int) -> np.ndarray:
    """How often each row is drawn in each of ``resamples`` resamples of ``rows`` rows with replacement."""
    return multilabel.resample_weights(rng.integers(0, rows, size=(resamples, rows)), rows)


def describe(metric: str, found: dict[str, Any], named: str, paired: bool = True) -> str:
    """'macro F1 +0.128 [0.094, 0.162]' with the word for it."""
    ci = found["ci"]
    how = "paired bootstrap" if paired else "unpaired bootstrap: different test rows"
    return f"{named} {found['difference']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] ({how})"
