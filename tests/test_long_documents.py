"""long_text = "chunks": windows, pooling per text, both engines alike, tk predict / evaluate, analyze-lengths."""

import csv
import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.helpers import as_trained, fails_with, ok, quiet, toy_task, train_toy
from toolkit.config import build_task
from toolkit.data.tokens import encode_windows, window_counts
from toolkit.evaluation.inference import predict_probabilities
from toolkit.evaluation.pooling import pool, pool_labels, pool_rows
from toolkit.longdocs import predict_long
from toolkit.runs.pipeline import prepare
from toolkit.runs.saved import SavedRun, load_run
from toolkit.testing import FILLER, write_keyword_dataset
from toolkit.training import policy

CHUNKS = {"data": "long-data", "long_text": "chunks", "max_length": 32, "validation_size": 40,
          "learning_rate": 5e-3}  # windows without a keyword are noise: the toy rate (2e-3) stalls at 0.693


@pytest.fixture
def long_project(project):
    """The toy project with long texts (60-90 words, keywords only after the first 40): truncation at 32 cannot learn."""
    write_keyword_dataset(project / "long-data", train=120, test=60, long=True)
    return project


# -- pooling, by hand ------------------------------------------------------------------


def test_pooling_against_hand_computed_values():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]])
    documents = [3, 7, 3, 3]  # unsorted, not contiguous: answers come in ascending document order
    assert pool(probabilities, documents, "mean") == pytest.approx(np.array([[0.6, 0.4], [0.2, 0.8]]))
    assert pool(probabilities, documents, "max") == pytest.approx(np.array([[0.9 / 1.5, 0.6 / 1.5], [0.2, 0.8]]))
    geometric = np.array([(0.9 * 0.4 * 0.5) ** (1 / 3), (0.1 * 0.6 * 0.5) ** (1 / 3)])  # mean logits = geometric mean
    assert pool(probabilities, documents, "logits") == pytest.approx(
        np.array([geometric / geometric.sum(), [0.2, 0.8]]), abs=1e-6)
    # multi-label: the mean log-odds of 0.9 (ln 9) and 0.5 (0) is ln 3, whose sigmoid is 3/4
    assert pool(np.array([[0.9], [0.5]]), [0, 0], "logits", multi_label=True) == pytest.approx(np.array([[0.75]]))
    assert pool_labels([1, 0, 1, 1], documents).tolist() == [1, 0]
    with pytest.raises(ValueError):
        pool_labels([1, 0, 0, 1], documents)
    labels, same = pool_rows([1, 0], probabilities[:2], None)
    assert labels.tolist() == [1, 0] and np.array_equal(same, probabilities[:2])


def test_epoch_row_is_per_document():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    record = policy.epoch_record(1, [0.5], [0, 0, 1], probabilities, 1.0,
                                 lambda labels, p: {"accuracy": float((p.argmax(1) == labels).mean())},
                                 documents=[0, 0, 1])
    assert record.validation_loss == pytest.approx(-(math.log(0.6) + math.log(0.8)) / 2)
    assert record.accuracy == 1.0  # per window it would be 2/3


class WindowModel(torch.nn.Module):
    """A fake classifier: logits (0, number of 'great' tokens in the window); window probabilities are known."""

    def __init__(self, great_id):
        super().__init__()
        self.great_id, self.weight = great_id, torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(num_labels=2, pad_token_id=0, id2label={0: "neg", 1: "pos"})
        self.windows = []

    def forward(self, input_ids, attention_mask):
        self.windows += [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]
        great = (input_ids == self.great_id).sum(dim=1).float()
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(great), great], dim=1))


@pytest.mark.parametrize("pooling, expected", [
    ("mean", (3 * 0.5 + 2 * (1 / (1 + math.exp(-1))) ) / 5),
    ("max", (1 / (1 + math.exp(-1))) / (0.5 + 1 / (1 + math.exp(-1)))),
    ("logits", 1 / (1 + math.exp(-(3 * 0 + 2 * 1) / 5))),  # the mean logit margin (0, 0, 0, 1, 1) is 0.4
])
def test_saved_run_pools_known_window_probabilities(tiny_model, pooling, expected):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    words = ["the"] * 40
    words[33] = "great"  # windows of 10 words every 8: those starting at 24 and 32 hold it, 0, 8 and 16 do not
    task = build_task("t", {"dataset": "-", "model": "-", "long_text": "chunks", "max_length": 12, "stride": 2,
                            "pooling": pooling}, "test")
    model = WindowModel(tokenizer.convert_tokens_to_ids("great"))
    probabilities = SavedRun(None, task, model, tokenizer).probabilities([" ".join(words), "good"])
    assert len(model.windows) == 6 and all(len(w) <= 12 for w in model.windows)
    assert probabilities[0, 1] == pytest.approx(expected, abs=1e-6)
    assert probabilities[1].tolist() == pytest.approx([0.5, 0.5])


# -- windows -------------------------------------------------------------------------------


def test_windows_cover_each_text_with_stride_overlap(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = [" ".join(FILLER[i % len(FILLER)] for i in range(n)) for n in (0, 5, 10, 11, 100)]
    encoded = encode_windows(tokenizer, texts, max_length=12, stride=3)
    assert np.bincount(encoded["document"]).tolist() == window_counts(np.array([0, 5, 10, 11, 100]), 10, 3).tolist()
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    last = [i for i, d in enumerate(encoded["document"]) if d == 4]
    body = [encoded["input_ids"][i][1:-1] for i in last]
    assert all(encoded["input_ids"][i][0] == cls and encoded["input_ids"][i][-1] == sep for i in last)
    assert all(a[-3:] == b[:3] for a, b in zip(body, body[1:]))  # each window shares 3 tokens with the last
    whole = body[0] + [t for b in body[1:] for t in b[3:]]
    assert whole == tokenizer(texts[4], add_special_tokens=False)["input_ids"]


def test_windows_are_cut_without_the_tokenizers_too_long_warning(caplog, capfd):
    """Windowing tokenizes whole texts on purpose: transformers' 'longer than the specified maximum sequence
    length' warning would tell a predict_long user something wrong."""
    from transformers import AutoTokenizer
    from transformers.utils import logging

    from plugins.models.minilm import bundled_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_dir()))  # it warns; the tiny test one does not
    before = logging.get_verbosity()
    logging.set_verbosity_warning()
    try:
        encode_windows(tokenizer, ["word " * (tokenizer.model_max_length + 50)], max_length=32, stride=8)
    finally:
        logging.set_verbosity(before)
    said = caplog.text + capfd.readouterr().err  # pytest's log capture, or the terminal when it is off
    assert "sequence length is longer" not in said, said


def test_stride_is_checked(project):
    result = fails_with("stride = 62 must be at least 0 and below 62", "run", "toy", "--set", "long_text=chunks",
                        "--set", "stride=62")
    assert "Data:" not in result.output  # stopped before any data is loaded
    fails_with("stride = 62 must be at least 0 and below 62", "check", "toy", "--set", "long_text=chunks",
               "--set", "stride=62")  # tk check says it too
    # a stride that fits but re-reads every token many times is run, with a warning
    output = ok("run", "toy", "--set", "long_text=chunks", "--set", "stride=40", "--set", "epochs=1")
    warning = "WARNING: stride = 40 moves each window only 22 of its 62 text tokens forward, so every token is read " \
              "about 3 times"
    assert warning in output and output.index(warning) < output.index("Data:"), output  # before any loading
    assert warning in ok("check", "toy", "--set", "long_text=chunks", "--set", "stride=40")  # tk check says it too
    output = ok("run", "toy", "--set", "stride=40", "--set", "epochs=1")  # truncation: the stride is not used
    assert 'Note: stride applies only with long_text = "chunks"' in output, output
    assert 'stride applies only' in ok("check", "toy", "--set", "stride=500")  # not used, so not refused either


def test_check_judges_max_length_against_the_model_as_run_does(project):
    """tk check stops where tk run would on a max_length the model cannot take, for a truncating task too (it
    used to load the tokenizer for chunks tasks only); a Hub model it cannot load offline is a note, not an
    error, since tk check works on the data alone."""
    run = fails_with("max_length = 4096 is above the", "run", "toy", "--set", "max_length=4096")
    check = fails_with("max_length = 4096 is above the", "check", "toy", "--set", "max_length=4096")
    assert run.output.strip().splitlines()[-1] in check.output  # the same words
    fails_with("leaves no room for text", "check", "toy", "--set", "max_length=2")
    output = ok("check", "toy", "--set", "model=bert-uncased", "--set", "max_length=4096")
    assert "max_length = 4096 was not checked against model 'bert-uncased'" in output, output


def test_unused_window_keys_are_noted_in_the_run_folder(pm, project):
    """A truncating task with stride and pooling set: the note tk run prints is in config.json (next to the keys),
    and in manifest.json's notes, which the report page and the model card show."""
    outcome = train_toy(pm, project, stride=500, pooling="max", epochs=1)
    note = ('Note: stride and pooling apply only with long_text = "chunks"; this task truncates long texts '
            '(truncation = "head"), so they are not used.')
    config = json.loads((outcome.run_dir / "config.json").read_text())
    assert config["task"]["stride"] == 500 and config["notes"][0] == note
    assert json.loads((outcome.run_dir / "manifest.json").read_text())["notes"][0] == note
    assert "stride and pooling apply only with long_text" in (outcome.run_dir / "report.html").read_text()
    assert "stride and pooling apply only with long_text" in (outcome.run_dir / "model" / "README.md").read_text()


def test_a_bad_stride_in_one_task_blocks_only_that_task(project):
    """tasks.toml with one chunks task whose stride cannot work: the other tasks, tk list, and the task itself
    with --set stride=N, all still run (the error suggests --set, which must then work)."""
    with open(project / "tasks.toml", "a", encoding="utf-8") as tasks:
        tasks.write('\n[tasks.chunky]\ndataset = "toy"\ndata = "toy-data"\nlong_text = "chunks"\nstride = 64\n')
    assert "chunky" in ok("list")
    ok("check", "toy")
    fails_with("Use --set stride=16", "check", "chunky")
    assert "0 warnings." in ok("check", "chunky", "--set", "stride=16")


# -- end to end ------------------------------------------------------------------------------


def test_truncation_misses_late_keywords(pm, long_project):
    outcome = train_toy(pm, long_project, **CHUNKS | {"long_text": "truncate"})
    assert outcome.metrics["accuracy"] < 0.75, outcome.metrics["accuracy"]
    assert outcome.metrics["long_text"] == {"mode": "truncate"}


def test_chunks_learn_late_keywords_per_document_on_both_engines(pm, long_project, engine, monkeypatch):
    import toolkit.runs.pipeline as pipeline

    scored, real_score = [], pipeline.score
    monkeypatch.setattr(pipeline, "score", lambda pm, labels, *a, **k: scored.append(len(labels))
                        or real_score(pm, labels, *a, **k))
    notes = []
    progress = quiet()
    progress.note = notes.append
    outcome = train_toy(pm, long_project, progress=progress, engine=engine, bf16="off", **CHUNKS)
    metrics = outcome.metrics
    splits = metrics["long_text"]["splits"]
    assert splits["train"]["texts"] == 120 - 40 and splits["train"]["windows"] > 2 * splits["train"]["texts"]
    assert set(scored) == {splits["validation"]["texts"], splits["test"]["texts"]} == {40, 60}, scored
    assert metrics["n"] == 60
    with open(outcome.run_dir / "predictions.csv", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 60
    assert any(f"training sees {splits['train']['windows']:,} windows of 80 texts" in n
               and "train loss is per window and val loss per text" in n for n in notes), notes
    assert_best_validation_loss_is_the_saved_models(pm, long_project, outcome, engine=engine, bf16="off", **CHUNKS)
    if engine == "eager":  # the saved run is the same on both engines
        predict_evaluate_and_helper_pool_like_the_run(outcome, long_project)


def test_grouped_validation_windows_stay_with_their_documents(pm, long_project):
    """Under group_by_length the Trainer shuffles its evaluation rows in length groups; tk's engine keeps the
    validation windows in its own order, so they pool with their own documents (they did not: an error)."""
    settings = dict(engine="eager", bf16="off", group_by_length=True, epochs=1, **CHUNKS)
    outcome = train_toy(pm, long_project, **settings)
    assert json.loads((outcome.run_dir / "manifest.json").read_text())["training"]["group_by_length"] is True
    assert_best_validation_loss_is_the_saved_models(pm, long_project, outcome, **settings)


def assert_best_validation_loss_is_the_saved_models(pm, project, outcome, **settings):
    """The best epoch's validation loss is the saved model's, pooled per document."""
    prepared = prepare(pm, toy_task(project, **settings), None, project, quiet())
    validation = prepared.tokenized["validation"]
    windows = as_trained(predict_probabilities(load_run(outcome.run_dir).model, validation, 64), outcome.run_dir)
    labels, pooled = pool_rows(validation["labels"], windows, validation["document"], prepared.task.pooling)
    metrics = outcome.metrics
    best = metrics["history"][metrics["best_epoch"] - 1]
    assert policy.validation_loss(labels, pooled) == pytest.approx(best["validation_loss"], abs=1e-4)


def predict_evaluate_and_helper_pool_like_the_run(outcome, long_project):
    with open(long_project / "long-data" / "test.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:4]
    texts = [row["text"] for row in rows]
    predicted = json.loads(ok("predict", outcome.run_dir, "--json", *texts))["predictions"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(outcome.run_dir / "model")  # each answer says how it read its text
    windows = np.bincount(encode_windows(tokenizer, texts, 32, 8)["document"], minlength=len(texts))  # CHUNKS
    assert [p["windows"] for p in predicted] == windows.tolist() and max(windows) > 1
    helper = predict_long(outcome.run_dir, texts)
    assert [p["label"] for p in predicted] == [h["label"] for h in helper]
    for p, h in zip(predicted, helper):
        assert p["probabilities"]["pos"] == pytest.approx(h["probabilities"]["pos"], abs=1e-4)
    assert predict_long(outcome.run_dir / "model", texts[:1])[0]["label"] == helper[0]["label"]
    ok("evaluate", outcome.run_dir, "--data", long_project / "long-data")
    evaluated = json.loads(next((outcome.run_dir / "evaluations").glob("test-*.json")).read_text())
    assert evaluated["n"] == 60  # per document: the 60 texts of the test split, not their windows
    assert evaluated["accuracy"] == pytest.approx(outcome.metrics["accuracy"], abs=0.04)
    report = (outcome.run_dir / "model" / "README.md").read_text()
    assert "predict_long" in report
    # the card's usage says what truncation=True does to a long text here, and which stride the windows had
    assert "`truncation=True` reads its first" in report and "cuts long texts" not in report
    assert "| stride | not set (8 tokens used: max_length // 4) |" in report  # CHUNKS: max_length 32, no stride


def chunky_settings(**more):
    return [arg for key, value in {**CHUNKS, "epochs": 1, **more}.items() for arg in ("--set", f"{key}={value}")]


def test_a_chunks_batch_size_is_checked_against_the_windows_not_the_texts(long_project):
    """A chunks task's batches are of windows: batch_size may exceed the 80 training texts up to their windows
    (tk check and tk run count the same ones), and one over the windows is refused by both, in windows."""
    said = fails_with("training windows (of 80 texts)", "check", "toy", *chunky_settings(batch_size=10**6)).output
    windows = int(re.search(r"larger than the (\d+) training windows", said)[1])
    assert windows > 81
    ok("check", "toy", *chunky_settings(batch_size=81))  # refused as over the 80 texts before
    reason = (f"task 'toy': batch_size = {windows + 1} is larger than the {windows} training windows (of 80 texts): "
              f"one batch would hold every window; set batch_size to at most {windows}, e.g. --set batch_size=16.")
    fails_with(reason, "check", "toy", *chunky_settings(batch_size=windows + 1))
    fails_with(reason, "run", "toy", *chunky_settings(batch_size=windows + 1), "--output", long_project / "runs")
    assert not list((long_project / "runs").glob("*/checkpoints/*"))  # refused before training
    # a sweep over max_length changes the windows: its longer windows are fewer, checked before any run trains
    settings = chunky_settings(batch_size=windows)
    del settings[settings.index("max_length=32") - 1:settings.index("max_length=32") + 1]
    fails_with("The sweep cannot start its setting 2 of 2 (max_length=128), so nothing was trained: task 'toy': "
               f"batch_size = {windows} is larger than the ", "sweep", "toy", *settings, "--grid", "max_length=32,128",
               "--output", long_project / "sweep")
    assert not (long_project / "sweep").exists()


@pytest.mark.slow
def test_a_chunks_task_trains_and_cross_validates_with_a_batch_over_its_texts(long_project):
    """tk run with batch_size over the texts (but not the windows) trains; so does each fold of tk cv, whose
    training texts are fewer still (2 folds of 120 rows, 40 for validation: 20 texts each)."""
    ok("run", "toy", *chunky_settings(batch_size=81), "--output", long_project / "runs")
    ok("cv", "toy", *chunky_settings(batch_size=21), "--folds", "2", "--output", long_project / "cv")
    assert [json.loads(p.read_text())["status"] for p in (long_project / "runs").glob("*/status.json")] == ["complete"]
    assert json.loads(next((long_project / "cv").glob("*/status.json")).read_text())["status"] == "complete"


# -- analyze-lengths -----------------------------------------------------------------------------


def test_analyze_lengths_counts_windows(project):
    folder = project / "known"
    folder.mkdir()
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for n, label in ((10, "neg"), (100, "pos"), (200, "neg")):  # one token per word, plus [CLS] and [SEP]
            writer.writerow([" ".join(["movie"] * n), label])
    stats = json.loads(ok("analyze-lengths", "toy", "--model", "tiny", "--data", folder, "--json"))["models"]["tiny"]
    # max_length 64: 62 tokens per window, a new one every 62 - 16; 10 -> 1, 100 -> 2, 200 -> 4
    assert stats["windows"]["64"] == {"stride": 16, "windows": 7, "per_text": round(7 / 3, 3),
                                      "tokens_ratio": round((10 + 100 + 200 + (0 + 1 + 3) * 16 + 7 * 2) / (10 + 62 + 62 + 6), 3)}
    assert stats["windows"]["32"]["windows"] == 1 + 5 + 9
    assert "256" not in stats["windows"]  # above the tiny model's 128 positions
    zero = json.loads(ok("analyze-lengths", "toy", "--model", "tiny", "--data", folder, "--json", "--stride", "0"))
    assert zero["models"]["tiny"]["windows"]["32"] | {"tokens_ratio": 0} == {"stride": 0, "windows": 1 + 4 + 7, "per_text": 4.0,
                                                                  "tokens_ratio": 0}
    text = ok("analyze-lengths", "toy", "--model", "tiny", "--data", folder)
    assert "chunks at 64 (stride 16)" in text and "7 windows (2.33/text" in text
    # the task's stride (here from --set, as tk run takes it) counts the windows tk run would make
    text = ok("analyze-lengths", "toy", "--model", "tiny", "--data", folder, "--set", "stride=0")
    assert "chunks at 32 (stride 0)" in text and "12 windows (4.00/text" in text


def test_analyze_lengths_says_what_tk_run_would_about_an_impossible_stride(project):
    """A chunks task whose stride its max_length cannot take: tk run's own error, as a warning (this command only
    measures), and the recommended max_length is not offered as if that stride could work with it."""
    chunky = ("--set", "long_text=chunks", "--set", "stride=62")
    error = fails_with("stride = 62", "run", "toy", *chunky).output.split("Error: ", 1)[1].strip()
    output = ok("analyze-lengths", "toy", "--model", "tiny", *chunky)
    assert f"WARNING: tk run toy would stop: {error}" in output, output
    recommended = int(re.search(r"recommended \(95%\) +(\d+)", output)[1])
    assert (f"WARNING: tiny: with the recommended max_length ({recommended}) and long_text = \"chunks\", tk run would "
            f"stop: stride = 62 must be at least 0 and below {recommended - 2}") in output, output
    document = json.loads(ok("analyze-lengths", "toy", "--model", "tiny", *chunky, "--json"))
    assert len(document["warnings"]) == 2 and document["warnings"][0] == f"WARNING: tk run toy would stop: {error}"
    assert json.loads(ok("analyze-lengths", "toy", "--model", "tiny", "--json"))["warnings"] == []  # a fine task
