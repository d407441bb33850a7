"""`tk compare RUN... --data FILE`: finished runs scored on one file the user names, compared row by row.

By default tk compare reads each run's own test split. A user's real check is often another file: a
hand-labelled set, a later period, the domain the model will serve. There the runs can rank otherwise than on
their test splits. Each run's saved model scores FILE as `tk evaluate RUN --data FILE` does, so every run
answers the same rows, and each run is tested against the best as runs sharing a test split are
(``compare.versus``): McNemar's exact test on accuracy, else a paired bootstrap of the decision metric.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from toolkit.data.rows import ROW, column
from toolkit.errors import TkError
from toolkit.evaluation import classical, paired
from toolkit.evaluation.scoring import score
from toolkit.runs.compare import RunSummary, summarise
from toolkit.runs.evaluate import evaluate_rows
from toolkit.runs.export_check import answers, correct
from toolkit.runs.saved import load_run


def summarise_on_data(pm, run_dir: Path, data: str, columns: dict[str, str] | None = None,
                      allow_incomplete: bool = False) -> tuple[RunSummary, tuple[str, ...], list[str]]:
    """The run's summary with its test metrics and rows replaced by its answers on ``data``; its label names;
    what scoring said (rows left out, and why)."""
    summary = summarise(run_dir, allow_incomplete=allow_incomplete)
    saved = load_run(run_dir, allow_incomplete=allow_incomplete, need=("metrics.json", "manifest.json"))
    evaluated = evaluate_rows(pm, saved, data, columns=columns)
    rows, probabilities = evaluated.rows, evaluated.probabilities
    labels = np.asarray(column(rows, "label"))
    predicted = answers(saved, probabilities)
    if saved.multi_label:
        labels, predicted = labels.astype(bool), predicted.astype(bool)
    positive = evaluated.metrics.get("positive_label")
    scored = paired.Scored(labels, predicted, len(saved.labels),
                           saved.labels.index(positive) if positive in saved.labels else None)
    rows_of = hashlib.sha256(f"{Path(data).resolve()}\n{labels.tobytes().hex()}".encode()).hexdigest()[:16]
    row_ids = np.asarray(column(rows, ROW)) if ROW in rows.column_names else None
    metrics = {**summary.metrics, **evaluated.metrics}
    metrics.pop("linear_baseline", None)  # scored on the run's test rows, not on data's
    linear = (linear_on_data(pm, saved, evaluated, metrics, scored.positive)
              if saved.task.linear_baseline and evaluated.training is not None else None)
    if linear is not None:
        metrics["linear_baseline"] = linear
    summary = replace(summary, metrics=metrics, scored=scored,
                      correct=correct(saved, predicted, labels), test_fingerprint=rows_of, row_ids=row_ids,
                      test_source=rows_of)
    return summary, saved.labels, list(evaluated.metrics["notes"])


def linear_on_data(pm, saved, evaluated, metrics: dict, positive: int | None) -> dict | None:
    """The run's linear baseline, fitted again on the run's own training rows (``evaluated.training``; C chosen
    on its validation rows, as tk run fits it), and compared paired with the run on the rows of ``evaluated``: a fine-tune that
    beat TF-IDF on its test split may not on the user's file. None where it cannot be fitted."""
    labels = column(evaluated.rows, "label")

    def score_linear(probabilities, thresholds):
        return score(pm, labels, probabilities, saved.labels, confidence=True, positive_label=positive,
                     thresholds=thresholds)

    fitted = classical.against_fine_tune(score_linear, {**evaluated.training, "test": evaluated.rows}, labels,
                                         evaluated.probabilities, saved.thresholds, saved.labels, positive, metrics,
                                         saved.task.select_metric, lambda note: None)
    return fitted[0] if fitted else None


def runs_on_data(pm, run_dirs: list[Path], data: str, columns: dict[str, str] | None = None,
                 allow_incomplete: bool = False) -> tuple[list[RunSummary], list[str]]:
    """Every run scored on ``data``, and the notes to print above the table: what the file holds, a run that
    trained on it (its scores optimistic), what scoring left out. Runs whose labels differ are refused."""
    found = [summarise_on_data(pm, run_dir, data, columns, allow_incomplete) for run_dir in run_dirs]
    names = {labels for _, labels, _ in found}
    if len(names) > 1:
        shown = "; ".join(f"{summary.label}: {', '.join(labels)}" for summary, labels, _ in found)
        raise TkError(f"The runs name their labels differently ({shown}), so their answers on {data} cannot be "
                      "compared row by row. Compare runs of one task (or one labels key).")
    runs = [summary for summary, _, _ in found]
    notes = list(dict.fromkeys(note for _, _, said in found for note in said))
    first = runs[0].metrics
    notes.append(f"Every run scored {data} ({first['split_description']}): {first['n']:,} rows, the same for "
                 "every run, in place of the runs' own test splits; each run is tested against the best on them, "
                 "paired row by row.")
    notes += trained_on(runs, data)
    return runs, notes


def trained_on(runs: list[RunSummary], data: str) -> list[str]:
    """A run whose own data is the file scored has seen its rows: its scores there are optimistic."""
    given = Path(data).resolve()
    seen = [run.label for run in runs if run.data and Path(str(run.data)).resolve() == given]
    if not seen:
        return []
    whose = "its" if len(seen) == 1 else "their"
    return [f"WARNING: {', '.join(seen)} trained on {data}, so {whose} scores there are optimistic (the rows "
            "trained and validated on are in it); score a file no run trained on."]
