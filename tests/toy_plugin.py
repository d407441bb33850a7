"""A plugin used by the tests: a keyword dataset in CSV files and a tiny random BERT.

Loaded from tasks.toml (``plugins = ["toy_plugin"]``) or registered directly.
The model folder comes from TK_TOY_MODEL, set by the tests' fixtures.
"""

import os

from toolkit.api import (
    DatasetInfo,
    LabelMapping,
    ModelInfo,
    hookimpl,
    load_classifier,
    load_table,
    load_tokenizer,
    split_files,
)

DATASETS = {"toy": ("neg", "pos"), "toy3": ("neg", "neutral", "pos")}


@hookimpl
def tk_register_datasets(register):
    for name, labels in DATASETS.items():
        register(DatasetInfo(name, labels, f"keyword dataset with {len(labels)} classes"))


@hookimpl
def tk_register_models(register):
    register(ModelInfo("tiny", os.environ.get("TK_TOY_MODEL", ""), "tiny random BERT", offline=True))


@hookimpl
def tk_load_dataset(dataset, source):
    if dataset.name in DATASETS:
        return load_table(split_files(source.path) if source.path.is_dir() else {"train": source.path})
    return None


@hookimpl
def tk_label_mapping(dataset):
    if dataset.name in DATASETS:
        return LabelMapping({name: i for i, name in enumerate(DATASETS[dataset.name])})
    return None


@hookimpl
def tk_load_tokenizer(model):
    return load_tokenizer(model.source) if model.name == "tiny" else None


@hookimpl
def tk_load_model(model, labels):
    return load_classifier(model.source, labels) if model.name == "tiny" else None
