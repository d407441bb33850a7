"""Plain-text tables for metrics; shared by the CLI and the benchmark."""

from __future__ import annotations

from typing import Any

MAX_LABEL = 40  # the per-class table's first column grows to the longest label, up to this
SELECTION = {"loss": "lowest {} loss", "accuracy": "highest {} accuracy", "f1": "highest {} f1",
             "f1_macro": "highest {} f1_macro"}


def format_metrics(metrics: dict[str, Any]) -> str:
    lines = [_title(metrics)]
    lines += [f"  WARNING: {warning}" for warning in metrics.get("warnings", [])]
    rows = _headline_rows(metrics)
    width = max((len(name) for name, _ in rows), default=0)
    for name, key in rows:
        lines.append(f"  {name:<{width}}  {metrics[key]:.4f}{interval_text(metrics, key)}")
    baseline = metrics.get("baseline")
    if baseline and isinstance(baseline.get("labels"), list):  # multi-label
        shown = ", ".join(cut_text(name) for name in baseline["labels"]) or "no label"
        lines.append(f"  baseline: always {shown} (each label's majority value in the {baseline['source']}): "
                     f"subset accuracy {baseline['accuracy']:.4f}, hamming loss {baseline['hamming_loss']:.4f}, "
                     f"f1 (micro) {baseline['f1']:.4f}; model vs baseline: McNemar exact p = {_p(baseline['mcnemar_p'])}")
    elif baseline:
        always = cut_text(baseline["label"])
        tied = baseline.get("tied_with") or []
        tie = (f"; tied with {', '.join(repr(cut_text(name)) for name in tied[:3])}{', ...' if len(tied) > 3 else ''}"
               ", the first in class order taken" if tied else "")
        lines.append(f"  baseline: always '{always}' (most frequent class of the {baseline['source']}{tie}): "
                     f"accuracy {baseline['accuracy']:.4f}, f1 (macro) {baseline['f1_macro']:.4f}; "
                     f"model vs baseline: McNemar exact p = {_p(baseline['mcnemar_p'])}")
    lines += linear_baseline_lines(metrics)
    lines += _per_class(metrics)
    if metrics.get("classes_absent"):
        absent = ", ".join(cut_text(name) for name in metrics["classes_absent"])
        lines.append(f"  not in this split, so left out of the macro averages: {absent}")
    undefined = undefined_precision(metrics)
    if undefined:
        lines.append(f"  {undefined}")
    if "best_epoch" in metrics:
        how = SELECTION.get(metrics.get("select_metric", ""), "")
        reason = f" ({how.format(metrics.get('select_on', 'validation'))})" if how else ""
        lines.append(f"  kept epoch {metrics['best_epoch']} of {metrics['epochs_run']}{reason}"
                     if "epochs_run" in metrics else f"  kept epoch {metrics['best_epoch']}")
    return "\n".join(lines)


def linear_baseline_lines(metrics: dict[str, Any]) -> list[str]:
    """The linear baseline's scores with intervals, the fine-tune's differences from it, and the verdict (unless a
    warning above already gives it)."""
    linear = metrics.get("linear_baseline")
    if not isinstance(linear, dict):
        return []
    found, versus = linear.get("metrics") or {}, linear.get("versus") or {}
    names = dict(_headline_rows({**metrics, **found}))
    shown = ", ".join(f"{name} {found[key]:.4f}{interval_text(found, key).replace('  ', ' ')}" for name, key in
                      names.items() if key in ("accuracy", "f1", "f1_macro", "hamming_loss")
                      and isinstance(found.get(key), (int, float)))
    lines = [f"  linear baseline (TF-IDF + logistic regression, C = {linear.get('C'):g} chosen on validation "
             f"{linear.get('selected_on_name') or linear.get('selected_on')}): {shown}"]
    differences = versus.get("differences") or {}
    if differences:
        lines.append("  fine-tune minus linear baseline (paired, 95% intervals): " + ", ".join(
            f"{(linear.get('metric_names') or {}).get(key, key)} {value['difference']:+.4f} "
            f"[{value['ci'][0]:+.3f}, {value['ci'][1]:+.3f}]"
            for key, value in differences.items()))
    if linear.get("verdict") and linear["verdict"] not in (metrics.get("warnings") or []):
        lines.append(f"  {linear['verdict']}")
    return lines


def _title(metrics: dict[str, Any]) -> str:
    split, n = metrics.get("split"), metrics.get("n")
    if metrics.get("data_given") and metrics.get("data_source"):
        title = f"Metrics on {metrics['data_source']}"
    else:
        title = f"{split.capitalize()} metrics" if split else "Metrics"
    details = [metrics.get("split_description") or (f"{split} split" if split else None), f"{int(n):,} examples" if n is not None else None, interval_methods(metrics)]
    details = [part for part in details if part]
    return f"{title} ({', '.join(details)}):" if details else f"{title}:"


def _unpredicted(metrics: dict[str, Any]) -> list[str]:
    """The classes (labels) of the split that no row was predicted as: their precision has no denominator."""
    per_class = metrics.get("per_class") or {}
    absent = set(metrics.get("classes_absent") or [])  # no row at all: said apart, left out of the averages
    matrix = metrics.get("confusion_matrix")
    names = [name for name in per_class if isinstance(per_class[name], dict) and name not in AVERAGES]
    if matrix and len(matrix) == len(names):  # single-label: a column of zeros
        predicted = [sum(row[j] for row in matrix) for j in range(len(names))]
    else:  # multi-label: each label's own count
        predicted = [per_class[name].get("predicted") for name in names]
    return [name for name, count in zip(names, predicted) if count == 0 and name not in absent]


def undefined_precision(metrics: dict[str, Any]) -> str | None:
    """One sentence, the same in the console report, report.html and the model card: precision is undefined for a
    class no row was predicted as, and tk shows it as 0 (as scikit-learn does with zero_division=0)."""
    names = _unpredicted(metrics)
    if not names:
        return None
    listed = ", ".join(f"'{cut_text(name)}'" for name in names)
    return (f"Precision is undefined for {listed} (no row was predicted as {'it' if len(names) == 1 else 'any of them'}"
            "): shown as 0, as scikit-learn's zero_division=0 does.")


def thousands(value: Any) -> str:
    """A count as tk prints counts (12,500); a value that is not a count (not recorded: None) as '?'."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def interval_methods(metrics: dict[str, Any]) -> str | None:
    """"95% intervals: Wilson for proportions, BCa bootstrap for F1": how the metrics' intervals were made."""
    methods = {value for key, value in metrics.items() if key.endswith("_ci_method")}
    if not methods and not any(key.endswith("_ci") for key in metrics):
        return None
    parts = ["Wilson for proportions"] if "wilson" in methods else []
    bootstrap = sorted(m for m in methods if m != "wilson")
    if bootstrap:
        kind = {("bca",): "BCa", ("percentile",): "percentile"}.get(tuple(bootstrap), "BCa or percentile")
        what = {"binary": "F1", "micro": "F1, the averages and Hamming loss"}.get(metrics.get("average"),
                                                                                 "the averages")
        parts.append(f"{kind} bootstrap for {what}")
    return "95% intervals: " + ", ".join(parts) if parts else "95% intervals"


def headline_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(printed name, key) per headline number, each average named (macro, micro, weighted) and binary scores
    naming their positive class: the console, report.html and the model card print these names."""
    if metrics.get("problem") == "multi-label":
        names = [("f1 (micro)", "f1"), ("precision (micro)", "precision"), ("recall (micro)", "recall"),
                 ("f1 (macro)", "f1_macro"), ("subset accuracy", "accuracy"), ("hamming loss", "hamming_loss")]
    elif metrics.get("positive_label") is not None:
        which = f" (positive: {cut_text(str(metrics['positive_label']), 20)})"
        names = [("accuracy", "accuracy"), ("f1" + which, "f1"), ("precision" + which, "precision"),
                 ("recall" + which, "recall"), ("f1 (macro)", "f1_macro")]
    elif metrics.get("average") == "macro":
        names = [("accuracy", "accuracy"), ("f1 (macro)", "f1"), ("precision (macro)", "precision"),
                 ("recall (macro)", "recall"), ("f1 (weighted)", "f1_weighted")]
    else:
        names = [(key, key) for key in ("accuracy", "f1", "precision", "recall", "f1_macro", "f1_weighted")]
    return [(name, key) for name, key in names if isinstance(metrics.get(key), (int, float))]


_headline_rows = headline_rows


def interval_text(metrics: dict[str, Any], key: str) -> str:
    """'  [0.812, 0.866]', or '  (no interval: why)' where metrics.json gives a ``_ci_note``; '' for neither."""
    ci = metrics.get(f"{key}_ci")
    if ci:
        return f"  [{ci[0]:.3f}, {ci[1]:.3f}]"
    note = metrics.get(f"{key}_ci_note")
    return f"  (no interval: {note})" if note else ""


def _per_class(metrics: dict[str, Any]) -> list[str]:
    per_class = metrics.get("per_class", {})
    names = [name for name in per_class if isinstance(per_class[name], dict) and "support" in per_class[name]
             and name not in AVERAGES]
    if not names:
        return []
    width = max(12, *(len(cut_text(name)) for name in names))
    thresholds = all("threshold" in per_class[name] for name in names)  # multi-label: each label's own
    lines = [f"  {'label' if thresholds else 'class':<{width}} {'precision':>9} {'recall':>7} {'f1':>6} "
             f"{'support':>7}" + (f" {'threshold':>9}" if thresholds else "")]
    for name in names:
        row = per_class[name]
        shown = cut_text(name)
        # no row of the class here: its recall (and so F1) has nothing to measure, not a score of 0
        recall, f1 = (f"{row['recall']:>7.3f}", f"{row['f1-score']:>6.3f}") if row["support"] else (f"{'—':>7}",
                                                                                                   f"{'—':>6}")
        lines.append(f"  {shown:<{width}} {row['precision']:>9.3f} {recall} {f1} "
                     f"{int(row['support']):>7,}" + (f" {row['threshold']:>9.3f}" if thresholds else ""))
    return lines


AVERAGES = ("macro avg", "weighted avg", "micro avg", "samples avg")


def cut_text(label: str, limit: int = MAX_LABEL) -> str:
    """``label`` in at most ``limit`` characters, with an ellipsis where it was cut."""
    return label if len(label) <= limit else label[:limit - 1] + "…"


def _p(value: float) -> str:
    if value == 0:  # below the smallest float: "0.0e+00" would claim certainty
        return "< 1e-300"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"
