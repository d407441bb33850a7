"""The linear baseline: TF-IDF n-grams + logistic regression, the model a fine-tune has to beat.

Fitted on the run's own training rows, its ``C`` chosen on the run's own
validation rows by the task's decision metric (``paired.choose_metric``),
scored on the run's own test rows with the same metrics and intervals; the
fine-tune is then compared with it paired, row by row
(``paired.test_against``). Multi-label: one logistic regression per label
(one-vs-rest), each label's threshold tuned on validation by the rule the
fine-tune's thresholds follow (``thresholds``).

It stays cheap whatever the data: the vocabulary is capped at
``MAX_FEATURES`` n-grams seen in at least two texts, term frequencies are
sublinear (1 + log tf, so a long text does not outweigh a short one), and
each ``C`` starts from the last one's weights (warm start).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.data.rows import column
from toolkit.evaluation import paired
from toolkit.evaluation import thresholds as tuning
from toolkit.evaluation.multilabel import predict_sets

C_GRID = (0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried, weakest regularisation last
MORE_C = 2  # still best at the grid's weakest: tried 10x weaker, up to this many times (a baseline held back
            # by its grid would flatter the fine-tune)
MAX_FEATURES = 100_000
NGRAMS = (1, 2)
MAX_ITER = 300
DESCRIPTION = (f"TF-IDF of word {NGRAMS[0]}-{NGRAMS[1]}-grams (at most {MAX_FEATURES:,}, in at least 2 texts, "
               "sublinear tf) + logistic regression")


@dataclass
class Fitted:
    """The fitted baseline's test probabilities, its chosen ``C`` and every ``C``'s validation score."""

    probabilities: np.ndarray
    c: float
    tried: dict[str, float]
    metric: str
    thresholds: np.ndarray | None
    seconds: float
    features: int


def fit(train_texts, train_labels, validation_texts, validation_labels, test_texts, n_classes: int,
        select_metric: str | None = None, positive: int | None = None) -> Fitted | None:
    """Fit on the training rows, pick ``C`` on validation, predict the test rows; None when it cannot be
    fitted (one class in training, no validation rows, or no word the vectoriser keeps)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    started = time.perf_counter()
    train_labels, validation_labels = np.asarray(train_labels), np.asarray(validation_labels)
    multi_label = train_labels.ndim == 2
    if (not multi_label and len(np.unique(train_labels)) < 2) or not len(validation_labels):
        return None
    vectoriser = TfidfVectorizer(ngram_range=NGRAMS, max_features=MAX_FEATURES, min_df=2 if len(train_texts) > 50
                                 else 1, sublinear_tf=True, dtype=np.float32)
    try:
        train = vectoriser.fit_transform(train_texts)
    except ValueError:  # "empty vocabulary": no word kept
        return None
    validation, test = vectoriser.transform(validation_texts), vectoriser.transform(test_texts)
    supports = [] if multi_label else np.bincount(validation_labels, minlength=n_classes)
    metric = paired.choose_metric(select_metric, multi_label, supports)
    model = _model(multi_label)
    tried: dict[str, float] = {}
    best: tuple[float, float, Any, np.ndarray | None] | None = None  # (score, C, model, thresholds)
    grid = list(C_GRID)
    for c in grid:  # grows while the weakest C tried is the best
        _set_c(model, c, multi_label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence at MAX_ITER, a label constant in training
            model.fit(train, train_labels)
        probabilities = _probabilities(model, validation, n_classes, multi_label)
        value, cut = _validation_score(validation_labels, probabilities, n_classes, metric, positive, multi_label)
        tried[f"{c:g}"] = round(value, 6)
        if best is None or value > best[0]:  # ties keep the smaller C: the more regularised model
            best = (value, c, copy.deepcopy(model), cut)
        if c == grid[-1] and best[1] == c and len(grid) < len(C_GRID) + MORE_C:
            grid.append(c * 10)
    _, c, model, thresholds = best
    probabilities = _probabilities(model, test, n_classes, multi_label)
    return Fitted(probabilities, c, tried, metric, thresholds, time.perf_counter() - started, len(vectoriser.vocabulary_))


def _model(multi_label: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    linear = LogisticRegression(max_iter=MAX_ITER, warm_start=True)
    return OneVsRestClassifier(linear) if multi_label else linear


def _set_c(model, c: float, multi_label: bool) -> None:
    model.set_params(**{"estimator__C" if multi_label else "C": c})


def _probabilities(model, rows, n_classes: int, multi_label: bool) -> np.ndarray:
    """(rows, classes) probabilities in class-id order, a class absent from training at 0."""
    found = model.predict_proba(rows)
    if multi_label:
        return np.asarray(found, dtype=np.float64)
    full = np.zeros((rows.shape[0], n_classes))
    full[:, model.classes_.astype(int)] = found
    return full


def _validation_score(labels, probabilities, n_classes: int, metric: str, positive: int | None,
                      multi_label: bool) -> tuple[float, np.ndarray | None]:
    """The decision metric on validation (multi-label: at thresholds tuned on those rows) and the thresholds."""
    if multi_label:
        cut, _ = tuning.tune_thresholds(labels, probabilities)
        predictions = predict_sets(probabilities, cut)
        return paired.score(paired.Scored(labels > 0.5, predictions, n_classes), (metric,))[metric], cut
    scored = paired.Scored(labels, probabilities.argmax(axis=1), n_classes, positive)
    return paired.score(scored, (metric,))[metric], None


def summary(fitted: Fitted, metrics: dict[str, Any], versus: dict[str, Any], metric: str,
            metric_names: dict[str, str]) -> dict:
    """metrics.json's ``linear_baseline``: what was fitted, its test metrics with intervals, and the verdict."""
    kept = {key: value for key, value in metrics.items()
            if key in ("accuracy", "f1", "precision", "recall", "f1_macro", "f1_weighted", "hamming_loss", "average")
            or key.endswith(("_ci", "_ci_method", "_ci_note"))}
    return {"model": DESCRIPTION, "features": fitted.features, "C": fitted.c, "selected_on": fitted.metric,
            "selected_on_name": paired.metric_name(fitted.metric, metrics),
            "validation_scores": fitted.tried, "fit_seconds": round(fitted.seconds, 2),
            **({"thresholds": [round(float(t), 6) for t in fitted.thresholds]} if fitted.thresholds is not None
               else {}),
            "metrics": kept, "metric_names": metric_names, "versus": {"metric": metric, **versus}, "verdict": verdict(versus, metric, metric_names)}


VERDICT_START = "The linear baseline (TF-IDF + logistic regression) is "  # a run's warning: as good or better


def verdict(versus: dict[str, Any], metric: str, metric_names: dict[str, str]) -> str:
    """One plain sentence: is the fine-tune better than the linear model, on the decision metric?"""
    found = versus["differences"][metric]
    named = metric_names.get(metric, metric)
    low, high = found["ci"]
    test = {"mcnemar": "McNemar's exact test"}.get(versus["test"], versus["test"])
    how = f"fine-tune minus linear model, {named}: {found['difference']:+.3f} [{low:+.3f}, {high:+.3f}], {test}"
    if versus["real"] and found["difference"] > 0:
        return f"The fine-tune beats the linear baseline ({how})." + _disagreeing(versus, metric, metric_names, -1)
    if versus["real"]:
        return (f"{VERDICT_START}better than the fine-tune ({how}): "
                "keep the linear model, or train the fine-tune longer or on more data before using it."
                + _disagreeing(versus, metric, metric_names, +1))
    return (f"{VERDICT_START}as good as the fine-tune within noise ({how}): "
            "the fine-tune is not shown to be worth its cost.")


def _disagreeing(versus: dict[str, Any], metric: str, metric_names: dict[str, str], sign: int) -> str:
    """' On accuracy, though, the fine-tune is better (+0.056 [+0.020, +0.097]) ...': another metric shown
    whose interval says the opposite (``sign``: +1, the fine-tune better there; -1, worse)."""
    for name, found in versus["differences"].items():
        low, high = found["ci"]
        if name != metric and (low > 0 if sign > 0 else high < 0):
            side = "better" if sign > 0 else "worse"
            return (f" On {metric_names.get(name, name)}, though, the fine-tune is {side} ({found['difference']:+.3f} "
                    f"[{low:+.3f}, {high:+.3f}]): the two metrics weigh the classes differently, and tk decides "
                    f"on {metric_names.get(metric, metric)}, the task's decision metric.")
    return ""


def against_fine_tune(score_fn, splits, labels, probabilities, model_thresholds, label_names, positive,
                      metrics: dict[str, Any], select_metric: str | None,
                      note) -> tuple[dict[str, Any], np.ndarray] | None:
    """The linear baseline of a run: fitted on ``splits``' train rows, C chosen on validation, scored on the test
    ``labels`` with ``score_fn`` (the run's own scoring), compared paired with the fine-tune's ``probabilities``.
    Returns (what metrics.json records, its test probabilities); None when it cannot be fitted (said with
    ``note``)."""
    started = time.perf_counter()
    train, validation = splits["train"], splits["validation"]
    note(f"Linear baseline: {DESCRIPTION}, on the {len(train):,} training texts; C chosen on the "
         f"{len(validation):,} validation texts.")
    fitted = fit(column(train, "text"), np.asarray(column(train, "label")), column(validation, "text"),
                 np.asarray(column(validation, "label")), column(splits["test"], "text"), len(label_names),
                 select_metric, positive)
    if fitted is None:
        note("Linear baseline: not fitted (one class in training, no validation rows, or no word in the texts).")
        return None
    scored = score_fn(fitted.probabilities, fitted.thresholds)
    labels = np.asarray(labels)
    multi_label = labels.ndim == 2
    if multi_label:
        fine_tune = paired.Scored(labels > 0.5, predict_sets(probabilities, model_thresholds), len(label_names))
        linear = paired.Scored(labels > 0.5, predict_sets(fitted.probabilities, fitted.thresholds), len(label_names))
    else:
        fine_tune = paired.Scored(labels, np.asarray(probabilities).argmax(axis=1), len(label_names), positive)
        linear = paired.Scored(labels, fitted.probabilities.argmax(axis=1), len(label_names), positive)
    metric = paired.decision_metric(metrics)
    shown = paired.shown_metrics(metric, metrics) + (("f1_macro", "hamming_loss") if multi_label else ())
    shown = tuple(dict.fromkeys(shown))
    versus = paired.test_against(fine_tune, linear, metric, shown)
    names = {name: paired.metric_name(name, metrics) for name in shown}
    found = summary(fitted, scored, versus, metric, names)
    found["seconds"] = round(time.perf_counter() - started, 2)  # fitting, scoring and the paired comparison
    return found, fitted.probabilities


def table_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, value, 95% interval) as text: the linear baseline's scores, then the fine-tune's paired
    differences from it; the report page and the model card each render these rows in their own format."""
    linear = metrics.get("linear_baseline")
    if not isinstance(linear, dict):
        return []
    found, names = linear.get("metrics") or {}, linear.get("metric_names") or {}
    c = f", C = {linear['C']:g}" if isinstance(linear.get("C"), (int, float)) else ""
    rows = []
    for key, title in names.items():
        if isinstance(found.get(key), (int, float)):
            ci = found.get(f"{key}_ci")
            rows.append((f"linear baseline {title} (TF-IDF + logistic regression{c})", f"{found[key]:.4f}",
                         f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"))
    for key, value in ((linear.get("versus") or {}).get("differences") or {}).items():
        rows.append((f"fine-tune minus linear baseline, {names.get(key, key)} (paired)",
                     f"{value['difference']:+.4f}", f"[{value['ci'][0]:+.3f}, {value['ci'][1]:+.3f}]"))
    return rows
