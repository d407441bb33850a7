"""Loading pretrained tokenizers and classifiers, from a folder or the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.hub import OFFLINE_HINT, HubUnreachable, hub_reachable


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, source, use_fast=True)


def load_classifier(source: str, labels: tuple[str, ...]) -> Any:
    from transformers import AutoModelForSequenceClassification

    return _from_pretrained(
        AutoModelForSequenceClassification,
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )


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
                             f"and it is not in the local cache. {OFFLINE_HINT}") from None


def model_limit(tokenizer: Any, model_config: Any = None) -> int:
    """The longest input the model takes: the tokenizer's limit, capped by position embeddings."""
    limit = getattr(tokenizer, "model_max_length", 512)
    if limit is None or limit > 100_000:  # transformers' "no limit" sentinel
        limit = 512
    positions = getattr(model_config, "max_position_embeddings", None)
    return min(limit, positions) if positions else limit
