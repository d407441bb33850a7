"""Comparing runs: which differences are real and which are noise.

The verdict is decided on the task's own metric (``paired.decision_metric``:
the metric it selects epochs on, else micro F1 for multi-label, accuracy for
two classes of about equal size, macro F1 otherwise). Two runs on the same
test rows are compared paired: McNemar's exact test when that metric is
accuracy (Dietterich, 1998), else a paired bootstrap of the metric
difference; every metric shown gets its difference with a 95% interval.
Two runs that scored nearly the same rows of one test file (each leaving out
the few whose text its own split used) are paired on the rows both scored;
runs scored on different test rows are compared with an unpaired bootstrap,
and the table says so. Groups of runs over several seeds are compared with
Welch's t-test on the metric. With three runs or more, each other run is
tested against the best, so the p-values are adjusted for the number of
tests (Holm, 1979) before the verdict: an adjusted p < 0.05 is "real";
anything else is marked as within noise.
"""

from __future__ import annotations

import json
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import SPLIT_SIZED_BY
from toolkit.errors import TkError
from toolkit.evaluation import paired
from toolkit.evaluation.intervals import MIN_BOOTSTRAP_ROWS, mcnemar_exact
from toolkit.runs.artifacts import FORMULA_START
from toolkit.runs.loader import open_run

SIGNIFICANCE = 0.05


@dataclass
class RunSummary:
    label: str
    metrics: dict[str, Any]
    correct: np.ndarray | None  # per test row: prediction right?
    test_fingerprint: str | None
    path: Path | None = None
    settings: dict[str, Any] | None = None  # the task keys the run was trained with (config.json)
    data: str | None = None  # the data it used, as config.json records it: a resolved path, or where from (the Hub)
    data_fingerprint: str | None = None  # the data as loaded, before splitting (manifest.json): a changed file
    scored: paired.Scored | None = None  # each test row's label and prediction (predictions.csv)
    row_ids: np.ndarray | None = None  # each test row's number in the file it came from (predictions.csv's row)
    test_source: str | None = None  # the test split as loaded, before a run left rows out (where the data has one)
    split_rows: dict[str, int] | None = None  # the rows each split had as trained (an unset size's default gave these)

    @property
    def best_validation_loss(self) -> float:
        return min(r["validation_loss"] for r in self.metrics["history"])


def summarise(run_dir: Path, label: str | None = None, allow_incomplete: bool = False) -> RunSummary:
    """A run's numbers, read through the run loader (complete, files as saved, of the types tk wrote)."""
    folder = open_run(run_dir, allow_incomplete, verify="results")
    metrics, manifest, config = folder.metrics, folder.manifest, folder.config
    fingerprint = ((manifest.get("data_fingerprint") or {}).get("test") or {}).get("sha256")
    sources = manifest.get("source_fingerprint") or {}
    source = ", ".join(f"{split} {value.get('sha256')}" for split, value in sorted(sources.items())) or None
    correct, scored, row_ids = None, None, None
    if (run_dir / "predictions.csv").exists():
        rows = folder.predictions()
        if isinstance(metrics.get("n"), int) and len(rows) != metrics["n"]:  # cut short, where no checksum says so
            raise TkError(f"{run_dir / 'predictions.csv'} has {len(rows):,} rows where metrics.json scored "
                          f"{metrics['n']:,}: the run folder is damaged. Train it again, or compare other runs.")
        correct = np.array([row["label"] == row["predicted"] for row in rows])
        scored = scored_rows(rows, list(rows[0]) if rows else [], metrics)
        row_ids = row_numbers(rows)
    settings, data = config.get("task"), config.get("data") or config.get("data_source")
    if settings is not None and config.get("data"):  # "sms.csv" in tasks.toml and --data /x/sms.csv: one file
        settings = {**settings, "data": config["data"]}
    name = (label or run_dir.name) + (" (INCOMPLETE)" if folder.warning else "")
    checks = manifest.get("data_checks")
    return RunSummary(name, metrics, correct, fingerprint, run_dir, settings, data, source, scored, row_ids,
                      (sources.get("test") or {}).get("sha256"),
                      checks.get("split_rows") if isinstance(checks, dict) else None)


def row_numbers(rows: list[dict[str, str]]) -> np.ndarray | None:
    """predictions.csv's row numbers; None where a run has none (an older tk) or they repeat."""
    try:
        found = np.array([int(row["row"]) for row in rows], dtype=np.int64)
    except (KeyError, ValueError):
        return None
    return found if len(np.unique(found)) == len(found) else None


def scored_rows(rows: list[dict[str, str]], columns: list[str], metrics: dict[str, Any]) -> paired.Scored | None:
    """predictions.csv as class ids (multi-label: multi-hot); None when a label is not among its p_ columns."""
    names = [column[2:] for column in columns if column.startswith("p_")]
    index = {name: i for i, name in enumerate(names)}
    try:
        if metrics.get("problem") == "multi-label":
            def hot(cell: str) -> np.ndarray:
                row = np.zeros(len(names), dtype=bool)
                row[[index[name] for name in json.loads(cell)]] = True
                return row
            labels = np.array([hot(row["label"]) for row in rows]).reshape(len(rows), len(names))
            predictions = np.array([hot(row["predicted"]) for row in rows]).reshape(len(rows), len(names))
        else:
            labels = np.array([index[_unquoted(row["label"])] for row in rows], dtype=np.int64)
            predictions = np.array([index[_unquoted(row["predicted"])] for row in rows], dtype=np.int64)
    except (KeyError, ValueError):
        return None
    positive = metrics.get("positive_label")
    return paired.Scored(labels, predictions, len(names), index.get(positive) if positive is not None else None)


def _unquoted(cell: str) -> str:
    """A cell as written before artifacts.spreadsheet_safe put a ' before a formula-like start."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def mcnemar_p(a: RunSummary, b: RunSummary) -> float | None:
    """Exact McNemar p-value for two runs' paired test predictions; None when rows differ."""
    if a.correct is None or b.correct is None or a.test_fingerprint != b.test_fingerprint:
        return None
    if len(a.correct) != len(b.correct):
        return None
    return mcnemar_exact(a.correct, b.correct)


def welch_p(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    if _constant(a) and _constant(b):
        return 1.0 if statistics.mean(a) == statistics.mean(b) else 0.0
    with warnings.catch_warnings():  # one group constant to rounding: scipy's "catastrophic cancellation"
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a if not _constant(a) else [a[0]] * len(a),
                               b if not _constant(b) else [b[0]] * len(b), equal_var=False).pvalue)


def _constant(values: list[float]) -> bool:
    """Equal to rounding: seeds that gave one answer (a model that predicts one class) differ by 1e-16."""
    return max(values) - min(values) <= 1e-12 * max(1.0, abs(statistics.mean(values)))


def verdict(p: float | None, adjusted: float | None = None) -> str:
    """The table's words for a test against the best: 'real (p=0.012)', 'real (p<0.001)' (never 'p=0.000'),
    'noise (p=0.45)' or 'n/a'; with ``adjusted`` (Holm's p, of three runs or more) both, the verdict on it:
    'noise (p=0.030, Holm 0.090)'."""
    if p is None:
        return "n/a"
    if adjusted is None:
        return f"noise (p={p:.2f})" if p >= SIGNIFICANCE else f"real (p{_p(p)})"
    return f"{'noise' if adjusted >= SIGNIFICANCE else 'real'} (p{_p(p)}, Holm {_p(adjusted).lstrip('=')})"


def _p(p: float) -> str:
    return f"={p:.3f}" if p >= 0.001 else "<0.001"


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm, 1979) of one family of p-values: the k-th smallest is multiplied by
    (m - k + 1), kept at least the adjusted value before it, and capped at 1. Comparing adjusted p with 0.05 keeps
    the chance of any 'real' among tests of no difference at 5%, whatever their dependence (these share the
    best run). Six lines, where statsmodels' multipletests would bring a large dependency for them."""
    m, adjusted, running = len(p_values), [1.0] * len(p_values), 0.0
    for rank, index in enumerate(sorted(range(m), key=p_values.__getitem__)):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def adjust_for_multiplicity(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's test against the best gets ``p_holm`` (its p adjusted over the rows tested; the p itself with
    one test; None without a test), and its verdict is decided on it."""
    tested = [row["vs_best"] for row in rows if row["vs_best"]["p"] is not None]
    adjusted = holm([found["p"] for found in tested]) if len(tested) > 1 else [found["p"] for found in tested]
    for row in rows:
        row["vs_best"]["p_holm"] = None
        row["vs_best"]["tests"] = len(tested)
    for found, p in zip(tested, adjusted):
        found["p_holm"] = p
        found["verdict"] = "real" if p < SIGNIFICANCE else "noise"
    return rows


def against_best(p: float | None, difference: float, test: str, is_best: bool, metric: str = "accuracy",
                 differences: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row's test against the best row, as data: the text column and tk compare --json share it.
    ``metric``: the one the verdict is decided on; ``differences``: each metric shown, this run minus the best,
    with its 95% interval."""
    word = "best" if is_best else "n/a" if p is None else "real" if p < SIGNIFICANCE else "noise"
    return {"test": test, "metric": metric, "p": p, "verdict": word, "accuracy_difference": round(difference, 6),
            "differences": differences or {}}


def versus(run: RunSummary, best: RunSummary, metric: str) -> dict[str, Any]:
    """``run`` against ``best`` on the metrics shown: paired on the same test rows, else unpaired."""
    names = paired.shown_metrics(metric, run.metrics)
    difference = run.metrics["accuracy"] - best.metrics["accuracy"]
    if run.scored is None or best.scored is None or run.scored.multi_label != best.scored.multi_label:
        return against_best(None, difference, "none", False, metric)
    same_rows = (run.test_fingerprint is not None and run.test_fingerprint == best.test_fingerprint
                 and len(run.scored) == len(best.scored)
                 and np.array_equal(run.scored.labels, best.scored.labels))
    shared = None if same_rows else shared_rows(run, best)
    bootstrap = not (same_rows and metric == "accuracy" and not run.scored.multi_label)
    if bootstrap and min(len(run.scored), len(best.scored)) < MIN_BOOTSTRAP_ROWS:  # a resample of 1 row: no spread
        return {**against_best(None, difference, "none", False, metric), "too_few_rows": [len(run.scored),
                                                                                          len(best.scored)]}
    if shared is not None:  # nearly the same rows of one file: paired on the rows both scored
        ours, theirs = shared
        found = paired.test_against(subset(run.scored, ours), subset(best.scored, theirs), metric, names, True)
        return {**against_best(found["p"], difference, found["test"], False, metric, found["differences"]),
                "paired_rows": len(ours), "rows": [len(run.scored), len(best.scored)]}
    found = paired.test_against(run.scored, best.scored, metric, names, same_rows)
    p = mcnemar_p(run, best) if found["test"] == "mcnemar" else found["p"]
    return against_best(p, difference, found["test"], False, metric, found["differences"])


SHARED_SHARE = 0.9  # pair two runs on their common test rows when these are at least this share of each run's


def shared_rows(a: RunSummary, b: RunSummary) -> tuple[np.ndarray, np.ndarray] | None:
    """Where two runs scored nearly the same rows of one source (one test file, each run leaving out the few
    whose text it trained or validated on, which its split decides): each one's indices of the rows both
    scored, with the same labels. Runs whose test rows were drawn apart (another seed's split) share too few.
    One source: the same test file (a corrected copy of the training data beside it), or the same data whole
    (test rows carved from it: row numbers of another file would name other texts)."""
    one_test_file = a.test_source is not None and a.test_source == b.test_source
    one_data = a.data_fingerprint is not None and a.data_fingerprint == b.data_fingerprint
    if a.row_ids is None or b.row_ids is None or not (one_test_file or one_data):
        return None
    common, ours, theirs = np.intersect1d(a.row_ids, b.row_ids, assume_unique=True, return_indices=True)
    if len(common) < SHARED_SHARE * max(len(a.row_ids), len(b.row_ids)):
        return None
    if not np.array_equal(a.scored.labels[ours], b.scored.labels[theirs]):
        return None
    return ours, theirs


def subset(scored: paired.Scored, rows: np.ndarray) -> paired.Scored:
    return paired.Scored(scored.labels[rows], scored.predictions[rows], scored.n_classes, scored.positive)


def run_rows(runs: list[RunSummary]) -> list[dict[str, Any]]:
    """One row per run; the best on the decision metric is the reference, each other run is tested against it
    (``versus``: paired on the same test rows, unpaired otherwise; n/a without predictions.csv)."""
    metric = paired.decision_metric(runs[0].metrics)
    best = max(runs, key=lambda r: r.metrics.get(metric, float("-inf")))
    differing = differing_settings(runs)
    rows = []
    for run in runs:
        m = run.metrics
        rows.append({
            "label": run.label,
            "run_dir": str(run.path) if run.path is not None else None,
            "train_seconds": m["train_seconds"],
            "best_epoch": m["best_epoch"],
            "best_validation_loss": run.best_validation_loss,
            "accuracy": m["accuracy"], "accuracy_ci": m.get("accuracy_ci"),
            "f1": m["f1"], "f1_ci": m.get("f1_ci"),
            "f1_macro": m.get("f1_macro"), "f1_macro_ci": m.get("f1_macro_ci"),
            "metric_names": {name: paired.metric_name(name, m) for name in paired.shown_metrics(metric, m)},
            "overfitting": bool(m.get("diagnosis", {}).get("overfitting")),
            "underfitting": underfit(m),
            "vs_best": against_best(None, 0.0, "none", True, metric) if run is best else versus(run, best, metric),
            "settings": {key: shown_setting(run, key) for key in differing},
        })
    return adjust_for_multiplicity(rows)


IGNORED_SETTINGS = {"name"}


def setting(run: RunSummary, key: str) -> Any:
    """A run's value of a task key; an unset size is the rows its default gave, so validation_size unset (500
    rows used) and validation_size = 500 do not differ."""
    value = (run.settings or {}).get(key)
    used = (run.split_rows or {}).get(SPLIT_SIZED_BY.get(key, ""))
    return used if value is None and isinstance(used, int) else value


def shown_setting(run: RunSummary, key: str) -> Any:
    """What the table prints: an unset size says so, with the rows its default gave."""
    value = (run.settings or {}).get(key)
    return f"not set ({setting(run, key):,} rows)" if value is None and setting(run, key) is not None else value


def differing_settings(runs: list[RunSummary]) -> list[str]:
    """The task keys whose values differ between the runs (what the comparison is about)."""
    keys = sorted({key for run in runs for key in (run.settings or {})} - IGNORED_SETTINGS)
    return [key for key in keys if len({json.dumps(setting(run, key), sort_keys=True) for run in runs}) > 1]


def comparison_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What a reader of the table must know: the metric the verdicts used, each run's differences from the best,
    why a row has no test, which rows were compared unpaired, which columns do not compare."""
    best = next(row for row in rows if row["vs_best"]["verdict"] == "best")
    metric = best["vs_best"]["metric"]
    named = best["metric_names"]
    tests = best["vs_best"].get("tests", 0)
    adjusted = (f"; {tests} runs tested against it, so each p is also adjusted for the number of tests (Holm), "
                f"and the verdict is decided on that (the intervals below are not adjusted)" if tests > 1 else "")
    notes = [f"vs best: decided on {named[metric]}, the task's decision metric, against {best['label']} (the best "
             f"on it); McNemar's exact test where that is accuracy, else a bootstrap of the difference (p < "
             f"{SIGNIFICANCE}: real){adjusted}."]
    for row in rows:
        found = row["vs_best"]["differences"]
        if found:
            how = {"mcnemar": "paired", "paired bootstrap": "paired"}.get(row["vs_best"]["test"], "unpaired")
            if "paired_rows" in row["vs_best"]:
                how = (f"paired on the {row['vs_best']['paired_rows']:,} test rows both scored, of "
                       f"{row['vs_best']['rows'][0]:,} and {row['vs_best']['rows'][1]:,}")
            shown = ", ".join(f"{named.get(name, name)} {value['difference']:+.3f} [{value['ci'][0]:+.3f}, "
                              f"{value['ci'][1]:+.3f}]" for name, value in found.items())
            notes.append(f"  {row['label']} minus best ({how}, 95% intervals): {shown}")
    if any(row["vs_best"]["verdict"] == "real" for row in rows):
        notes.append("real: beyond the noise of the rows scored. Each run is one training of one seed, and a fine-tune "
                     "trained again with another seed moves too; tk sweep --seeds 3 compares settings over seeds, "
                     "which covers that as well.")
    if len(rows) > 2 and any(row["vs_best"]["verdict"] in ("real", "noise") for row in rows):
        notes.append(f"{len(rows)} runs: the best is chosen on these same rows, so its lead includes its luck "
                     "on them; Holm's adjustment covers the number of tests, not that choice: read an adjusted p "
                     "near 0.05 as weak.")
    if any("paired_rows" in row["vs_best"] for row in rows):
        notes.append("paired on the rows both scored: the runs scored one test file but each left out the few rows "
                     "whose text it trained or validated on (its split decides which), so the rows both scored are "
                     "compared, paired.")
    unpaired = [row["label"] for row in rows if row["vs_best"]["test"] == "unpaired bootstrap"]
    if unpaired:
        notes.append(f"unpaired: {', '.join(unpaired)} scored other test rows than the best run (another dataset, "
                     "file, split, eval_size or seed), so each run's rows were resampled on their own: a weaker test "
                     "than a paired one; compare runs of the same data where you can.")
    few = [f"{row['label']} ({row['vs_best']['too_few_rows'][0]:,} test rows, the best "
           f"{row['vs_best']['too_few_rows'][1]:,})" for row in rows if "too_few_rows" in row["vs_best"]]
    if few:
        notes.append(f"n/a: {', '.join(few)}: a bootstrap needs at least {MIN_BOOTSTRAP_ROWS} test rows in each run "
                     "to say anything (resampling one row gives no spread at all); score more test rows "
                     "(eval_size, or a larger test split) to compare them.")
    missing = [row["label"] for row in rows if row["vs_best"]["verdict"] == "n/a" and "too_few_rows" not in
               row["vs_best"]]
    if missing:
        notes.append(f"n/a: {', '.join(missing)} has no readable predictions.csv (or another problem type than "
                     "the best run), so no test is possible.")
    weights = {json.dumps(row["settings"].get("class_weights"), sort_keys=True) for row in rows
               if "class_weights" in row["settings"]}
    if len(weights) > 1:
        notes.append("val loss: each run's validation loss is weighted by its own class_weights, so it does not "
                     f"compare across runs with different weights; compare {named[metric]}.")
    if len({json.dumps(row["settings"].get("data")) for row in rows if "data" in row["settings"]}) > 1:
        notes.append("val loss: each run's validation rows come from its own data, with that data's labels (a "
                     f"corrected copy's differ), so it does not compare across these runs; compare {named[metric]}.")
    return notes


def linear_baseline_notes(runs: list[RunSummary], scored_on: str | None = None) -> list[str]:
    """Each run against its own linear baseline (TF-IDF + logistic regression, fitted beside it on its training
    rows and scored on its test rows, or on ``scored_on``, tk compare --data's file), on the decision metric: the
    best of several fine-tunes may still be no better than a model fitted in seconds."""
    found = []
    for run in runs:
        linear = run.metrics.get("linear_baseline")
        versus = (linear or {}).get("versus") or {}
        metric = versus.get("metric")
        difference = (versus.get("differences") or {}).get(metric) if metric else None
        if not isinstance(linear, dict) or not isinstance(difference, dict) or not difference.get("ci"):
            continue
        low, high = difference["ci"]
        word = "beats it" if versus.get("real") and difference["difference"] > 0 else \
            "worse than it" if versus.get("real") else "not shown to beat it"
        found.append(f"  {run.label}: {(linear.get('metric_names') or {}).get(metric, metric)} "
                     f"{difference['difference']:+.3f} [{low:+.3f}, {high:+.3f}] against its baseline's "
                     f"{(linear.get('metrics') or {}).get(metric, float('nan')):.3f}: {word}")
    if not found:
        return []
    rows = f"refitted for this comparison, scored on {scored_on}" if scored_on else "scored on its test rows"
    return [f"Each run against its linear baseline (TF-IDF + logistic regression fitted on the run's training rows, "
            f"{rows}; run minus baseline, paired, 95% interval):", *found]


def data_notes(runs: list[RunSummary]) -> list[str]:
    """Runs of one task name trained on different data (another file, or the same file changed): a run of
    ``tk run --data sms.csv`` from before tasks.toml had a task 'sms' is named like that task's runs."""
    by_task: dict[str, list[RunSummary]] = {}
    for run in runs:
        if run.settings and run.data:
            by_task.setdefault(str(run.settings.get("name")), []).append(run)
    notes = []
    for task, named in by_task.items():
        one_path = len({run.data for run in named}) == 1
        if one_path and len({run.data_fingerprint for run in named} - {None}) <= 1:  # None: not recorded
            continue
        used: dict[str, list[str]] = {}
        for run in named:
            changed = f" (data fingerprint {run.data_fingerprint})" if one_path and run.data_fingerprint else ""
            used.setdefault(f"{run.data}{changed}", []).append(run.label)
        which = "; ".join(f"{', '.join(labels)} on {data}" for data, labels in used.items())
        if one_path:  # the file changed between the runs, under its name
            notes.append(f"task '{task}': these runs share its name but not their data ({which}), so they are not "
                         "runs of one task; compare runs of the same data.")
        else:  # a corrected copy against the original (tk sweep --grid data=A,B), or a file that is not the task's
            notes.append(f"task '{task}': these runs were trained on different data ({which}): a difference "
                         "between them is the data's as much as the settings'.")
    return notes


def format_settings_and_notes(rows: list[dict[str, Any]], notes: list[str]) -> str:
    """Under tk compare's table: each run's values of the keys that differ, then the notes."""
    lines = []
    if any(row["settings"] for row in rows):
        lines.append("Settings that differ:")
        lines += [f"  {row['label']:<34} " + ", ".join(f"{key}={json.dumps(value)}" for key, value in
                                                       row["settings"].items()) for row in rows]
    return "\n".join(lines + notes)


def format_run_rows(rows: list[dict[str, Any]], scored_on: str = "test") -> str:
    """``scored_on``: what the metric columns were scored on ("test", or the file tk compare --data names)."""
    names = {name: shown if all(row["metric_names"].get(name) == shown for row in rows) else
             "F1 of positive" if name == "f1" else name  # runs naming another positive class: each its own
             for name, shown in rows[0]["metric_names"].items()}
    header = f"{'run':<34} {'train s':>7} {'best ep':>7} {'val loss':>8} " + " ".join(
        f"{scored_on + ' ' + names[name] + ' [95% CI]':>27}" for name in names) \
        + f" {'overfit':>7} {'underfit':>8}  vs best"
    lines = [header, "-" * (len(header) + 10)]
    for row in rows:
        lines.append(f"{row['label']:<34} {row['train_seconds']:>7.1f} {row['best_epoch']:>7} "
                     f"{row['best_validation_loss']:>8.4f} " + " ".join(f"{_with_ci(row, name):>27}" for name in names)
                     + f" {'yes' if row['overfitting'] else 'no':>7} {'yes' if row.get('underfitting') else 'no':>8}"
                     f"  {_against(row)}")
    return "\n".join(lines)


def underfit(metrics: dict[str, Any]) -> bool:
    return bool((metrics.get("underfitting") or {}).get("underfitting"))


def still_improving(metrics: dict[str, Any]) -> bool:
    """Learned, and validation loss still lowest at the last epoch with training loss falling steeply."""
    return bool((metrics.get("underfitting") or {}).get("still_improving"))


def shared_test_rows(runs: list[RunSummary]) -> dict[str, Any] | None:
    """The test rows every run of a setting scored, where they are one set: its fingerprint and size."""
    prints = {run.test_fingerprint for run in runs}
    if len(prints) != 1 or None in prints or any(run.scored is None for run in runs):
        return None
    return {"fingerprint": prints.pop(), "count": len(runs[0].scored)}


def group_rows(groups: dict[str, list[RunSummary]]) -> list[dict[str, Any]]:
    """Mean ± sd over seeds per setting; Welch's t-test of the decision metric against the best mean."""
    metric = paired.decision_metric(next(iter(groups.values()))[0].metrics)
    accuracy = {name: [r.metrics["accuracy"] for r in runs] for name, runs in groups.items()}
    decided = {name: [r.metrics.get(metric, 0.0) for r in runs] for name, runs in groups.items()}
    best = max(decided, key=lambda name: statistics.mean(decided[name]))
    rows = []
    for name, runs in groups.items():
        p = None if name == best else welch_p(decided[name], decided[best])
        difference = statistics.mean(accuracy[name]) - statistics.mean(accuracy[best])
        rows.append({
            "label": name,
            "run_dirs": [str(r.path) for r in runs if r.path is not None],
            "seeds": len(runs),
            "train_seconds": statistics.mean(r.metrics["train_seconds"] for r in runs),
            "best_validation_loss": _spread([r.best_validation_loss for r in runs]),
            "accuracy": _spread(accuracy[name]),
            "f1": _spread([r.metrics["f1"] for r in runs]),
            **({metric: _spread(decided[name])} if metric not in ("accuracy", "f1") else {}),
            "overfitting_runs": sum(bool(r.metrics.get("diagnosis", {}).get("overfitting")) for r in runs),
            "underfitting_runs": sum(underfit(r.metrics) for r in runs),
            "still_improving_runs": sum(still_improving(r.metrics) for r in runs),
            "test_rows": shared_test_rows(runs),
            "vs_best": against_best(p, difference, "welch", name == best, metric),
        })
    return adjust_for_multiplicity(rows)


def group_test_rows_note(groups: dict[str, list[RunSummary]]) -> list[str]:
    """Settings over seeds scored on other test rows than each other (another data file: --grid data=A,B): a
    difference between them mixes the models with the rows, and rows with fewer wrong labels score any model
    higher. Each seed's own split is no such case: every setting has it; nor is one test file scored by every
    run, less the few rows each left out for sharing a text with what it trained on."""
    test_files = {run.test_source for runs in groups.values() for run in runs}
    if len(test_files) == 1 and None not in test_files:
        return []
    rows_of = {name: sorted(str(run.test_fingerprint) for run in runs) for name, runs in groups.items()}
    if len({json.dumps(fingerprints) for fingerprints in rows_of.values()}) <= 1:
        return []
    return [f"NOT THE SAME TEST ROWS: {', '.join(rows_of)} were scored on different test rows, so a difference between "
            "them mixes the models with the rows (rows with fewer wrong labels score any model higher). Score every "
            "setting on one test split: the same test file beside each data file, or --set test_data=FILE."]


def format_group_rows(rows: list[dict[str, Any]]) -> str:
    """The table over seeds; its third score column is the one the verdict is decided on (macro F1 where
    that decides, not a binary task's F1 of one class beside it)."""
    metric = rows[0]["vs_best"]["metric"]
    third = metric if metric in rows[0] and metric != "accuracy" else "f1"
    header = (f"{'setting':<34} {'seeds':>5} {'train s':>9} {'val loss':>15} {'test accuracy':>15} "
              f"{'test ' + paired.METRIC_NAMES.get(third, third):>15} {'overfit':>7} {'underfit':>8}  vs best "
              f"(Welch's t-test on test {metric})")
    lines = [header, "-" * (len(header) + 10)]
    for row in rows:
        overfit, underfit_runs = (f"{row[key]}/{row['seeds']}" for key in ("overfitting_runs", "underfitting_runs"))
        lines.append(f"{row['label']:<34} {row['seeds']:>5} {row['train_seconds']:>9.1f} "
                     f"{_mean_sd(row['best_validation_loss']):>15} {_mean_sd(row['accuracy']):>15} "
                     f"{_mean_sd(row[third]):>15} {overfit:>7} {underfit_runs:>8}  {_against(row)}")
    shared = {json.dumps(row.get("test_rows")) for row in rows}
    tested = (f"test scores on the same {rows[0]['test_rows']['count']:,} test rows for every run"
              if len(shared) == 1 and rows[0].get("test_rows") else "test scores on each run's test rows")
    lines.append(f"(mean ± sd over each setting's seeds; {tested}; val loss: the kept epoch's. With few seeds, "
                 "'noise' means a difference not shown, not one shown absent.)")
    improving = [f"{row['label']} {row['still_improving_runs']}/{row['seeds']}" for row in rows
                 if row.get("still_improving_runs")]
    if improving:
        lines.append(f"Still improving at their last epoch (learning, so not counted as underfit; more epochs may "
                     f"help): {', '.join(improving)}.")
    return "\n".join(lines)


def _against(row: dict[str, Any]) -> str:
    found = row["vs_best"]
    if found["verdict"] == "best":
        return "best"
    return verdict(found["p"], found.get("p_holm") if found.get("tests", 0) > 1 else None)


def _with_ci(row: dict[str, Any], name: str) -> str:
    ci = row.get(f"{name}_ci")
    return f"{row[name]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{row[name]:.3f}"


def _spread(values: list[float]) -> dict[str, float | None]:
    """sd None for one value: a spread over one seed is not zero, it is not measured."""
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else None}


def _mean_sd(spread: dict[str, float | None]) -> str:
    sd = spread["sd"]
    return f"{spread['mean']:.4f} ± " + (f"{sd:.4f}" if sd is not None else "n/a")
