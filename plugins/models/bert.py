"""bert-base-uncased and bert-base-cased from the Hugging Face Hub."""

from __future__ import annotations

from toolkit.api import ModelInfo, hookimpl, load_classifier, load_tokenizer

MODELS = {
    "bert-uncased": ModelInfo("bert-uncased", "bert-base-uncased", "BERT base, uncased (110M, Hub)",
                              hub_id="google-bert/bert-base-uncased", license="apache-2.0", language="en"),
    "bert-cased": ModelInfo("bert-cased", "bert-base-cased", "BERT base, cased (110M, Hub)",
                            hub_id="google-bert/bert-base-cased", license="apache-2.0", language="en"),
}


@hookimpl
def tk_register_models(register):
    for model in MODELS.values():
        register(model)


@hookimpl
def tk_load_tokenizer(model):
    return load_tokenizer(model.source) if model.name in MODELS else None


@hookimpl
def tk_load_model(model, labels):
    return load_classifier(model.source, labels) if model.name in MODELS else None
