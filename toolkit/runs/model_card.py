"""model/README.md: a Hugging Face model card for a finished run, written from its metrics and manifest.

The YAML front matter is built with ``huggingface_hub.ModelCardData`` so the
Hub (and ``ModelCard.load``) read it as metadata: ``base_model`` and
``datasets`` appear only when they are real Hub ids, never a local path.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from toolkit.config import SPLIT_SIZED_BY, long_text_in_windows, window_stride_of
from toolkit.data.choose import FILES
from toolkit.errors import TkError
from toolkit.evaluation import classical
from toolkit.evaluation.report import headline_rows, interval_methods, thousands, undefined_precision
from toolkit.saving import write_text

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
METRICS = ("accuracy", "f1", "precision", "recall")
HYPERPARAMETERS = ("problem", "max_length", "truncation", "long_text", "stride", "pooling", "batch_size", "epochs",
                   "learning_rate", "weight_decay", "warmup_ratio", "lr_scheduler", "train_size", "validation_size",
                   "eval_size", "seed", "patience", "select_metric", "select_on", "bf16")


def hub_id(value: Any) -> str | None:
    """``value`` when it names a Hub repository (``org/name`` or a legacy ``name``), not a local folder."""
    if not isinstance(value, str) or not HUB_ID.match(value) or ".." in value or Path(value).exists():
        return None
    return value


def md(value: Any) -> str:
    """A user's text in Markdown: HTML escaped (the Hub renders Markdown with HTML), on one line."""
    return html.escape(" ".join(str(value).split()), quote=False)


def data_name(manifest: dict[str, Any]) -> str:
    """What the model was trained on, for a reader: the dataset's name, or for your own data (the ``files``
    dataset, which any file goes through) the file or folder name the run recorded."""
    dataset = str((manifest.get("task") or {}).get("dataset") or "?")
    path = manifest.get("data_path")
    return Path(path).name if dataset == FILES and isinstance(path, str) and path else dataset


def tested_on(manifest: dict[str, Any]) -> str:
    """Where the test metrics come from: the task's own test file (the files dataset's ``test_data``), or the
    data the model was trained on (its test split, or rows held out of it)."""
    task = manifest.get("task") or {}
    test_file = task.get("test_data")
    return Path(test_file).name if task.get("dataset") == FILES and isinstance(test_file, str) and test_file else (
        data_name(manifest))


def write_model_card(run_dir: Path) -> Path:
    """Write ``run_dir/model/README.md`` and return its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "model").is_dir():
        raise TkError(f"{run_dir} holds no saved model, so it gets no model card. Pass a folder tk run completed.")
    metrics, manifest = (_read(run_dir / name) for name in ("metrics.json", "manifest.json"))
    path = run_dir / "model" / "README.md"
    write_text(path, render_model_card(metrics, manifest))
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as error:
        raise TkError(f"{path}: cannot read it ({error}).") from None


def front_matter(metrics: dict[str, Any], manifest: dict[str, Any]) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    task = manifest.get("task") or {}
    name = str(task.get("name") or metrics.get("task") or "tk-model")
    dataset = hub_id(manifest.get("dataset_hub_id"))
    names = {key: title for title, key in headline_rows(metrics)}  # each average named: "f1 (macro)"
    results = [EvalResult(task_type="text-classification", task_name="Text Classification",
                          dataset_type=dataset or "local", dataset_name=tested_on(manifest),
                          dataset_split="test",
                          metric_type=metric, metric_value=round(float(metrics[metric]), 4),
                          metric_name=names.get(metric, metric))
               for metric in METRICS if isinstance(metrics.get(metric), (int, float))]
    base = base_model(manifest)
    data = ModelCardData(library_name="transformers", pipeline_tag="text-classification",
                         base_model=base.get("hub_id"), license=base.get("license") or "unknown",
                         language=base.get("language"), datasets=[dataset] if dataset else None,
                         metrics=[r.metric_type for r in results] or None, model_name=name,
                         eval_results=results or None, tags=["tk", "text-classification"])
    return f"---\n{data.to_yaml()}\n---\n"


def base_model(manifest: dict[str, Any]) -> dict[str, Any]:
    """The pretrained model's Hub id, license and language: as its model plugin declared them (manifest.json's
    ``base_model``), else the Hub id the weights were loaded from; None where unknown."""
    declared = manifest.get("base_model") or {}
    return {"hub_id": hub_id(declared.get("hub_id")) or hub_id(manifest.get("model_source")),
            "license": declared.get("license"), "language": declared.get("language")}


def render_model_card(metrics: dict[str, Any], manifest: dict[str, Any]) -> str:
    task = manifest.get("task") or {}
    labels = [str(x) for x in manifest.get("labels") or []]
    name = md(task.get("name") or metrics.get("task") or "this model")
    known = base_model(manifest)
    base = known["hub_id"]
    classes = ", ".join(f"`{md(x)}`" for x in labels) or "not recorded"
    base_text = f"[`{base}`](https://huggingface.co/{base})" if base else f"tk model `{md(task.get('model', '?'))}`"
    multi = metrics.get("problem") == "multi-label"
    data = md(data_name(manifest))
    on = f"`{data}`" if task.get("dataset") == FILES else f"dataset `{data}`"
    parts = [front_matter(metrics, manifest), f"# {name}\n",
             f"A {'multi-label ' if multi else ''}text classifier fine-tuned by tk from {base_text} on {on}. "
             f"{'Labels' if multi else 'Classes'}: {classes}.\n",
             (f"License: `{md(known['license'])}`, the base model's." if known["license"] else
              "License: unknown: tk does not know the base model's license; check it before sharing this model.")
             + (f" Language: `{md(known['language'])}`.\n" if known["language"] else "\n"),
             "## Intended use and how to load it\n",
             *(multi_label_use(data) if multi else [
                 f"It labels texts like those of `{data}` with one of its classes; "
                 "judge it on your own data before relying on it elsewhere.\n",
                 "```python\nfrom transformers import pipeline\n\n"
                 'classify = pipeline("text-classification", model="path/to/this/folder", truncation=True)\n'
                 'classify("A text like the ones it was trained on.")\n```\n']),
             how_long_texts_are_read(task),
             "## Training data and its checks\n", *training_data(manifest),
             "## Training procedure\n", *procedure(metrics, manifest),
             "## Evaluation\n", *evaluation(metrics),
             "## Limitations\n", *limitations(metrics, task)]
    return "\n".join(parts)


def how_long_texts_are_read(task: dict[str, Any]) -> str:
    """What ``truncation=True`` does to a long text, against what training did."""
    max_length = task.get("max_length", "?")
    if long_text_in_windows(task.get("long_text")):
        return (f"Training read a text longer than {max_length} tokens as overlapping windows of {max_length} "
                f"tokens, pooled per text ({md(task.get('pooling', 'logits'))}); `truncation=True` reads its first "
                f"{max_length} tokens only, so a long text's answer differs from the one tk reports. For that "
                "answer: `tk predict`, or `toolkit.longdocs.predict_long(\"path/to/the/run\", texts)`.\n")
    return (f"`truncation=True` cuts long texts to {max_length} tokens as training did "
            + ("(tail: the end is kept).\n" if task.get("truncation") == "tail" else
               "(head+tail in training: pipeline keeps the head; tk predict keeps both ends).\n"
               if task.get("truncation") == "head+tail" else "(the head is kept).\n"))


def multi_label_use(data: str) -> list[str]:
    return [f"It gives a text like those of `{data}` every label whose probability (a "
            "sigmoid per label) reaches that label's threshold, tuned on the validation split and saved in "
            "`config.json` as `tk_thresholds`; a text may get several labels or none. Judge it on your own data "
            "before relying on it elsewhere.\n",
            "```python\nfrom transformers import AutoConfig, pipeline\n\n"
            'folder = "path/to/this/folder"\n'
            'classify = pipeline("text-classification", model=folder, truncation=True, top_k=None)\n'
            "thresholds = AutoConfig.from_pretrained(folder).tk_thresholds\n"
            'scores = classify(["A text like the ones it was trained on."])[0]  # every label, its probability\n'
            'labels = [s["label"] for s in scores if s["score"] >= thresholds[s["label"]]]\n```\n']


def training_data(manifest: dict[str, Any]) -> list[str]:
    path = manifest.get("data_path")

    def local(text: str) -> str:  # a card travels with the model: the file's name, not this machine's path
        return text.replace(path, Path(path).name) if isinstance(path, str) and path else text

    lines = [f"- Source: {md(local(str(manifest.get('data_source', 'not recorded'))))}"]
    for split, info in (manifest.get("data_fingerprint") or {}).items():
        lines.append(f"- `{md(split)}`: {thousands(info.get('rows'))} rows "
                     f"(sha256 prefix `{md(info.get('sha256', '?'))}`)")
    checks = manifest.get("data_checks")
    used = checks.get("split_rows") if isinstance(checks, dict) else None  # validation_size may be unset: its default
    if used:
        lines.append("- Rows used: " + ", ".join(f"{md(name)} {rows:,}" for name, rows in used.items()))
    lines += [f"- {md(note if note.startswith(('Note: ', 'WARNING: ')) else 'Note: ' + note)}"
              for note in map(local, manifest.get("notes") or [])]
    if isinstance(checks, dict):
        findings = checks.get("findings") or []
        lines += [f"- Check `{md(f.get('check', '?'))}` ({md(f.get('level', '?'))}): {md(f.get('message', ''))}"
                  for f in findings] or ["- Data checks: no findings."]
    else:
        lines.append("- Data checks: not recorded.")
    return ["\n".join(lines) + "\n"]


def procedure(metrics: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    task = manifest.get("task") or {}
    checks = manifest.get("data_checks")
    used = (checks.get("split_rows") if isinstance(checks, dict) else None) or {}

    def value(key: str) -> str:  # an unset size says what its default gave: "not set (500 rows used)"
        split = SPLIT_SIZED_BY.get(key)
        if task[key] is None and isinstance(used.get(split), int):
            return f"not set ({used[split]:,} rows used)"
        if key == "stride" and task[key] is None and long_text_in_windows(task.get("long_text")):
            return f"not set ({window_stride_of(task['max_length'], None)} tokens used: max_length // 4)"
        return md(json.dumps(task[key]))

    rows = [f"| {key} | {value(key)} |" for key in HYPERPARAMETERS if key in task]
    rows.append(f"| epochs run | {metrics.get('epochs_run', 'not recorded')} |")
    rows.append(f"| best epoch kept | {metrics.get('best_epoch', 'not recorded')} "
                f"(selected on {md(metrics.get('select_metric') or task.get('select_metric', 'loss'))}) |")
    rows.append(f"| calibration | {calibration_used(metrics.get('calibration'))} |")
    rows.append(f"| engine | {md(manifest.get('engine') or 'not recorded')} |")
    versions = manifest.get("versions") or {}
    rows += [f"| {md(k)} | {md(versions[k])} |" for k in ("torch", "transformers") if k in versions]
    return ["| setting | value |\n|---|---|\n" + "\n".join(rows) + "\n"]


def calibration_used(found: Any) -> str:
    """What the saved head's probabilities are: a temperature in it (where fitted) or the model as trained."""
    if not isinstance(found, dict):
        return "not recorded"
    if found.get("method") != "temperature":
        return md(f"off ({found.get('reason') or 'not recorded'}): the probabilities are the model's as trained")
    t = found.get("temperature")
    shown = f"{t:.3f}" if isinstance(t, (int, float)) else "per label " + ", ".join(f"{x:.2f}" for x in t or [])
    texts = found.get("fitted_texts")
    where = ("spare training rows (rows train_size left unused, never trained or selected on)"
             if found.get("fitted_on") == "spare training rows" else "validation rows")
    return md(f"temperature {shown}, fitted on {thousands(texts)} {where} and baked into the classifier head "
              "(its weights and bias divided by it), so every reader of this folder gets calibrated probabilities")


MULTI_LABEL_METRICS = {"f1": "f1 (micro)", "precision": "precision (micro)", "recall": "recall (micro)",
                       "f1_macro": "f1_macro", "accuracy": "subset accuracy", "hamming_loss": "hamming loss"}


def evaluation(metrics: dict[str, Any]) -> list[str]:
    rows = []
    multi = metrics.get("problem") == "multi-label"
    for title, metric in headline_rows(metrics):
        if isinstance(metrics.get(metric), (int, float)):
            ci = metrics.get(f"{metric}_ci")
            shown = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"
            rows.append(f"| {title} | {metrics[metric]:.4f} | {shown} |")
    baseline = metrics.get("baseline")
    if multi and isinstance(baseline, dict) and isinstance(baseline.get("accuracy"), (int, float)):
        rows.append(f"| baseline subset accuracy (each label's majority value) | {baseline['accuracy']:.4f} | — |")
    elif isinstance(baseline, dict) and isinstance(baseline.get("accuracy"), (int, float)):
        rows.append(f"| majority-class baseline accuracy | {baseline['accuracy']:.4f} | — |")
    else:
        rows.append("| majority-class baseline | not recorded | — |")
    rows += linear_rows(metrics)
    found = metrics.get("calibration") if isinstance(metrics.get("calibration"), dict) else {}
    ece, ci = found.get("ece_after", found.get("ece")), found.get("ece_after_ci", found.get("ece_ci"))
    if isinstance(ece, (int, float)):
        rows.append(f"| expected calibration error of the saved model ({found.get('bins', 10)} equal-width bins) | "
                    f"{ece:.4f} | {f'[{ci[0]:.3f}, {ci[1]:.3f}]' if ci else '—'} |")
    undefined = undefined_precision(metrics)
    methods = interval_methods(metrics) or "95% intervals"
    return [f"On {thousands(metrics.get('n'))} texts of the test split ({methods}):\n",
            "| metric | value | 95% interval |\n|---|---|---|\n" + "\n".join(rows) + "\n",
            *([md(undefined) + "\n"] if undefined else [])]


def linear_rows(metrics: dict[str, Any]) -> list[str]:
    """The linear baseline (TF-IDF + logistic regression on the same rows) and the fine-tune's difference from it."""
    return [f"| {md(what)} | {value} | {interval} |" for what, value, interval in classical.table_rows(metrics)]


def limitations(metrics: dict[str, Any], task: dict[str, Any]) -> list[str]:
    cut = (f"- Texts longer than {task.get('max_length', '?')} tokens are cut (truncation side: "
           f"{md(task.get('truncation', 'head'))}); what lies beyond the cut is not read.")
    if long_text_in_windows(task.get("long_text")):
        cut = (f"- Texts longer than {task.get('max_length', '?')} tokens were read as overlapping windows whose "
               f"probabilities are pooled per text ({md(task.get('pooling', 'mean'))}); `transformers.pipeline` "
               "reads one window only: use `toolkit.longdocs.predict_long` or `tk predict` for the pooled answer.")
    lines = [cut,
             "- The 95% intervals cover the sampling noise of the test set only: not a change of domain, "
             "of time, or of how texts are written."]
    absent = metrics.get("classes_absent")
    if absent:
        lines.append("- Classes absent from the test split (their scores are untested): "
                     + ", ".join(f"`{md(x)}`" for x in absent) + ".")
    lines += [f"- {md(w)}" for w in metrics.get("warnings") or []]
    return ["\n".join(lines) + "\n"]
