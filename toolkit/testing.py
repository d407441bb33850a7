"""A test kit for plugin authors (and for tk's own tests).

    from toolkit.testing import check_dataset_plugin, make_tiny_model

``check_dataset_plugin`` asserts a dataset plugin keeps tk's contract;
``make_tiny_model`` writes a tiny randomly initialised BERT that trains in
seconds; ``write_keyword_dataset`` writes a small learnable CSV dataset (with
``long=True``, texts whose keywords come only after their first 40 words);
``multilabel_keyword_rows`` makes rows with any number of labels.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from toolkit.data.loading import load_with_labels
from toolkit.plugins import PluginManager
from toolkit.records import DataSource, WithNotes
from toolkit.training.progress import quiet_library_progress

FILLER = ("the", "a", "movie", "film", "plot", "actor", "scene", "story", "it", "was", "and", "very", "quite",
          "this", "that", "of", "in", "with", "time", "ending")
KEYWORDS = {
    "neg": ("bad", "awful", "boring", "poor", "worst"),
    "pos": ("good", "great", "wonderful", "fine", "best"),
    "neutral": ("okay", "average", "mixed", "plain", "middling"),
    "question": ("why", "how", "when", "where", "who"),
}
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def make_tiny_model(folder: Path, hidden: int = 32, layers: int = 2, max_positions: int = 128, seed: int = 0,
                    dropout: float = 0.0) -> Path:
    """Save a tiny random BERT (seeded) and a word-level vocabulary (all words used here) under ``folder``.

    No dropout by default, so whether a toy run learns does not hinge on one
    stream of random masks.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    quiet_library_progress()  # no "Writing model shards" bar in a test's output, as in tk run's
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(SPECIAL) + sorted(set(FILLER) | {w for words in KEYWORDS.values() for w in words})
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True,
                                  model_max_length=max_positions)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=hidden * 2, max_position_embeddings=max_positions,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(folder)
    return folder


def keyword_rows(n: int, labels: tuple[str, ...], seed: int = 0, noise: float = 0.0) -> list[tuple[str, str]]:
    """``n`` (text, label) rows: filler words plus keywords of the row's class; ``noise`` flips labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 30))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(KEYWORDS[label]))
        shown = rng.choice(labels) if rng.random() < noise else label
        rows.append((" ".join(words), shown))
    rng.shuffle(rows)
    return rows


def multilabel_keyword_rows(n: int, labels: tuple[str, ...] = ("neg", "pos", "question"), seed: int = 0,
                            share: float = 0.4, words: tuple[int, int] = (3, 20)) -> list[tuple[str, list[str]]]:
    """``n`` (text, label list) rows: each label is on a row with probability ``share`` (a row may have none),
    and the row holds a keyword of each of its labels among ``words`` filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        chosen = [label for label in labels if rng.random() < share]
        text = [rng.choice(FILLER) for _ in range(rng.randint(*words))]
        for label in chosen:
            text.insert(rng.randrange(len(text) + 1), rng.choice(KEYWORDS[label]))
        rows.append((" ".join(text), chosen))
    return rows


def long_keyword_rows(n: int, labels: tuple[str, ...], seed: int = 0, words: tuple[int, int] = (60, 90),
                      after: int = 40) -> list[tuple[str, str]]:
    """``n`` rows of ``words`` filler words whose class keywords appear only after the first ``after`` words:
    a model that reads only the head of each text cannot learn them (long_text = "chunks" can)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        text = [rng.choice(FILLER) for _ in range(rng.randint(*words))]
        for _ in range(rng.randint(1, 2)):
            text.insert(rng.randrange(after, len(text) + 1), rng.choice(KEYWORDS[label]))
        rows.append((" ".join(text), label))
    rng.shuffle(rows)
    return rows


def write_keyword_dataset(folder: Path, labels: tuple[str, ...] = ("neg", "pos"), train: int = 200,
                          test: int = 80, noise: float = 0.0, seed: int = 0, long: bool = False) -> Path:
    """Write ``train.csv`` and ``test.csv`` (columns text, label) under ``folder``; ``long``: ``long_keyword_rows``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, offset in (("train", train, 0), ("test", test, 1)):
        rows = long_keyword_rows(n, labels, seed + offset) if long else keyword_rows(n, labels, seed + offset, noise)
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return folder


def check_dataset_plugin(pm: PluginManager, name: str, local_path: Path) -> None:
    """Assert that dataset ``name`` keeps the plugin contract when loaded offline from ``local_path``.

    Checks: labels declared; a train split with ``text`` and ``label``
    columns; every raw label value covered by the label mapping; each class
    present in the training split.
    """
    info = pm.datasets().get(name)
    assert info is not None, f"no plugin registers the dataset '{name}'"
    raw = pm.hook.tk_load_dataset(dataset=info, source=DataSource(local_path, "test"), task=None)
    assert raw is not None, f"no plugin loads '{name}' from {local_path}"
    raw = raw.value if isinstance(raw, WithNotes) else raw
    assert "train" in raw, f"'{name}' from {local_path} has no train split: {list(raw)}"
    labels = info.labels or pm.hook.tk_dataset_labels(dataset=info, splits=raw, task=None) or ()
    assert len(labels) >= 2 and len(set(labels)) == len(labels), \
        f"'{name}' must declare (or read from its data) two or more distinct label names, got {labels}"
    for split_name, split in raw.items():
        assert {"text", "label"} <= set(split.column_names), \
            f"'{name}' split {split_name} must have text and label columns, has {split.column_names}"
        assert all(isinstance(t, str) for t in split["text"][:100]), f"'{name}' {split_name}: texts must be str"
    loaded = load_with_labels(pm, info, DataSource(local_path, "test"))  # raises on an incomplete mapping
    info, labelled = loaded.dataset, loaded.splits
    present = set(labelled["train"]["label"])
    assert present == set(range(len(info.labels))), f"'{name}': train split lacks classes {set(range(len(info.labels))) - present}"
