"""Using a finished run: predict new texts, evaluate on new data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.config import CORE_SETTINGS, TaskConfig, build_task
from toolkit.data.tokens import encode_as_task
from toolkit.errors import TkError
from toolkit.evaluation.inference import MULTI_LABEL, predict_probabilities
from toolkit.evaluation.pooling import pool
from toolkit.evaluation.thresholds import from_config
from toolkit.runs.folders import run_status
from toolkit.runs.loader import DAMAGED, advice, cv_has_no_model, kind_of, open_run
from toolkit.runs.shapes import integer, number
from toolkit.saving import read_json
from toolkit.training.device import use_bf16, use_precompiled_attention
from toolkit.training.progress import library_bars_off


@dataclass
class SavedRun:
    run_dir: Path
    task: TaskConfig
    model: Any
    tokenizer: Any
    warning: str | None = None  # --allow-incomplete: why answers from it are not a complete run's

    @property
    def labels(self) -> tuple[str, ...]:
        config = self.model.config
        return tuple(config.id2label[i] for i in range(config.num_labels))

    @property
    def multi_label(self) -> bool:
        return getattr(self.model.config, "problem_type", None) == MULTI_LABEL

    @property
    def thresholds(self) -> np.ndarray | None:
        """Multi-label: each label's threshold, as tuned and saved by tk run (0.5 where none is saved)."""
        return from_config(self.model.config, self.labels) if self.multi_label else None

    def label_sets(self, probabilities: np.ndarray) -> list[list[str]]:
        return label_sets(self.labels, self.thresholds, probabilities)

    def probabilities(self, texts: list[str], progress: Any = None) -> np.ndarray:
        """One row per text, on the model's device, in bf16 where the run trained in it; with
        long_text = "chunks", its windows' probabilities pooled as in training. ``progress`` (a
        ``Progress``) counts the rows the model reads: texts, or windows."""
        return self.score(encode_as_task(self.tokenizer, texts, self.task), progress)

    def score(self, encoded: dict[str, list], progress: Any = None) -> np.ndarray:
        """``probabilities`` of texts ``encode_as_task`` encoded."""
        bf16 = use_bf16(self.task.bf16)

        def forward(on_batch):
            return predict_probabilities(self.model, encoded, self.task.eval_batch_size, bf16, on_batch=on_batch)

        return scored(self.task, self.multi_label, encoded, forward, progress,
                      lambda: f"{self.run_dir / 'model'}: the model answers nan (its weights hold nan or inf), so it "
                              f"has no answer to give. {DAMAGED}")


def label_sets(labels: tuple[str, ...], thresholds: np.ndarray, probabilities: np.ndarray) -> list[list[str]]:
    """Multi-label: each row's labels whose probability reaches their threshold, most probable first."""
    return [[labels[j] for j in sorted(np.flatnonzero(row >= thresholds), key=lambda j: -row[j])]
            for row in probabilities]


def scored(task: TaskConfig, multi_label: bool, encoded: dict[str, list], forward: Any, progress: Any,
           nan_error: Any) -> np.ndarray:
    """A saved run's or an export's probabilities: ``forward(on_batch)`` scores the encoded rows (texts, or
    windows that are then pooled per text as in training); ``progress`` counts the rows; an answer of nan is
    the error ``nan_error()`` says, never printed (nor scored)."""
    chunks = task.reads_in_windows
    if progress is not None:
        progress.count(len(encoded["input_ids"]), "window" if chunks else "text")
    try:
        rows = forward(progress.advance if progress is not None else None)
    finally:
        if progress is not None:
            progress.close()
    rows = pool(rows, encoded["document"], task.pooling, multi_label) if chunks and len(rows) else rows
    if not np.isfinite(rows).all():
        raise TkError(nan_error())
    return rows


def load_run(run_dir: Path, bare: bool = False, allow_incomplete: bool = False,
             need: tuple[str, ...] = ()) -> SavedRun:
    """The run's task, model and tokenizer, through the run loader (complete, files as saved; ``need``: the
    result files the caller reads too). ``bare``: on the CPU, a BERT classifier without importing
    transformers (``toolkit.evaluation.bare_bert``: the same answers; tk predict's start-up)."""
    if kind_of(run_dir) == "cv" and run_status(run_dir) == "complete":  # a finished one: no model, by design
        raise TkError(cv_has_no_model(run_dir))
    warning = open_run(run_dir, allow_incomplete, need=need, verify="all").warning
    if not (run_dir / "model").is_dir():
        status = run_status(run_dir)
        raise TkError(f"{run_dir} holds no saved model (run status: {status}). "
                      + (advice(run_dir, status) if status == "interrupted" else
                         "Pass a folder that tk run completed (tk list --runs shows them)."))
    task = task_of(run_dir)
    model_dir = run_dir / "model"
    check_saved_model(model_dir)
    loaded = load_bare(model_dir) if bare else None
    if loaded is not None:
        model, tokenizer = loaded
        check_vocabulary(model_dir, model, tokenizer)
        return SavedRun(run_dir, task, model, tokenizer, warning)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        with library_bars_off():
            model = AutoModelForSequenceClassification.from_pretrained(model_dir)
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:  # a damaged file the checks above did not catch
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TkError(f"{model_dir}: cannot load the saved model ({first_line}). {DAMAGED}") from None
    check_vocabulary(model_dir, model, tokenizer)
    return SavedRun(run_dir, task, on_gpu_if_any(model), tokenizer, warning)


def load_bare(model_dir: Path) -> tuple[Any, Any] | None:
    """The bare BERT (model, tokenizer) where it applies: a BERT classifier, and no GPU (there tk predicts
    through transformers, with the attention kernels tk chooses for it)."""
    import torch

    if torch.cuda.is_available():
        return None
    from toolkit.evaluation.bare_bert import load_bare_bert  # torch: imported when used, not at tk's start

    return load_bare_bert(model_dir)


def on_gpu_if_any(model: Any) -> Any:
    import torch

    if not torch.cuda.is_available():
        return model

    use_precompiled_attention()
    return model.to("cuda")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer.model")


def check_saved_model(model_dir: Path) -> None:
    """The files save_pretrained writes are there and whole; a damaged one is named."""
    config = model_dir / "config.json"
    if not config.is_file():
        raise TkError(f"{config} is missing. {DAMAGED}")
    values = _json_file(config)
    if not isinstance(values, dict) or "model_type" not in values:
        raise TkError(f"{config} is not a transformers model config (no model_type). {DAMAGED}")
    wrong = config_problems(values)
    if wrong:
        raise TkError(f"{config}: {', '.join(wrong)} not what a model config holds. {DAMAGED}")
    weights = [model_dir / name for name in WEIGHT_FILES if (model_dir / name).is_file()]
    if not weights:
        raise TkError(f"{model_dir} has no model weights ({WEIGHT_FILES[0]} is missing). {DAMAGED}")
    if weights[0].name == "model.safetensors":
        _check_safetensors(weights[0])
    vocabulary = [model_dir / name for name in VOCABULARY_FILES if (model_dir / name).is_file()]
    if not vocabulary:
        raise TkError(f"{model_dir} has no tokenizer vocabulary ({VOCABULARY_FILES[0]} is missing). {DAMAGED}")
    for path in [vocabulary[0], model_dir / "tokenizer_config.json"]:
        if path.suffix == ".json" and path.is_file() and not isinstance(_json_file(path), dict):
            raise TkError(f"{path} is not the object a tokenizer file holds. {DAMAGED}")


# The sizes a BERT-family config gives as positive whole numbers: a model cannot be built from anything else.
POSITIVE_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                  "max_position_embeddings", "type_vocab_size")


def config_problems(values: dict[str, Any]) -> list[str]:
    """The keys of a model's config.json that no model could be built or run from (a damaged file)."""
    wrong = [key for key in POSITIVE_SIZES if key in values and not (integer(values[key]) and values[key] > 0)]
    heads, width = values.get("num_attention_heads"), values.get("hidden_size")
    if not wrong and integer(heads) and integer(width) and width % heads:
        wrong.append("num_attention_heads (it must divide hidden_size)")
    if "layer_norm_eps" in values and not (number(values["layer_norm_eps"]) and values["layer_norm_eps"] > 0):
        wrong.append("layer_norm_eps")
    if values.get("pad_token_id") is not None and not (integer(values["pad_token_id"]) and values["pad_token_id"] >= 0):
        wrong.append("pad_token_id")
    names = values.get("id2label")
    if names is not None and not (isinstance(names, dict) and all(isinstance(v, str) for v in names.values())
                                  and sorted(names) == sorted(str(i) for i in range(len(names)))):
        wrong.append("id2label")
    return wrong


def check_vocabulary(model_dir: Path, model: Any, tokenizer: Any) -> None:
    """A tokenizer that does not match the embedding matrix predicts nonsense (or crashes on large ids)."""
    tokens = len(tokenizer)
    rows = model.get_input_embeddings().num_embeddings
    if tokens > rows or tokens < 0.9 * rows:  # models may pad the matrix a little (to a multiple of 64...)
        raise TkError(f"{model_dir}: the tokenizer has {tokens:,} tokens but the model has {rows:,} token embeddings; "
                      f"the tokenizer files do not belong to this model. {DAMAGED}")


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TkError(f"{path} is not readable JSON ({error}). {DAMAGED}") from None


def _check_safetensors(path: Path) -> None:
    """Header length, header and tensor extents against the file size: catches empty and truncated files."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= size - 8:
                raise ValueError("empty or cut short" if size < 8 or length > size - 8 else "bad header length")
            header = json.loads(handle.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise TkError(f"{path} is damaged ({error or 'unreadable'}). {DAMAGED}") from None
    if 8 + length + end > size:
        raise TkError(f"{path} is cut short: {size:,} bytes, its header needs {8 + length + end:,}. {DAMAGED}")


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """RUN/config.json as tk run wrote it: an object whose 'task' is an object with a name."""
    path = run_dir / "config.json"
    saved = read_json(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("task"), dict) or "name" not in saved["task"]:
        raise TkError(f"{path} is not a tk run config (expected an object with a 'task' table). {DAMAGED}")
    return saved


def task_of(run_dir: Path, pm=None) -> TaskConfig:
    """The task a run was trained with. Keys no longer declared (a plugin since removed, an older tk) are left out."""
    values = dict(read_run_config(run_dir)["task"])
    declared = tuple(pm.settings().values()) if pm is not None else ()
    known = set(CORE_SETTINGS) | {setting.name for setting in declared}
    return build_task(str(values.pop("name")), {k: v for k, v in values.items() if k in known},
                      run_dir / "config.json", declared)


def saved_baseline(run_dir: Path, label_names: tuple[str, ...]) -> int | np.ndarray | None:
    """The class the run's training split held most (saved in its metrics.json); None for older runs.
    Multi-label: the baseline's multi-hot answer (each label's majority value in the training split)."""
    path = run_dir / "metrics.json"
    metrics = read_json(path) if path.exists() else {}
    baseline = (metrics.get("baseline") or {}) if isinstance(metrics, dict) else {}
    if not isinstance(baseline, dict) or baseline.get("source") != "training split":
        return None
    if isinstance(baseline.get("labels"), list):
        return np.array([float(name in baseline["labels"]) for name in label_names], dtype=np.float32)
    label = baseline.get("label")
    if label not in label_names:
        return None
    return label_names.index(label)
