"""An ONNX export tk export wrote, loaded like a saved run: the same tokenizing, batching, pooling and answers,
the forward pass in ONNX Runtime. tk serve, tk predict and tk evaluate take its folder where they take a run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import TaskConfig, build_task
from toolkit.data.tokens import encode_as_task
from toolkit.errors import TkError
from toolkit.evaluation.inference import CPU_EVAL_BATCH, TokenRows, batches
from toolkit.runs.saved import label_sets, load_run, scored

MANIFEST = "tk_export.json"  # written last: a folder without it is not (yet) an export
MODEL_FILE = "model.onnx"
# tk export's default outputs in a run; tk serve --onnx prefers the first: float32 answers match the run's and
# do not depend on the other texts in a batch, dynamic int8's do (docs/deploy.md)
EXPORT_FOLDERS = ("onnx", "onnx-int8")


def is_export(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def export_of(run_dir: Path) -> Path:
    """tk serve --onnx RUN: the export folder itself, or the run's export that tk export wrote by default."""
    if is_export(run_dir):
        return run_dir
    for name in EXPORT_FOLDERS:
        if is_export(run_dir / name):
            return run_dir / name
    raise TkError(f"{run_dir} has no ONNX export ({' or '.join(EXPORT_FOLDERS)} with {MANIFEST}). An export "
                  "written elsewhere with --output: name its folder (tk serve FOLDER). Or write one with: "
                  f"tk export {run_dir} --format onnx")


@dataclass
class OnnxRun:
    """Answers to ``SavedRun``'s calls: labels, multi_label, thresholds, label_sets, probabilities."""

    folder: Path
    run_dir: Path
    task: TaskConfig
    session: Any
    tokenizer: Any
    labels: tuple[str, ...]
    thresholds: np.ndarray | None
    backend: str  # "onnx" or "onnx-int8"
    pad_id: int = 0

    @property
    def multi_label(self) -> bool:
        return self.thresholds is not None

    def label_sets(self, probabilities: np.ndarray) -> list[list[str]]:
        return label_sets(self.labels, self.thresholds, probabilities)

    def probabilities(self, texts: list[str], progress: Any = None) -> np.ndarray:
        return self.score(encode_as_task(self.tokenizer, texts, self.task), progress)

    def score(self, encoded: dict[str, list], progress: Any = None) -> np.ndarray:
        """``probabilities`` of texts ``encode_as_task`` encoded."""
        def forward(on_batch):
            return onnx_probabilities(self.session, encoded["input_ids"], self.multi_label, self.pad_id, on_batch)

        return scored(self.task, self.multi_label, encoded, forward, progress,
                      lambda: f"{self.folder / MODEL_FILE}: the model answers nan (its weights hold nan or inf), so "
                              f"it has no answer to give. The export is damaged; export the run again (tk export "
                              f"{self.run_dir}).")


def onnx_probabilities(session: Any, input_ids: Any, multi_label: bool, pad: int = 0,
                       on_batch: Any = None, batch_size: int = CPU_EVAL_BATCH) -> np.ndarray:
    """Probabilities for tokenized rows, longest first in batches padded to their longest (as tk's own path)."""
    tokens = TokenRows(input_ids)
    order = np.argsort(-tokens.lengths, kind="stable")
    names = {node.name for node in session.get_inputs()}
    out = None
    for batch in batches(order, batch_size):
        ids, mask = tokens.batch(batch, pad)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        logits = session.run(None, feed)[0].astype(np.float64)
        if multi_label:
            scores = 1 / (1 + np.exp(-logits))
        else:
            scores = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        if out is None:
            out = np.zeros((len(tokens), scores.shape[1]), dtype=np.float32)
        out[batch] = scores
        if on_batch:
            on_batch(len(batch))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def open_session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = os.environ.get("TK_ONNX_THREADS")  # default: ONNX Runtime's own choice (every core)
    if threads:
        options.intra_op_num_threads = int(threads)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_export(folder: Path) -> OnnxRun:
    """The export in ``folder``; a missing runtime or a damaged file is a one-line error."""
    from toolkit.evaluation.bare_bert import BareTokenizer  # torch: imported when used, not at tk's start

    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        labels = tuple(manifest["labels"])
        task = build_task(manifest["task"]["name"], {k: v for k, v in manifest["task"].items() if k != "name"},
                          folder / MANIFEST, ())
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TkError(f"{folder / MANIFEST} is not a tk export manifest ({error}); export again with tk export.") \
            from None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise TkError(f"{folder} is an ONNX export and onnxruntime is not installed; install it with: "
                      "pip install 'tk-toolkit[export]'") from None
    tokenizer = BareTokenizer.from_folder(folder)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    try:
        session = open_session(folder / MODEL_FILE)
    except Exception as error:  # onnxruntime's own exception types
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TkError(f"{folder / MODEL_FILE}: ONNX Runtime cannot load it ({first[:300]}); export again with "
                      "tk export.") from None
    thresholds = manifest.get("thresholds")
    return OnnxRun(folder, Path(manifest.get("run_dir", folder)), task, session, tokenizer, labels,
                   np.array([thresholds[name] for name in labels], dtype=np.float32) if thresholds else None,
                   "onnx-int8" if manifest.get("quantize") == "int8" else "onnx",
                   int(manifest.get("pad_token_id") or 0))


def load_run_or_export(folder: Path, bare: bool = False, allow_incomplete: bool = False,
                       need: tuple[str, ...] = ()) -> Any:
    """tk predict, tk evaluate and tk serve take a run folder or an export folder alike; a run folder through
    the run loader (``toolkit.runs.loader.open_run``: complete, its files as saved)."""
    if is_export(folder):
        return load_export(folder)
    return load_run(folder, bare=bare, allow_incomplete=allow_incomplete, need=need)
