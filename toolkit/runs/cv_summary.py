"""tk cv's results: oof.csv, per-fold metrics and their mean with a 95% interval, pooled out-of-fold metrics,
cv.json and report.html."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import TkError
from toolkit.evaluation import paired
from toolkit.evaluation.report import headline_rows
from toolkit.evaluation.scoring import score
from toolkit.runs.artifacts import FORMULA_START
from toolkit.runs.diagnoses import warnings_across
from toolkit.runs.folders import run_status
from toolkit.runs.report_html import e, page, section, table, td
from toolkit.runs.report_trust import audit_section
from toolkit.saving import read_json, write_json, write_text

FOLD_METRICS = ("accuracy", "f1", "f1_macro", "precision", "recall")
FOLD_METRICS_MULTILABEL = ("accuracy", "f1", "f1_macro", "hamming_loss")


def fold_predictions(fold_dir: Path) -> tuple[list[dict[str, str]], list[str]]:
    path = fold_dir / "predictions.csv"
    if not path.is_file():
        raise TkError(f"{path} is missing: fold {fold_dir.name} did not finish. Resume: tk cv --resume "
                      f"{fold_dir.parent}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader), list(reader.fieldnames or [])


def corrected_standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of K fold scores (or paired fold differences) with Nadeau & Bengio's
    correction for the folds' overlapping training sets: sqrt((1/K + 1/(K-1)) s²), not sqrt(s² / K)."""
    k = len(values)
    return float(np.sqrt((1 / k + 1 / (k - 1)) * np.var(values, ddof=1)))


def across_folds(values: list[float]) -> dict[str, Any]:
    """Mean, standard deviation and a 95% corrected t interval over the folds: the folds' training sets
    overlap, so their scores are not independent and sd / sqrt(K) understates the mean's error (Bengio &
    Grandvalet, 2004). As tk compare of cv folders does, the variance is scaled by 1/K + 1/(K-1) instead of
    1/K (Nadeau & Bengio, 2003; a heuristic, which no unbiased estimator exists to replace). Clipped to
    [0, 1], where every fold metric lies."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    k = len(data)
    mean = float(data.mean())
    sd = float(data.std(ddof=1)) if k > 1 else 0.0
    half = float(stats.t.ppf(0.975, k - 1) * corrected_standard_error(data)) if k > 1 else float("nan")
    if k < 2 or sd == 0:  # folds that agree exactly (precision 1.0 in each of 3) measure no spread
        return {"mean": round(mean, 4), "sd": round(sd, 4), "ci": None}
    low, high = max(mean - half, 0.0), min(mean + half, 1.0)  # every fold metric lies in [0, 1]
    return {"mean": round(mean, 4), "sd": round(sd, 4), "ci": [round(low, 4), round(high, 4)]}


def mean_in_words(found: dict[str, Any]) -> str:
    """'0.9500 [0.9100, 0.9900]', or where the folds agreed exactly '1.0000 (every fold; no spread measured)'."""
    ci = found.get("ci")
    return f"{found['mean']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{found['mean']:.4f} (every fold; no spread)"


def pooled_baselines(rows: list[dict[str, str]], labels: np.ndarray, probabilities: np.ndarray,
                     label_names: tuple[str, ...], select_metric: str | None, positive: int | None) -> dict[str, Any]:
    """Single-label: the pooled out-of-fold answers against always answering the training rows' most frequent
    class, and against the folds' linear baselines (their out-of-fold probabilities, when every row has
    them), each paired over the rows as tk run compares: a mean across folds says nothing of what a
    5-second model would have scored."""
    n = len(label_names)
    metric = paired.choose_metric(select_metric, False, np.bincount(labels, minlength=n))
    shown = tuple(dict.fromkeys(("accuracy", "f1_macro", metric)))
    fine_tune = paired.Scored(labels, probabilities.argmax(axis=1), n, positive)
    majority = int(np.bincount(labels, minlength=n).argmax())
    found = {"metric": metric, "majority": {
        "label": label_names[majority],
        **paired.test_against(fine_tune, paired.Scored(labels, np.full(len(labels), majority), n, positive), metric,
                              shown)}}
    linear = linear_probabilities(rows, label_names)
    if linear is not None:
        found["linear"] = paired.test_against(fine_tune, paired.Scored(labels, linear.argmax(axis=1), n, positive),
                                              metric, shown)
    return found


def linear_probabilities(rows: list[dict[str, str]], label_names: tuple[str, ...]) -> np.ndarray | None:
    """The linear baseline's out-of-sample probabilities (``linear_p_`` columns), rows summing to 1; None unless
    every row has them (a fold whose baseline could not be fitted leaves its rows' columns empty)."""
    columns = [f"linear_p_{name}" for name in label_names]
    if not rows or any(r.get(c) in (None, "") for r in rows for c in columns):
        return None
    linear = np.array([[float(r[c]) for c in columns] for r in rows])
    return linear / linear.sum(axis=1, keepdims=True)


def classes_in_one_fold(labels: np.ndarray, folds: np.ndarray) -> dict[int, int]:
    """Class id -> its fold, for each class whose every row sits in one fold: that fold trains without it."""
    return {int(c): int(folds[labels == c][0]) for c in np.unique(labels) if len(np.unique(folds[labels == c])) == 1}


def baseline_sentences(baselines: dict[str, Any] | None) -> list[str]:
    """``pooled_baselines`` in words: the decision metric's difference and interval against each baseline."""
    if not baselines:
        return []
    metric = baselines["metric"]
    named = {"f1_macro": "macro F1", "f1": "F1"}.get(metric, metric)
    lines = [f"Pooled, paired over the rows, decided on {named}:"]
    for key, whom in (("majority", f"always '{baselines['majority']['label']}'"),
                      ("linear", "the folds' linear baselines (TF-IDF + logistic regression)")):
        found = baselines.get(key)
        if found:
            change = found["differences"][metric]
            ci = change["ci"]
            said = ("better" if change["difference"] > 0 else "worse") if found["real"] else "not distinguishable"
            lines.append(f"  fine-tune minus {whom}: {change['difference']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}], "
                         f"{said}")
    return lines


def untrained_classes(labels: np.ndarray, assigned: np.ndarray, label_names: tuple[str, ...]) -> str | None:
    """The warning for classes whose every row sits in one fold (single-label): that fold trains without them,
    so its model cannot give those rows their label. A class with fewer rows than folds often ends so."""
    found = []
    for class_id, fold in classes_in_one_fold(labels, assigned).items():
        rows = int((labels == class_id).sum())
        found.append(f"'{label_names[class_id]}' ({rows} {'row' if rows == 1 else 'rows'}, fold {fold + 1})")
    if not found:
        return None
    shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    return (f"{len(found)} {'class has' if len(found) == 1 else 'classes have'} every row in one fold, which then "
            f"trains without {'it' if len(found) == 1 else 'them'}: {shown}. Those rows' out-of-fold answers are "
            "wrong by construction (tk audit sets them apart rather than ranking them as suspects); gather more "
            "rows of such a class, merge it into a related one, or use fewer folds.")


def classes_some_folds_lack(labels: np.ndarray, assigned: np.ndarray, label_names: tuple[str, ...]) -> str | None:
    """The warning for classes some folds score no row of (a class with fewer rows than folds; single-label), each
    in more than one fold (``untrained_classes`` says the rest): such a fold scores the class's F1, precision and
    recall 0 by convention, which pulls the per-fold means and widens their intervals."""
    folds, in_one = int(assigned.max()) + 1, classes_in_one_fold(labels, assigned)
    found = []
    for class_id in np.unique(labels):
        lacking = folds - len(np.unique(assigned[labels == class_id]))
        if lacking and int(class_id) not in in_one:
            rows = int((labels == class_id).sum())
            found.append((rows, f"'{label_names[class_id]}' ({rows} {'row' if rows == 1 else 'rows'}; "
                                f"{lacking} of {folds} folds score none)"))
    if not found:
        return None
    shown = ", ".join(text for _, text in found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    fewest = min(rows for rows, _ in found)
    return (f"{len(found)} {'class is' if len(found) == 1 else 'classes are'} missing from some folds: {shown}. A fold "
            "with no row of a class scores its F1, precision and recall 0 by convention, so the per-fold means "
            "understate them and their intervals widen; the pooled out-of-fold figures count each row once. "
            + (f"Use --folds {fewest} or fewer, or gather more rows of such a class." if fewest >= 2 else
               "Gather more rows of such a class, or merge it into a related one."))


def fold_class_warnings(labels: np.ndarray, assigned: np.ndarray, label_names: tuple[str, ...]) -> list[str]:
    """What the folds do to the classes (single-label): one a fold trains without, one some folds score none of."""
    return [warning for warning in (untrained_classes(labels, assigned, label_names),
                                     classes_some_folds_lack(labels, assigned, label_names)) if warning]


def oof_arrays(rows: list[dict[str, str]], label_names: tuple[str, ...], multi_label: bool):
    """(labels, probabilities) from oof.csv rows: label ids (multi-label: multi-hot rows)."""
    probabilities = np.array([[float(r[f"p_{name}"]) for name in label_names] for r in rows], dtype=np.float32)
    if multi_label:
        labels = np.array([[float(name in json.loads(cell_value(r["label"]))) for name in label_names]
                           for r in rows])
    else:
        index = {name: i for i, name in enumerate(label_names)}
        labels = np.array([index[r["label"] if r["label"] in index else cell_value(r["label"])] for r in rows])
    return labels, probabilities


def cell_value(cell: str) -> str:
    """A CSV cell as tk wrote it, without the ' that keeps spreadsheets from running it (spreadsheet_safe)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def summarise(pm, cv_dir: Path, label_names: tuple[str, ...], assigned: np.ndarray, rows: np.ndarray, task,
              positive: int | None, seconds: float) -> dict[str, Any]:
    folds = int(assigned.max()) + 1
    per_fold, gathered, header = [], [], []
    names = FOLD_METRICS_MULTILABEL if task.multi_label else FOLD_METRICS
    for fold in range(1, folds + 1):
        fold_dir = cv_dir / f"fold-{fold}"
        found, columns = fold_predictions(fold_dir)
        # every fold's columns: one whose linear baseline could not be fitted has no linear_p_ columns
        header += [c for c in columns if c not in header]
        gathered.append((fold, found))
        metrics = read_json(fold_dir / "metrics.json")
        per_fold.append({"fold": fold, "rows": int((assigned == fold - 1).sum()), "scored": len(found),
                         "best_epoch": metrics.get("best_epoch"), "train_seconds": metrics.get("train_seconds"),
                         **{name: metrics.get(name) for name in names if isinstance(metrics.get(name), (int, float))},
                         "temperature": (metrics.get("calibration") or {}).get("temperature")})
    write_oof(cv_dir / "oof.csv", gathered, header)
    oof, _ = read_oof(cv_dir)
    labels, probabilities = oof_arrays(oof, label_names, task.multi_label)
    oof_folds = np.array([int(r["fold"]) - 1 for r in oof])
    pooled = score(pm, labels, probabilities, label_names, confidence=True, positive_label=positive)
    summary = {
        "task": task.name, "folds": folds, "rows": len(rows), "scored": len(oof), "problem": task.problem,
        "labels": list(label_names),
        "grouping": "identical texts (normalised) in one fold; stratified by label"
                    + (" (multi-label: each row's rarest label)" if task.multi_label else ""),
        "per_fold": per_fold,
        "mean": {name: across_folds([f[name] for f in per_fold]) for name in names
                 if all(isinstance(f.get(name), (int, float)) for f in per_fold)},
        "pooled": {k: v for k, v in pooled.items() if k not in ("per_class",)},
        **({"pooled_thresholds": "0.5 for every label (each fold tuned its own)"} if task.multi_label else
           {"baselines": pooled_baselines(oof, labels, probabilities, label_names, task.select_metric, positive)}),
        "warnings": cv_warnings(cv_dir, folds, [] if task.multi_label else
                                fold_class_warnings(labels, oof_folds, label_names)),
        "seconds": round(seconds, 1),
    }
    write_json(cv_dir / "cv.json", summary)
    return summary


def cv_warnings(cv_dir: Path, folds: int, about_classes: list[str]) -> list[str]:
    """What the folds do with the classes (one trained without, some scoring none), then what the folds' own
    reports warn of (a model that answers one class, a linear baseline that beats it), once per kind: the mean
    across folds must not hide them."""
    found = warnings_across([cv_dir / f"fold-{fold}" / "metrics.json" for fold in range(1, folds + 1)])
    return about_classes + [
        f"{count} of {folds} folds{f' (in the words of fold {first + 1})' if count > 1 else ''}: {text}"
        for text, count, first in found]


def metric_labels(summary: dict[str, Any]) -> dict[str, str]:
    """Each cv metric's printed name, as tk run prints it: "f1 (positive: spam)", "f1 (macro)"."""
    named = {key: name for name, key in headline_rows(summary["pooled"])}
    return {key: named.get(key, key) for key in summary["mean"]}


def write_cv_report(cv_dir: Path, summary: dict[str, Any]) -> Path:
    labels = metric_labels(summary)
    names = list(summary["mean"])
    rows = [[td(f"fold {f['fold']}"), td(int(f["scored"])), *[td(f.get(n)) if isinstance(f.get(n), float)
                                                                else td("—") for n in names]]
            for f in summary["per_fold"]]
    rows.append([td("mean [95% corrected t interval]"), td(int(summary["scored"])),
                 *[td(mean_in_words(m)) for m in summary["mean"].values()]])
    pooled = summary["pooled"]
    pooled_rows = [[td(labels[n]), td(float(pooled[n])), td(f"[{pooled[n + '_ci'][0]:.4f}, {pooled[n + '_ci'][1]:.4f}]"
                                                    if pooled.get(n + "_ci") else "—")]
                   for n in names if isinstance(pooled.get(n), (int, float))]
    links = "".join(f'<li><a href="fold-{f["fold"]}/report.html">fold {f["fold"]}</a></li>' for f in summary["per_fold"])
    warned = "".join(f'<p class="warn" dir="auto">{e(w)}</p>' for w in summary.get("warnings") or [])
    body = (section("cv", f"Cross-validation: {summary['folds']} folds of {summary['rows']:,} rows",
                    warned + table(["fold", "texts scored", *labels.values()], rows)
                    + '<p class="muted">Each fold trained as tk run trains (its own validation split) and scored '
                      "on its held-out rows. The folds' training sets overlap, so their scores are not independent: "
                      "the interval across folds scales their variance by 1/K + 1/(K-1), not 1/K (Nadeau &amp; "
                      "Bengio's correction, a heuristic).</p>")
            + section("pooled", "Out-of-fold metrics, pooled",
                      table(["metric", "value", "95% interval"], pooled_rows)
                      + "".join(f'<p dir="auto">{e(line)}</p>'
                                for line in baseline_sentences(summary.get("baselines")))
                      + '<p class="muted">Every row scored once, by the fold that did not train on it (oof.csv); '
                        "intervals as tk run's (docs/metrics.md).</p>")
            + section("folds", "Each fold's own report", f"<ul>{links}</ul>"))
    if (cv_dir / "audit.json").is_file():  # tk audit rewrites the page with its section

        body += audit_section(read_json(cv_dir / "audit.json"))
    path = cv_dir / "report.html"
    write_text(path, page(f"tk cv: {summary['task']}", f"<h1>tk cv: {summary['task']}</h1>{body}"))
    return path


def read_oof(cv_dir: Path) -> tuple[list[dict[str, str]], list[str]]:
    """oof.csv's rows (as strings) and its header."""
    path = cv_dir / "oof.csv"
    if not path.is_file():
        raise TkError(f"{cv_dir} has no oof.csv (status: {run_status(cv_dir)}). Finish it: tk cv --resume {cv_dir}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader), list(reader.fieldnames or [])


def write_oof(path: Path, fold_rows: list[tuple[int, list[dict[str, str]]]], header: list[str]) -> None:
    """Every fold's predictions.csv rows, with the fold, in the order of the rows in the user's file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = ["row", "text", "label", "fold", *[c for c in header if c not in ("row", "text", "label")]]
    writer.writerow(columns)
    merged = [(int(row["row"]), fold, row) for fold, rows in fold_rows for row in rows]
    for number, fold, row in sorted(merged, key=lambda item: item[0]):
        writer.writerow([number, row["text"], row["label"], fold, *[row.get(c, "") for c in columns[4:]]])
    write_text(path, buffer.getvalue())
