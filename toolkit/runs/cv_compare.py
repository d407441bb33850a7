"""tk compare of tk cv folders: fold by fold when their folds are the same, with a corrected t test.

Paired (the same rows in the same folds, folds.json equal): the per-fold differences d_i, their mean and a
95% interval from the corrected resampled t test (Nadeau & Bengio, 2003): var = (1/K + 1/(K-1)) s_d^2, K - 1
degrees of freedom; the plain paired t test treats overlapping training sets as independent and is too
liberal. The pooled out-of-fold predictions are then on the same rows too: McNemar's exact test on them.
Not paired: Welch's t test on the two sets of fold scores, and a note that the comparison is weaker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import TkError
from toolkit.evaluation.intervals import mcnemar_exact
from toolkit.runs.cv_summary import cell_value, corrected_standard_error, read_oof
from toolkit.runs.folders import run_status
from toolkit.saving import read_json

METRICS = ("accuracy", "f1_macro", "f1")


def is_cv(path: Path) -> bool:
    config = path / "config.json"
    return config.is_file() and isinstance(read_json(config), dict) and read_json(config).get("kind") == "cv"


def cv_summary(path: Path) -> dict[str, Any]:
    if run_status(path) != "complete" or not (path / "cv.json").is_file():
        raise TkError(f"{path} is a tk cv folder that did not finish (status: {run_status(path)}). Finish it: "
                      f"tk cv --resume {path}")
    return read_json(path / "cv.json")


def correct_out_of_fold(path: Path) -> dict[int, bool]:
    """Row number -> whether its out-of-fold prediction was right (single-label)."""
    rows, _ = read_oof(path)
    return {int(r["row"]): cell_value(r["predicted"]) == cell_value(r["label"]) for r in rows}


def compare_pair(a: Path, b: Path) -> dict[str, Any]:
    from scipy import stats

    first, second = cv_summary(a), cv_summary(b)
    paired = read_json(a / "folds.json") == read_json(b / "folds.json")
    result: dict[str, Any] = {"run": str(b), "against": str(a), "paired": paired, "metrics": {}}
    for name in METRICS:
        x = [f.get(name) for f in first["per_fold"]]
        y = [f.get(name) for f in second["per_fold"]]
        if not all(isinstance(v, (int, float)) for v in x + y):
            continue
        x, y = np.asarray(x, float), np.asarray(y, float)
        if paired:
            d = y - x
            k = len(d)
            scale = corrected_standard_error(d)
            t = float(d.mean() / scale) if scale > 0 else (0.0 if d.mean() == 0 else float("inf") * np.sign(d.mean()))
            p = float(2 * stats.t.sf(abs(t), k - 1)) if scale > 0 else (1.0 if d.mean() == 0 else 0.0)
            half = float(stats.t.ppf(0.975, k - 1) * scale)
            result["metrics"][name] = {"difference": round(float(d.mean()), 4),
                                       "ci": [round(float(d.mean()) - half, 4), round(float(d.mean()) + half, 4)],
                                       "p": round(p, 4), "test": "corrected resampled t (Nadeau & Bengio)"}
        else:
            found = stats.ttest_ind(y, x, equal_var=False)
            result["metrics"][name] = {"difference": round(float(y.mean() - x.mean()), 4),
                                       "p": round(float(found.pvalue), 4), "test": "Welch t on fold scores"}
    if paired and first.get("problem") != "multi-label":
        right_a, right_b = correct_out_of_fold(a), correct_out_of_fold(b)
        common = sorted(set(right_a) & set(right_b))
        result["mcnemar_p"] = round(mcnemar_exact(np.array([right_a[r] for r in common]),
                                                  np.array([right_b[r] for r in common])), 4)
        result["mcnemar_rows"] = len(common)
    if not paired:
        result["note"] = ("the folds differ (other data, seed or --folds): fold scores are compared unpaired, "
                          "which needs larger differences to show")
    return result


def compare_cv(paths: list[Path]) -> list[dict[str, Any]]:
    """Every folder against the first."""
    if len(paths) < 2:
        raise TkError("tk compare needs two or more folders.")
    not_cv = [str(p) for p in paths if not is_cv(p)]
    if not_cv:
        raise TkError(f"{', '.join(not_cv)}: not tk cv folders; compare tk cv folders with each other and tk run "
                      "folders with each other.")
    return [compare_pair(paths[0], other) for other in paths[1:]]


def format_cv_comparison(found: list[dict[str, Any]]) -> str:
    lines = []
    for pair in found:
        lines.append(f"{pair['run']} against {pair['against']} ({'paired by fold' if pair['paired'] else 'unpaired'}):")
        for name, m in pair["metrics"].items():
            ci = f" [{m['ci'][0]:+.4f}, {m['ci'][1]:+.4f}]" if m.get("ci") else ""
            lines.append(f"  {name:<10} {m['difference']:+.4f}{ci}  p = {m['p']:.4f} ({m['test']})")
        if "mcnemar_p" in pair:
            lines.append(f"  out-of-fold predictions, McNemar's exact test over {pair['mcnemar_rows']:,} rows: "
                         f"p = {pair['mcnemar_p']:.4f}")
        if pair.get("note"):
            lines.append(f"  Note: {pair['note']}.")
    return "\n".join(lines)
