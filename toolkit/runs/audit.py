"""`tk audit`: rank rows by how likely their given label is wrong, from out-of-sample probabilities.

The method is confident learning (Northcutt, Jiang & Chuang, JAIR 2021) through cleanlab: the rows flagged
are those ``cleanlab.filter.find_label_issues`` finds (prune by noise rate), every row is ranked by its
label-quality score (self-confidence: the probability the model gives the row's given label; multi-label:
cleanlab's per-label self-confidence, pooled per row), and the estimated number of label errors is
``cleanlab.count.num_label_issues`` (the off-diagonal of the calibrated confident joint), with a 95%
interval from half-samples of the rows (``estimate_interval``). Rows whose text (normalised as tk check
compares texts) appears with another label are flagged too when the models' answer is not their label.

Single-label, where the rows carry the linear baseline's out-of-sample probabilities too (``linear_p_``
columns: every run and fold fits it), "the model" is the two together: their probabilities averaged with
weights proportional to each one's accuracy on the given labels, so the scores are cleanlab's
``get_label_quality_ensemble_scores`` (self-confidence, weighted by accuracy). Two models that err
differently disagree less often with a correct label than either alone (cleanlab's advice: ensemble).

The probabilities must be out-of-sample: a tk cv folder's oof.csv scores every training row with a model
that did not train on it. A tk run folder has that only for its test split (predictions.csv).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.hashes import normalise
from toolkit.errors import TkError
from toolkit.runs.artifacts import spreadsheet_safe
from toolkit.runs.cv_summary import (
    cell_value,
    classes_in_one_fold,
    linear_probabilities,
    oof_arrays,
    read_oof,
    write_cv_report,
)
from toolkit.runs.folders import run_status
from toolkit.runs.report_page import write_report
from toolkit.saving import read_json, write_json, write_text

RESAMPLES = 200  # half-samples for the estimated error count's interval
STEADY_CLASS_ROWS = 20  # below it, a class's threshold in confident learning moves with each of its rows
PLAIN_RUN = ("a tk run's model trained on the training rows, so its probabilities for them are not "
             "out-of-sample: only the test split ({n} rows) is audited, and those are the rows you score with. "
             "tk cv scores every training row out of fold: run it to audit the training data")


def needs_cleanlab():
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise TkError("tk audit needs cleanlab: pip install 'tk-toolkit[audit]' (or pip install cleanlab).") from None


def audited_rows(run_dir: Path) -> tuple[list[dict[str, str]], tuple[str, ...], bool, str, str | None]:
    """(rows with row, text, label and p_ columns; label names; multi-label; what was audited; warning)."""
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else None
    if not isinstance(config, dict):
        raise TkError(f"{run_dir} is not a tk run or tk cv folder (no config.json). tk list --runs shows them.")
    if config.get("kind") == "cv":
        rows, _ = read_oof(run_dir)
        summary = read_json(run_dir / "cv.json")
        return rows, tuple(summary["labels"]), summary.get("problem") == "multi-label", "out-of-fold (tk cv)", None
    path = run_dir / "predictions.csv"
    if run_status(run_dir) != "complete" or not path.is_file():
        raise TkError(f"{run_dir} is not a complete run (status: {run_status(run_dir)}); audit a complete tk run "
                      "or tk cv folder.")
    manifest = read_json(run_dir / "manifest.json")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    multi = (manifest.get("task") or {}).get("problem") == "multi-label"
    return rows, tuple(manifest["labels"]), multi, "test split (tk run)", PLAIN_RUN.format(n=f"{len(rows):,}")


@dataclass
class Member:
    """One model whose out-of-sample probabilities the audit ranks with, and its weight in the average."""

    name: str
    probabilities: np.ndarray
    accuracy: float = float("nan")
    weight: float = 1.0


def members_of(rows: list[dict[str, str]], names: tuple[str, ...], labels: np.ndarray, probabilities: np.ndarray,
               multi_label: bool) -> list[Member]:
    """The fine-tune, and (single-label, when every row has its ``linear_p_`` columns) the linear baseline,
    weighted by accuracy on the given labels as cleanlab weights an ensemble."""
    members = [Member("fine-tune", probabilities)]
    linear = None if multi_label else linear_probabilities(rows, names)
    if linear is not None:
        members.append(Member("linear baseline", linear))
    if len(members) > 1:
        for member in members:
            member.accuracy = float((member.probabilities.argmax(axis=1) == labels).mean())
        total = sum(m.accuracy for m in members)
        for member in members:
            member.weight = member.accuracy / total if total > 0 else 1 / len(members)
    return members


def pooled(members: list[Member]) -> np.ndarray:
    return sum(m.weight * m.probabilities for m in members) if len(members) > 1 else members[0].probabilities


def rank(labels: np.ndarray, probabilities: np.ndarray, multi_label: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(label-quality score per row, flagged per row, estimated number of label errors)."""
    if multi_label:
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        listed = [np.flatnonzero(row > 0.5).tolist() for row in labels]
        quality = get_label_quality_scores(listed, probabilities)
        flagged = find_label_issues(listed, probabilities)
        return quality, flagged, int(flagged.sum())
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels, probabilities)
    flagged = find_label_issues(labels, probabilities)
    return quality, flagged, count_errors(labels, probabilities, multi_label=False)


def count_errors(labels: np.ndarray, probabilities: np.ndarray, multi_label: bool) -> int:
    """The estimated number of label errors, as ``rank`` counts them, without ranking."""
    if multi_label:
        from cleanlab.multilabel_classification.filter import find_label_issues

        return int(find_label_issues([np.flatnonzero(row > 0.5).tolist() for row in labels], probabilities).sum())
    from cleanlab.count import num_label_issues

    return int(num_label_issues(labels, probabilities))


def estimate_interval(labels: np.ndarray, probabilities: np.ndarray, multi_label: bool, estimate: int,
                      resamples: int = RESAMPLES, seed: int = 0) -> list[int] | None:
    """95% interval of the estimated error count, from half-samples: ``resamples`` draws of half the rows
    without replacement, each one's count scaled to the whole set. Given the rows, a half-sample's rate
    varies as much as the whole set's rate does from sample to sample (the finite-population correction
    halves the variance of a mean over n/2 rows: sigma^2 / n), so the spread of the scaled counts around
    their median, put around the estimate, is the interval.

    Not the row bootstrap: resampling with replacement repeats rows, and confident learning counted more
    errors in such resamples than in the data (50 classes, 5,452 rows: estimate 291, resamples' median
    336, percentile interval 244 to 872)."""
    import warnings

    rng = np.random.default_rng(seed)
    half = len(labels) // 2
    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(resamples):
            index = rng.choice(len(labels), half, replace=False)
            try:  # a half may lack a rare class: cleanlab counts over the classes it has
                counts.append(count_errors(labels[index], probabilities[index], multi_label) * len(labels) / half)
            except (ValueError, IndexError):
                continue
    if len(counts) < resamples // 2:
        return None
    low, middle, high = np.percentile(counts, [2.5, 50, 97.5])
    return [max(round(float(estimate + low - middle)), 0), round(float(estimate + high - middle))]


def conflicts(texts: list[str], given: list[str]) -> dict[int, list[int]]:
    """Rows (positions) whose normalised text appears elsewhere with another label: position -> the others."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        groups[normalise(text)].append(i)
    found = {}
    for members in groups.values():
        if len(members) > 1 and len({given[i] for i in members}) > 1:
            for i in members:
                found[i] = [j for j in members if j != i]
    return found


def audit(run_dir: Path, progress_note=print) -> dict[str, Any]:
    """Rank the run's rows, write audit.csv and audit.json; returns the summary."""
    needs_cleanlab()
    rows, names, multi, what, warning = audited_rows(run_dir)
    if not rows:
        raise TkError(f"{run_dir}: no rows to audit.")
    labels, probabilities = oof_arrays(rows, names, multi)
    if not multi and len(np.unique(labels)) < 2:
        raise TkError(f"{run_dir}: every audited row has the label '{names[int(labels[0])]}': nothing to compare.")
    probabilities = probabilities / (probabilities.sum(axis=1, keepdims=True) if not multi else 1)  # 4 decimals
    members = members_of(rows, names, labels, probabilities, multi)
    probabilities = pooled(members)
    quality, flagged, estimate = rank(labels, probabilities, multi)
    interval = estimate_interval(labels, probabilities, multi, estimate)
    small = 0 if multi else small_classes(labels)
    entries, clash = review_entries(rows, names, labels, members, quality, flagged, multi)
    write_audit_csv(run_dir / "audit.csv", entries)
    summary = {"run": str(run_dir), "audited": what, "rows": len(entries), "multi_label": multi,
               "method": "confident learning (cleanlab find_label_issues, prune_by_noise_rate); score: label "
                         "quality, self-confidence" + (" of the models' accuracy-weighted average probabilities"
                                                       if len(members) > 1 else ""),
               "models": [{"model": m.name, **({"accuracy": round(m.accuracy, 4), "weight": round(m.weight, 4)}
                                               if len(members) > 1 else {})} for m in members],
               "estimated_errors": estimate, "estimated_errors_ci": interval,
               "estimated_errors_note": small_classes_note(small) if small and interval else None,
               "interval": f"spread of the counts in {RESAMPLES} half-samples of the rows (without replacement), "
                           "around the estimate",
               "model_disagreements": None if multi else int((probabilities.argmax(axis=1) != labels).sum()),
               "flagged": int(sum(e["flagged"] for e in entries)), "duplicate_conflicts": clash,
               "warning": warning, "top": entries[:20]}
    write_json(run_dir / "audit.json", summary)
    rewrite_report(run_dir)
    return summary


def review_entries(rows: list[dict[str, str]], names: tuple[str, ...], labels: np.ndarray, members: list[Member],
                   quality: np.ndarray, flagged: np.ndarray, multi_label: bool) -> tuple[list[dict[str, Any]], int]:
    """(one entry per row, in the order to review them: by label quality, lowest first; how many rows share
    their text with a differently labelled row).

    The order is the score's alone, flagged or not: confident learning's per-class counts are thin for rare
    classes, and ranking its flagged rows first put rows whose label the models give almost no probability
    behind flagged rows they give 0.4 (a 50-class trial: 38 of 50 known flips in the top 100 that way, 41 by
    the score). A row that shares its text with a differently labelled row is flagged when the models' answer
    is not its label: of two rows with one text and two labels, the one they agree with is likely right. Rows
    whose class has no row outside their fold (single-label cv) go last: that fold's model never saw the
    class, so its answer says nothing of their label."""
    probabilities = pooled(members)
    texts = [cell_value(r["text"]) for r in rows]
    given = [cell_value(r["label"]) for r in rows]
    clash = conflicts(texts, given)
    numbers = [int(r["row"]) for r in rows]
    unseen = set() if multi_label else unseen_in_training(rows, labels)
    entries = []
    for i in range(len(rows)):
        if multi_label:
            answer = probabilities[i] >= 0.5
            suggested = json.dumps([names[j] for j in np.flatnonzero(answer)])
            agrees = bool(np.array_equal(answer, labels[i] > 0.5))
            why = f"label quality {quality[i]:.3f}"
        else:
            top = int(probabilities[i].argmax())
            suggested = names[top]
            label = int(labels[i])
            agrees = top == label
            each = (" (" + ", ".join(f"{m.name} {m.probabilities[i, label]:.3f}" for m in members) + ")"
                    if len(members) > 1 else "")
            why = f"p({given[i]}) = {probabilities[i, label]:.3f}{each}" + (
                "" if agrees else f", p({suggested}) = {probabilities[i, top]:.3f}")  # the label: said once
        reasons = [("flagged by confident learning: " if flagged[i] else "") + why]
        if i in clash:
            others = sorted(clash[i], key=lambda j: numbers[j])
            reasons.append("same text as row" + ("s " if len(others) > 1 else " ")
                           + ", ".join(f"{numbers[j]} ({given[j]})" for j in others[:5])
                           + ("; the model agrees with this row's label" if agrees else ""))
        if i in unseen:
            reasons.append(f"no row of '{given[i]}' is outside fold {rows[i]['fold']}: its model never saw the class")
        entries.append({"row": numbers[i], "text": texts[i], "label": given[i], "suggested": suggested,
                        "score": round(float(quality[i]), 4),
                        "flagged": bool((flagged[i] or (i in clash and not agrees)) and i not in unseen),
                        "reason": "; ".join(reasons)})
    order = sorted(range(len(entries)), key=lambda i: (i in unseen, entries[i]["score"], entries[i]["row"]))
    return [entries[i] for i in order], len(clash)


def unseen_in_training(rows: list[dict[str, str]], labels: np.ndarray) -> set[int]:
    """Positions of oof rows whose class has no row in another fold: their fold trained without it."""
    if not rows or "fold" not in rows[0]:
        return set()
    alone = classes_in_one_fold(labels, np.array([int(r["fold"]) for r in rows]))
    return {i for i, label in enumerate(labels) if int(label) in alone}


def small_classes(labels: np.ndarray) -> int:
    """How many classes have rows, but fewer than STEADY_CLASS_ROWS of them."""
    counts = np.bincount(labels.astype(np.int64))
    return int(((counts > 0) & (counts < STEADY_CLASS_ROWS)).sum())


def small_classes_note(small: int) -> str:
    have = "class has" if small == 1 else "classes have"
    return (f"wide where classes are small: {small} {have} fewer than {STEADY_CLASS_ROWS} rows, and confident "
            "learning's count moves with each of their rows")


def rewrite_report(run_dir: Path) -> None:
    """The folder's report.html, now with the audit section."""
    if read_json(run_dir / "config.json").get("kind") == "cv":
        write_cv_report(run_dir, read_json(run_dir / "cv.json"))
    else:
        write_report(run_dir)


AUDIT_COLUMNS = ("row", "text", "label", "suggested", "score", "flagged", "reason")


def write_audit_csv(path: Path, entries: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(AUDIT_COLUMNS)
    for entry in entries:
        writer.writerow([entry["row"], spreadsheet_safe(entry["text"]), spreadsheet_safe(entry["label"]),
                         spreadsheet_safe(entry["suggested"]), f"{entry['score']:.4f}", int(entry["flagged"]),
                         entry["reason"]])
    write_text(path, buffer.getvalue())


def read_audit(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "audit.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        return [{**row, "text": cell_value(row["text"]), "label": cell_value(row["label"]),
                 "suggested": cell_value(row["suggested"])} for row in csv.DictReader(handle)]
