"""Files a finished run leaves behind: model, metrics, predictions, curves, manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.evaluation.multilabel import predict_sets
from toolkit.records import EpochRecord
from toolkit.saving import os_error_in, save_png, saving_error, write_text

PACKAGES = ("tk-toolkit", "torch", "transformers", "datasets", "accelerate", "tokenizers", "scikit-learn",
            "numpy", "pluggy")
WORST_MISTAKES = 20


def save_model(model: Any, tokenizer: Any, run_dir: Path, max_length: int | None = None,
               truncation: str = "head") -> Path:
    """save_pretrained into a temporary folder, then rename: the model folder is whole or absent.

    With ``max_length`` the tokenizer is saved to cut texts as training did: ``model_max_length`` is
    ``max_length`` and ``truncation_side`` keeps the head (or, for ``tail``, the end), so
    ``pipeline(..., truncation=True)`` scores long texts as ``tk predict`` does (``head+tail`` has no
    tokenizer setting: pipeline keeps the head).
    """
    final = run_dir / "model"
    staging = run_dir / ".model.partial"
    shutil.rmtree(staging, ignore_errors=True)
    if max_length is not None:
        tokenizer.model_max_length = max_length
        tokenizer.truncation_side = "left" if truncation == "tail" else "right"
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        as_umask_allows(staging)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException as error:  # safetensors and torch raise their own types for a full disk
        shutil.rmtree(staging, ignore_errors=True)
        os_error = error if isinstance(error, OSError) else os_error_in(error)
        if os_error is None:
            raise
        raise saving_error(final, os_error) from None
    return final


def as_umask_allows(folder: Path) -> None:
    """Every file under ``folder`` gets the mode the umask gives a new file (0644 under the usual 022), as every
    other file of a run has: safetensors writes model.safetensors 0600, which a teammate or a serving account
    (and the copy in an MLflow store) could not read."""
    mask = os.umask(0o022)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~mask)


def write_predictions(path: Path, texts: list[str], labels: np.ndarray, probabilities: np.ndarray,
                      label_names: tuple[str, ...], thresholds: np.ndarray | None = None, rows=None,
                      linear: np.ndarray | None = None) -> None:
    """Every scored text with its label, prediction and probabilities; multi-label (``labels`` multi-hot):
    ``label`` and ``predicted`` hold JSON lists of label names, the prediction at ``thresholds``. ``rows``:
    each text's row number in the file it was read from (``files.row_numbers``), as a first column.
    ``linear``: the linear baseline's probabilities, as ``linear_p_`` columns last (tk audit ensembles them)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    numbers = [[int(n)] for n in rows] if rows is not None else [[] for _ in texts]
    first = ["row"] if rows is not None else []
    last = [f"linear_p_{name}" for name in label_names] if linear is not None else []
    baseline = ([f"{p:.4f}" for p in probs] for probs in linear) if linear is not None else ([] for _ in texts)
    if np.ndim(labels) == 2:
        writer.writerow([*first, "text", "label", "predicted", *[f"p_{name}" for name in label_names], *last])
        predicted = predict_sets(probabilities, thresholds)
        for number, text, truth, chosen, probs, extra in zip(numbers, texts, labels, predicted, probabilities,
                                                              baseline):
            writer.writerow([*number, spreadsheet_safe(text), spreadsheet_safe(json.dumps(_names(truth, label_names))),
                             spreadsheet_safe(json.dumps(_names(chosen, label_names))),
                             *[f"{p:.4f}" for p in probs], *extra])
        write_text(path, buffer.getvalue())
        return
    writer.writerow([*first, "text", "label", "predicted", "confidence", *[f"p_{name}" for name in label_names],
                     *last])
    for number, text, label, probs, extra in zip(numbers, texts, labels, probabilities, baseline):
        predicted = int(probs.argmax())
        writer.writerow([*number, spreadsheet_safe(text), spreadsheet_safe(label_names[label]),
                         spreadsheet_safe(label_names[predicted]), f"{probs[predicted]:.4f}",
                         *[f"{p:.4f}" for p in probs], *extra])
    write_text(path, buffer.getvalue())


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading ' (OWASP, CSV injection)."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def _names(row: np.ndarray, label_names: tuple[str, ...]) -> list[str]:
    return [label_names[j] for j in np.flatnonzero(np.asarray(row) > 0.5)]


def worst_mistakes(texts: list[str], labels: np.ndarray, probabilities: np.ndarray,
                   label_names: tuple[str, ...], limit: int = WORST_MISTAKES,
                   thresholds: np.ndarray | None = None, rows=None) -> list[dict[str, Any]]:
    """Wrong predictions, most confident first: where error analysis starts. ``rows``: each text's row number
    in its file (as predictions.csv's), kept with each mistake.

    Multi-label: rows whose label set is wrong, by their most confident wrong call (a label predicted
    with probability p, or missed with 1 - p)."""
    if np.ndim(labels) == 2:
        found = _worst_label_sets(texts, np.asarray(labels) > 0.5, probabilities, label_names, limit, thresholds)
    else:
        predicted = probabilities.argmax(axis=1)
        wrong = np.flatnonzero(predicted != labels)
        wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:limit]
        found = [(i, {"text": texts[i][:500], "label": label_names[labels[i]], "predicted": label_names[predicted[i]],
                      "confidence": round(float(probabilities[i, predicted[i]]), 4)}) for i in wrong]
    return [{"row": int(rows[i]), **mistake} if rows is not None else mistake for i, mistake in found]


def _worst_label_sets(texts, truth, probabilities, label_names, limit, thresholds) -> list[tuple[int, dict]]:
    predicted = predict_sets(probabilities, thresholds)
    sure = np.where(predicted, probabilities, 1 - probabilities)
    confidence = np.where(predicted != truth, sure, -1.0).max(axis=1)
    wrong = np.flatnonzero(confidence >= 0)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    return [(i, {"text": texts[i][:500], "label": ", ".join(_names(truth[i], label_names)) or "no label",
                 "predicted": ", ".join(_names(predicted[i], label_names)) or "no label",
                 "confidence": round(float(confidence[i]), 4)}) for i in wrong]


def plot_losses(path: Path, history: list[EpochRecord], best_epoch: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r.train_loss for r in history], "o-", label="training loss")
    ax.plot(epochs, [r.validation_loss for r in history], "o-", label="validation loss")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_xticks(epochs)
    ax.set_title(title)
    ax.legend()
    save_png(fig, path)


def fingerprint(splits, framed: bool = True) -> dict[str, Any]:
    """A hash of every text and label the run saw, per split: same data, same fingerprint.

    Each label and text is length-prefixed (``5:label9:the text``), so no two tables of rows give the same
    bytes: joined as ``label\ttext\n`` (``framed=False``, what runs recorded before; kept to compare with
    them), a text holding a line break and a tab could stand for two rows."""
    result = {}
    row = (lambda label, text: f"{len(label)}:{label}{len(text)}:{text}") if framed else (
        lambda label, text: f"{label}\t{text}\n")
    for name, split in splits.items():
        digest = hashlib.sha256()
        for start in range(0, len(split), FINGERPRINT_ROWS):  # hashed a slice at a time: the same digest as row
            # by row, where iterating the columns row by row took 26.8 s for 1.6M tweets (0.5 s this way)
            texts, labels = (split[key][start:start + FINGERPRINT_ROWS] for key in ("text", "label"))
            digest.update("".join(row(str(label), str(text)) for text, label in zip(texts, labels)).encode())
        result[name] = {"rows": len(split), "sha256": digest.hexdigest()[:16], **({"framing": FRAMING} if framed else {})}
    return result


FRAMING = "length-prefixed"


def same_fingerprint(recorded: dict[str, Any], splits, now: dict[str, Any]) -> bool:
    """``recorded`` (a config's or manifest's) against the data as it is: by the framing it was made with."""
    legacy = any(isinstance(v, dict) and "framing" not in v for v in recorded.values())
    return recorded == (fingerprint(splits, framed=False) if legacy else now)


FINGERPRINT_ROWS = 100_000


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
