"""Calibrated probabilities: a temperature fitted on validation, baked into the classifier head; ECE; coverage.

Temperature scaling (Guo et al., 2017) divides the logits by one number T fitted to minimise the negative
log-likelihood of the validation split; the predicted class never changes (T > 0). Dividing the head's final
weight and bias by T gives the same logits, so the saved model itself is calibrated and every reader of it
(tk predict, tk evaluate, transformers.pipeline) returns calibrated scores with no extra code. Multi-label:
one temperature per label (each label's sigmoid), and each label's tuned threshold moves with it.

Expected calibration error (ECE): the scored rows' top-label confidence in ``BINS`` equal-width bins,
[0, 0.1), [0.1, 0.2), ... [0.9, 1.0]; ECE = sum over bins of (rows in bin / rows) x |accuracy in bin - mean
confidence in bin|. Multi-label: every (text, label) pair, its probability against whether the text has the
label. Its 95% interval is a percentile bootstrap over texts (``RESAMPLES`` resamples, seeded).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.evaluation.intervals import wilson

BINS = 10
RESAMPLES = 1000
COVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TEMPERATURE_RANGE = (0.05, 20.0)  # wider than any fitted value in the literature; the fit stops at the ends
MIN_GAIN = 1e-4  # nats per text: a smaller NLL gain leaves T = 1 (a model saying 0.5 everywhere, say)
TINY = np.float32(1e-30)  # log(0) guard: a probability that underflowed in float32


def log_scores(probabilities: np.ndarray, multi_label: bool) -> np.ndarray:
    """The logits up to a per-row constant, recovered from probabilities: log p (softmax), log(p / (1 - p))
    (sigmoid). softmax(log p / T) equals softmax(z / T), so the temperature fits on probabilities alone."""
    p = np.asarray(probabilities, dtype=np.float64)
    if multi_label:
        p = np.clip(p, 1e-7, 1 - 1e-7)  # float32 sigmoids round to 1 above a logit of about 16.6
        return np.log(p) - np.log1p(-p)
    return np.log(np.maximum(p, TINY))


def scaled(probabilities: np.ndarray, temperature: Any, multi_label: bool) -> np.ndarray:
    """The probabilities a model gives once its logits are divided by ``temperature`` (one per label for
    multi-label); the inverse of a temperature T is 1 / T."""
    scores = log_scores(probabilities, multi_label) / np.asarray(temperature, dtype=np.float64)
    if multi_label:
        return (1 / (1 + np.exp(-scores))).astype(np.float32)
    scores -= scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, multi_label: bool) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    if multi_label:
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(labels)), labels], 1e-12))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the validation NLL of softmax(log p / T) (single-label), or of one label's
    sigmoid (``probabilities`` and ``labels`` 1-D: one label's probability and 0/1 truth)."""
    from scipy.optimize import minimize_scalar

    multi_label = np.ndim(probabilities) == 1
    low, high = np.log(TEMPERATURE_RANGE)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(scaled(probabilities, np.exp(log_t), multi_label), labels, multi_label)

    found = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    best = round(float(np.exp(found.x)), 6)  # as recorded: the baked value and the reported one are the same
    # T = 1 (the model as trained) unless another value lowers the NLL by more than rounding noise
    return best if loss(found.x) < loss(0.0) - MIN_GAIN else 1.0


def fit_temperatures(probabilities: np.ndarray, labels: np.ndarray, multi_label: bool) -> float | np.ndarray:
    """One temperature (single-label) or one per label (multi-label)."""
    if not multi_label:
        return fit_temperature(probabilities, np.asarray(labels))
    labels = np.asarray(labels, dtype=np.float64)
    return np.array([fit_temperature(probabilities[:, j], labels[:, j]) for j in range(probabilities.shape[1])])


def confidence_and_hits(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ECE bins: top-label confidence and whether it was right (single-label), or each (text, label)
    pair's probability and whether the text has the label (multi-label); one row per text."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return np.asarray(probabilities, dtype=np.float64), labels > 0.5
    return probabilities.max(axis=1).astype(np.float64), probabilities.argmax(axis=1) == labels


def _binned(confidence: np.ndarray, hits: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin, [k/bins, (k+1)/bins) with 1.0 in the last: rows, hits, and the sum of confidence."""
    confidence, hits = np.ravel(confidence), np.ravel(hits).astype(np.float64)
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)
    return (np.bincount(which, minlength=bins), np.bincount(which, weights=hits, minlength=bins),
            np.bincount(which, weights=confidence, minlength=bins))


def bin_stats(confidence: np.ndarray, hits: np.ndarray, bins: int = BINS) -> dict[str, list]:
    """Per equal-width bin: rows, accuracy (share of hits) and mean confidence (None where a bin is empty)."""
    counts, right, sums = _binned(confidence, hits, bins)
    accuracy, mean = right / np.maximum(counts, 1), sums / np.maximum(counts, 1)
    return {"rows": counts.tolist(),
            "accuracy": [round(float(a), 4) if n else None for a, n in zip(accuracy, counts)],
            "confidence": [round(float(c), 4) if n else None for c, n in zip(mean, counts)]}


MIN_CHANGE_SPREAD = 0.001  # a change interval narrower than this is a fixed shift, not a measured noise
MIN_BIN_ROWS = 10  # fewer rows in a bin: its accuracy is too loose to say anything


def miscalibrated_bins(confidence: np.ndarray, hits: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """The bins where the model is wrong about itself beyond noise: the bin's mean confidence lies outside the
    Wilson interval of its accuracy, at 95% over all the bins tested (Bonferroni: each at 1 - 0.05 / bins
    with ``MIN_BIN_ROWS`` rows or more). ECE can be small while one bin is far off: it weighs each gap by its
    rows, and a wide bin nets out gaps of opposite sign inside it."""
    from scipy.stats import binomtest

    rows, right, sums = _binned(confidence, hits, bins)
    tested = [k for k in range(bins) if rows[k] >= MIN_BIN_ROWS]
    level = 1 - 0.05 / max(len(tested), 1)
    found = []
    for k in tested:
        n, accuracy, mean = int(rows[k]), right[k] / rows[k], sums[k] / rows[k]
        ci = binomtest(int(round(right[k])), n).proportion_ci(confidence_level=level, method="wilson")
        if not ci.low <= mean <= ci.high:
            found.append({"from": k / bins, "to": (k + 1) / bins, "rows": n, "accuracy": round(float(accuracy), 4),
                          "accuracy_ci": [round(float(ci.low), 4), round(float(ci.high), 4)],
                          "confidence": round(float(mean), 4),
                          "side": "overconfident" if mean > accuracy else "underconfident", "level": round(level, 4)})
    return found


def bins_in_words(found: list[dict[str, Any]], multi_label: bool = False) -> list[str]:
    """Each miscalibrated bin as a sentence: 'where the model says 0.80 to 0.90 (37 texts, mean 0.855) it was
    right 0.676 of the time [0.515, 0.804]: overconfident there'."""
    what, right = ("(text, label) pairs", "the text had the label") if multi_label else ("texts", "it was right")
    return [f"where the model says {b['from']:.2f} to {b['to']:.2f} ({b['rows']:,} {what}, mean {b['confidence']:.3f}) "
            f"{right} {b['accuracy']:.3f} of the time [{b['accuracy_ci'][0]:.3f}, {b['accuracy_ci'][1]:.3f}]: "
            f"{b['side']} there" for b in found]


def expected_calibration_error(confidence: np.ndarray, hits: np.ndarray, bins: int = BINS) -> float:
    """ECE as the module docstring defines it."""
    return float(_ece_rows(np.ravel(confidence)[None, :], np.ravel(hits)[None, :].astype(np.float64), bins)[0])


def _ece_rows(confidence: np.ndarray, hits: np.ndarray, bins: int) -> np.ndarray:
    """ECE of each row of a (resamples, n) pair of arrays, at once."""
    resamples, n = confidence.shape
    which = np.clip((confidence * bins).astype(int), 0, bins - 1) + bins * np.arange(resamples)[:, None]
    size = bins * resamples
    gap = np.abs(np.bincount(which.ravel(), weights=hits.ravel(), minlength=size)
                 - np.bincount(which.ravel(), weights=confidence.ravel(), minlength=size))
    return gap.reshape(resamples, bins).sum(axis=1) / max(n, 1)


def ece_with_intervals(before: np.ndarray, after: np.ndarray, labels: np.ndarray, bins: int = BINS,
                       resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """ECE before and after calibration on the same texts, each with a 95% percentile-bootstrap interval, and
    the interval of the change (the same resampled texts for both: a paired bootstrap)."""
    conf_b, hits_b = confidence_and_hits(before, labels)
    conf_a, hits_a = confidence_and_hits(after, labels)
    n = len(conf_b)
    estimates = {"before": expected_calibration_error(conf_b, hits_b, bins),
                 "after": expected_calibration_error(conf_a, hits_a, bins)}
    result: dict[str, Any] = {"ece_before": round(estimates["before"], 4), "ece_after": round(estimates["after"], 4),
                              "bins": bins, "n": n}
    if n < 2:
        return result
    rng = np.random.default_rng(seed)
    draws = {"before": [], "after": []}
    per_chunk = max(1, 2_000_000 // max(conf_b.size, 1))  # resamples drawn at once: bounded memory
    for start in range(0, resamples, per_chunk):
        index = rng.integers(0, n, size=(min(per_chunk, resamples - start), n))
        for name, conf, hits in (("before", conf_b, hits_b), ("after", conf_a, hits_a)):
            c, h = conf[index], hits[index].astype(np.float64)
            draws[name].append(_ece_rows(c.reshape(len(index), -1), h.reshape(len(index), -1), bins))
    before, after = (np.concatenate(draws[name]) for name in ("before", "after"))
    for name, values in (("ece_before_ci", before), ("ece_after_ci", after), ("ece_change_ci", after - before)):
        result[name] = [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]
    low, high = result["ece_change_ci"]
    if high - low < MIN_CHANGE_SPREAD:  # no interval rather than a falsely certain one
        result["ece_change_ci"] = None
        result["ece_change_note"] = (f"no interval: the resamples moved the change by under {MIN_CHANGE_SPREAD} "
                                     "(nearly every text in one bin, which a temperature moves as one), too little "
                                     "spread to tell its noise")
    result["interval"] = f"percentile bootstrap over texts, {resamples:,} resamples"
    return result


def selective(probabilities: np.ndarray, labels: np.ndarray,
              thresholds: tuple[float, ...] = COVERAGE_THRESHOLDS) -> list[dict[str, Any]]:
    """Accuracy against coverage: for each t, the share of texts whose top probability is at least t
    (answered) and the accuracy on those (None where none is answered). Multi-label: a text is answered when
    every label's decision is at least t sure (max(p, 1 - p) >= t), and right when its whole set is."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        sure = np.minimum.reduce(np.maximum(probabilities, 1 - probabilities), axis=1)
        right = ((probabilities >= 0.5) == (labels > 0.5)).all(axis=1)
    else:
        sure, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    rows = []
    for t in thresholds:
        answered = sure >= t
        count = int(answered.sum())
        ci = wilson(int(right[answered].sum()), count)
        rows.append({"min_confidence": t, "answered": count, "coverage": round(count / max(len(sure), 1), 4),
                     "accuracy": round(float(right[answered].mean()), 4) if count else None,
                     "accuracy_ci": [round(ci.low, 4), round(ci.high, 4)] if ci.low is not None else None})
    return rows


def highest_confidence(probabilities: np.ndarray, multi_label: bool) -> float | None:
    """How sure the model ever was on these texts (as selective and abstains measure it): a --min-confidence
    above it abstains on nearly everything."""
    if not len(probabilities):
        return None
    sure = (np.minimum.reduce(np.maximum(probabilities, 1 - probabilities), axis=1) if multi_label
            else probabilities.max(axis=1))
    return round(float(sure.max()), 4)


def abstains(probabilities: np.ndarray, min_confidence: float, multi_label: bool) -> np.ndarray:
    """tk predict --min-confidence: the texts whose answer is less sure than ``min_confidence``."""
    if multi_label:
        return np.minimum.reduce(np.maximum(probabilities, 1 - probabilities), axis=1) < min_confidence
    return probabilities.max(axis=1) < min_confidence


def classifier_head(model: Any) -> Any:
    """The linear layer that writes the logits: the last ``nn.Linear`` with one output per label
    (``classifier`` in BERT, ``classifier.out_proj`` in RoBERTa)."""
    import torch

    heads = [module for _, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and module.out_features == model.config.num_labels]
    return heads[-1] if heads else None


def bake(model: Any, temperature: float | np.ndarray) -> bool:
    """Divide the classifier head's weight and bias by the temperature (row j by label j's): the model's
    logits become the calibrated ones. Recorded in the config as ``tk_temperature``. False: no head found."""
    import torch

    head = classifier_head(model)
    if head is None:
        return False
    divide = torch.as_tensor(np.atleast_1d(np.asarray(temperature, dtype=np.float64)), dtype=head.weight.dtype,
                             device=head.weight.device)
    with torch.no_grad():
        head.weight.div_(divide[:, None] if divide.numel() > 1 else divide)
        if head.bias is not None:
            head.bias.div_(divide)
    model.config.tk_temperature = (float(temperature) if np.ndim(temperature) == 0
                                   else [round(float(t), 6) for t in temperature])
    return True
