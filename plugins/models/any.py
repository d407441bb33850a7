"""Any model by name: ``hf:ORG/NAME`` (a Hub model) or a folder saved with ``save_pretrained``.

A folder may be a tk run's ``model/``: training goes on from it, keeping its
classification head when its label names are the task's, else with a fresh one.
``local:PATH`` says "a folder" explicitly; a bare path works when the folder exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from toolkit.api import ModelInfo, TkError, hookimpl, load_classifier, load_tokenizer

PLUGIN = "any"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@hookimpl
def tk_resolve_model(name, base):
    if name.startswith("hf:"):
        hub_id = name[3:]
        if not HUB_ID.match(hub_id) or ".." in hub_id:
            raise TkError(f"model '{name}': '{hub_id}' is not a Hub model id. Write it as hf:ORG/NAME, e.g. "
                          "hf:distilbert/distilbert-base-uncased.")
        return ModelInfo(name, hub_id, f"{hub_id} from the Hugging Face Hub", offline=False, plugin=PLUGIN,
                         hub_id=hub_id)
    explicit = name.startswith("local:")
    text = name[len("local:"):] if explicit else name
    folder = _folder(Path(text).expanduser(), base)
    if not explicit and "/" not in text and "\\" not in text and not text.startswith("."):
        # a plain name: a save_pretrained folder here, as from_pretrained takes it, else an unknown model
        return _saved_model(name, folder) if folder is not None and (folder / "config.json").is_file() else None
    if folder is None:
        places = list(dict.fromkeys(str(p) for p in (Path.cwd(), base) if p))  # once where they are one folder
        raise TkError(f"model '{name}': no folder {text} (looked in {' and '.join(places)}). Give a folder saved "
                      "with save_pretrained, or a Hub model as hf:ORG/NAME.")
    if not (folder / "config.json").is_file():
        raise TkError(f"model '{name}': {folder} has no config.json, so it is not a save_pretrained folder. "
                      "Point at the folder that holds config.json and the weights (a tk run's model/).")
    return _saved_model(name, folder)


def _saved_model(name: str, folder: Path) -> ModelInfo:
    return ModelInfo(name, str(folder), f"the model in {folder}", offline=True, plugin=PLUGIN)


def _folder(path: Path, base: Path | None) -> Path | None:
    for candidate in ([path] if path.is_absolute() else [Path.cwd() / path] + ([base / path] if base else [])):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _mine(model) -> bool:
    return model.plugin == PLUGIN


@hookimpl
def tk_load_tokenizer(model):
    if not _mine(model):
        return None
    try:
        return load_tokenizer(model.source)
    except (OSError, ValueError) as error:
        raise TkError(f"model '{model.name}': cannot load its tokenizer from {model.source} "
                      f"({_first_line(error)}).") from None


@hookimpl
def tk_load_model(model, labels):
    if not _mine(model):
        return None
    try:
        return load_classifier(model.source, labels)
    except (OSError, ValueError) as error:
        raise TkError(f"model '{model.name}': cannot load {model.source} as a sequence classifier "
                      f"({_first_line(error)}). tk fine-tunes encoders that transformers' "
                      "AutoModelForSequenceClassification knows (BERT, RoBERTa, DeBERTa, ...).") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
