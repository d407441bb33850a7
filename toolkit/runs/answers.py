"""tk predict's answers as JSON rows, in one place: tk predict --json and tk serve's /predict print these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # tk --help imports this module: numpy only when answering
    import numpy as np

DECIMALS = 4  # probabilities as tk predict prints them


def answer(model: Any, texts: list[str]) -> tuple[np.ndarray, list[bool], list[int] | None]:
    """The probabilities of ``texts``, whether each was cut to max_length (an answer about a text's first 64
    tokens is not one about the whole text), and with long_text = "chunks" how many windows each was read
    in (None otherwise). ``model``: a saved run or an ONNX export loaded like one (both have ``tokenizer``,
    ``task`` and ``score``)."""
    import numpy as np  # when answering, not at tk --help

    from toolkit.data.tokens import cut_flags, encode_as_task  # numpy: when answering, not at tk --help

    encoded = encode_as_task(model.tokenizer, texts, model.task)
    windows = (np.bincount(encoded["document"], minlength=len(texts)).tolist() if model.task.reads_in_windows
               else None)
    return model.score(encoded), cut_flags(model.tokenizer, texts, model.task, encoded["length"]), windows


def prediction_rows(model: Any, texts: list[str], probabilities: np.ndarray, cut: list[bool] | None = None,
                    windows: list[int] | None = None) -> list[dict[str, Any]]:
    """One row per text. Single-label: the most probable class and every class's probability; multi-label
    (``model.multi_label``): the labels whose probability reaches their tuned threshold, most probable first,
    with the probabilities and thresholds; with ``cut`` and ``windows`` (from ``answer``), whether the text
    was cut and in how many windows it was read. ``model`` is a saved run, or an ONNX export loaded like one."""
    labels = model.labels
    if model.multi_label:
        thresholds = {name: round(float(t), DECIMALS) for name, t in zip(labels, model.thresholds)}
        rows = [{"text": text, "labels": found,
                 "probabilities": {name: round(float(v), DECIMALS) for name, v in zip(labels, p)},
                 "thresholds": thresholds}
                for text, p, found in zip(texts, probabilities, model.label_sets(probabilities))]
    else:
        rows = [{"text": text, "label": labels[int(p.argmax())],
                 "probabilities": {name: round(float(v), DECIMALS) for name, v in zip(labels, p)}}
                for text, p in zip(texts, probabilities)]
    for row, was_cut in zip(rows, cut or ()):
        row["cut"] = bool(was_cut)
    for row, count in zip(rows, windows or ()):
        row["windows"] = int(count)
    return rows


def backend_of(model: Any) -> str:
    """What scored the answers: "pytorch" (the run's model), "onnx" or "onnx-int8" (an export)."""
    return getattr(model, "backend", "pytorch")
