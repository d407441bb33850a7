"""What metrics.json says about the model beyond its test scores: the underfitting diagnosis (from the
history, the base rates' prior and the test predictions) and the linear baseline it is compared with."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.rows import column
from toolkit.evaluation import classical
from toolkit.evaluation.diagnosis import CUT_SHARE, diagnose_underfitting
from toolkit.evaluation.scoring import score
from toolkit.runs.prepared import Prepared
from toolkit.runs.validation import validation_prior
from toolkit.training.progress import Progress


def underfitting(prepared: Prepared, result, labels, probabilities) -> dict[str, Any]:
    """metrics.json's ``underfitting``: the diagnosis, from the history, the prior and the test predictions."""
    task = prepared.task
    labels = np.asarray(labels)
    predicted, present = classes_predicted(labels, probabilities) if labels.ndim == 1 else (None, None)
    settings = {"epochs": task.epochs, "learning_rate": task.learning_rate, "max_length": task.max_length,
                "epochs_run": len(result.history), "unit": "label" if task.multi_label else "class"}
    return diagnose_underfitting(result.history, validation_prior(prepared), predicted, present, settings,
                                 training_cut_share(prepared))


def training_cut_share(prepared: Prepared) -> float | None:
    """The share of training texts cut at max_length (None where texts are read in windows: none is cut)."""
    task = prepared.task
    if task.reads_in_windows:
        return None
    lengths = np.asarray(column(prepared.tokenized["train"], "length"))  # tokenize_splits records each row's
    return float(np.mean(lengths >= task.max_length)) if len(lengths) else 0.0


def reading_advice(prepared: Prepared) -> str:
    """For a linear baseline as good as the fine-tune or better: it reads every text whole, so where the
    fine-tune saw a cut of many of them, reading more is the first thing to try."""
    share = training_cut_share(prepared)
    if share is None or share < CUT_SHARE:
        return ""
    return (f" The linear model reads each text whole, and {share:.0%} of the training texts were cut at max_length "
            f"= {prepared.task.max_length} tokens: try --set long_text=chunks (on IMDB it took MiniLM from 0.822 "
            "to 0.898; docs/long-documents.md) or a longer max_length.")


def classes_predicted(labels: np.ndarray, probabilities) -> tuple[int, int]:
    """(of the classes in the test rows, how many the model predicts; how many there are). A predicted class
    with no test row would count towards "predicts half of them" while telling nothing about them."""
    present = np.unique(labels)
    return len(np.intersect1d(np.unique(np.asarray(probabilities).argmax(axis=1)), present)), len(present)


def linear_baseline(pm, prepared: Prepared, metrics: dict[str, Any], labels, probabilities, tuned,
                    positive: int | None, progress: Progress) -> tuple[dict[str, Any], np.ndarray | None]:
    """What the linear baseline adds to metrics.json (the fine-tune's ``metrics`` so far): ``linear_baseline``,
    and when it is as good as the fine-tune or better, ``warnings`` with one more that says so; and its test
    probabilities (predictions.csv's ``linear_p_`` columns), None when it could not be fitted."""
    task, names = prepared.task, prepared.dataset.labels

    def score_linear(found, cut):
        return score(pm, labels, found, names, confidence=True, positive_label=positive, thresholds=cut)

    fitted = classical.against_fine_tune(score_linear, prepared.splits, labels, probabilities, tuned, names, positive,
                                         metrics, task.select_metric, progress.note)
    if fitted is None:
        return {}, None
    found, linear_probabilities = fitted
    if found["versus"]["real"] and found["versus"]["differences"][found["versus"]["metric"]]["difference"] > 0:
        return {"linear_baseline": found}, linear_probabilities
    found["verdict"] += reading_advice(prepared)
    warnings = [*metrics.get("warnings", []), found["verdict"]]
    return {"linear_baseline": found, "warnings": warnings}, linear_probabilities


def warnings_across(metrics_files: list[Path]) -> list[tuple[str, int, int]]:
    """What several runs' metrics.json warn of, once per kind: (its first wording, in how many runs, the
    position of the run it is quoted from). Two warnings are of one kind when they differ only in their
    numbers and quoted names ('ham', a list of classes)."""
    seen: dict[str, list] = {}  # a warning with its numbers and names taken out -> [first wording, runs, first]
    for position, path in enumerate(metrics_files):
        try:
            warnings = json.loads(path.read_text(encoding="utf-8")).get("warnings") or []
        except (OSError, ValueError, AttributeError):
            continue
        for warning in warnings:
            if isinstance(warning, str):
                seen.setdefault(kind_of(warning), [warning, 0, position])[1] += 1
    return [(text, count, first) for text, count, first in seen.values()]


def group_warnings(groups: dict[str, list]) -> list[str]:
    """What each group's runs (``RunSummary``s: a setting over seeds) warn of, once per group and kind:
    "WARNING default (2 of 2 runs, in the words of seed 43's run): The model predicts 'ham' for 100.0% of the 80
    rows ...". A verdict between settings that all learned nothing, or all lose to the linear baseline, must
    not read as one between good models."""
    lines = []
    for label, runs in groups.items():
        for text, count, first in warnings_across([run.path / "metrics.json" for run in runs]):
            seed = (runs[first].settings or {}).get("seed")
            whose = f", in the words of seed {seed}'s run" if count > 1 and seed is not None else ""
            counted = f" ({count} of {len(runs)} runs{whose})" if len(runs) > 1 else ""  # a run alone: its own
            lines.append(f"WARNING {label}{counted}: {text}")
    return lines


def kind_of(warning: str) -> str:
    """A warning with its numbers and quoted names, and any list of them ('a', 'b' and 3 more), as one #."""
    kind = re.sub(r"'[^']*'|[-+]?[\d.,]+", "#", warning).replace(" and # more", "")
    return re.sub(r"#(?:[\s,]*#)*", "#", kind)
