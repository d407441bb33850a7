"""Loading pretrained tokenizers and classifiers, from a folder or the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.hub import MODEL_OFFLINE_HINT, HubUnreachable, hub_reachable


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, source, use_fast=True)


def load_classifier(source: str, labels: tuple[str, ...]) -> Any:
    """A sequence classifier for ``labels`` from a folder or a Hub id.

    A folder that already holds a classifier (a tk run's ``model/``) keeps its head when its
    label names are ``labels``, in order; otherwise the head starts fresh (seeded).
    """
    from transformers import AutoModelForSequenceClassification

    model = _from_pretrained(
        AutoModelForSequenceClassification,
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        ignore_mismatched_sizes=True,  # a saved head for other classes is replaced, not an error
    )
    if saved_labels(source) not in (None, tuple(labels)):
        fresh_head(model)
    return model


def saved_labels(source: str) -> tuple[str, ...] | None:
    """The label names of a saved classifier folder (its config's id2label), None for anything else."""
    import json

    config = Path(source) / "config.json"
    if not config.is_file():
        return None
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    architectures = values.get("architectures") or []
    id2label = values.get("id2label")
    if not id2label or not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return None
    return tuple(str(id2label[key]) for key in sorted(id2label, key=int))


def fresh_head(model: Any) -> None:
    """Re-initialise every module outside the encoder (as BERT does: normal(0, initializer_range) weights,
    zero biases): the classification head starts anew. Plain torch, since transformers skips weights
    it loaded from a checkpoint."""
    import torch

    std = getattr(model.config, "initializer_range", 0.02)
    base = getattr(model, model.base_model_prefix, None)
    inside = {id(module) for module in base.modules()} if base is not None else set()
    with torch.no_grad():
        for module in model.modules():
            if module is model or id(module) in inside:
                continue
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()


def _from_pretrained(auto_class: Any, source: str, **options: Any) -> Any:
    """A local folder loads as is; a Hub id loads from the cache when the Hub is unreachable."""
    if Path(source).is_dir():
        return auto_class.from_pretrained(source, **options)
    if hub_reachable():
        return auto_class.from_pretrained(source, **options)
    try:
        return auto_class.from_pretrained(source, local_files_only=True, **options)
    except OSError:
        raise HubUnreachable(f"Cannot reach the Hugging Face Hub to download the model '{source}', "
                             f"and it is not in the local cache. {MODEL_OFFLINE_HINT}", about="model") from None


def model_limit(tokenizer: Any, model_config: Any = None) -> int:
    """The longest input the model takes: the tokenizer's limit, capped by position embeddings."""
    limit = getattr(tokenizer, "model_max_length", 512)
    if limit is None or limit > 100_000:  # transformers' "no limit" sentinel
        limit = 512
    positions = getattr(model_config, "max_position_embeddings", None)
    return min(limit, positions) if positions else limit
