"""Your own data and model with no plugin to write: the files dataset, the any model plugin, tk evaluate."""

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA, TESTS, fails_with, ok, tk
from toolkit.data.loading import load_with_labels
from toolkit.errors import TkError
from toolkit.records import DataSource
from toolkit.testing import keyword_rows

QUEUES = {"neg": "refunds", "neutral": "general", "pos": "praise", "question": "how-to"}
FAST = ("--set", "epochs=1", "--set", "learning_rate=2e-3", "--set", "max_length=64", "--set", "batch_size=8")


def write_tickets(path, n=240, seed=0, header=("ticket_id", "body", "queue")):
    """A multi-class CSV whose text and label columns have names tk does not know."""
    rows = keyword_rows(n, tuple(QUEUES), seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows((i, text, QUEUES[label]) for i, (text, label) in enumerate(rows))
    return path


def write_tsv(path, n=200, seed=0):
    """A TSV with no header row: label TAB text, like the SMS Spam Collection."""
    rows = keyword_rows(n, ("neg", "pos"), seed)
    path.write_text("".join(f"{label}\t{text}\n" for text, label in rows), encoding="utf-8")
    return path


def load(pm, path, task=None, labels=None):
    notes = []
    dataset, splits = load_with_labels(pm, pm.dataset("files"), DataSource(path, "test", path.parent), notes,
                                       task, labels)
    return dataset, splits, notes


def run_dir_of(output):
    return Path(re.search(r"Saved to (\S+)", output)[1]).resolve()


def test_multiclass_csv_run_with_no_task(tmp_path, tiny_model):
    data = write_tickets(tmp_path / "tickets.csv")
    fails_with("no text column. Found columns: ticket_id, body, queue", "run", "--data", data,
               "--set", f"model={tiny_model}")
    output = ok("run", "--data", data, "--set", "text_column=body", "--set", "label_column=queue",
                "--set", f"model={tiny_model}", *FAST)
    assert "Task 'tickets': dataset files" in output and "accuracy" in output
    run_dir = run_dir_of(output)
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert list(config["id2label"].values()) == sorted(QUEUES.values())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data_path"] == str(data.resolve()) and manifest["source_fingerprint"]["train"]["rows"] == 240
    assert json.loads((run_dir / "metrics.json").read_text())["n"] == 48  # a fifth held out as the test split


def test_four_line_task_check_and_tasks_option_after_the_command(tmp_path, tiny_model):
    project = tmp_path / "project"
    project.mkdir()
    write_tickets(project / "tickets.csv", header=("id", "text", "label"))
    (project / "tasks.toml").write_text(f'[tasks.tickets]\ndataset = "files"\ndata = "tickets.csv"\n'
                                        f'model = "{tiny_model}"\n')
    output = ok("check", "tickets", "--tasks", project / "tasks.toml")  # the task's data key, --tasks after
    assert "tickets.csv" in output and "general" in output
    output = ok("--tasks", project / "tasks.toml", "analyze-lengths", "tickets")
    assert "recommended" in output.lower()


def test_tsv_without_header(pm, tmp_path):
    dataset, splits, notes = load(pm, write_tsv(tmp_path / "messages.tsv"))
    assert dataset.labels == ("neg", "pos") and len(splits["train"]) == 200
    assert any("no header row" in note for note in notes)
    assert any("took 'column2' as the text" in note for note in notes)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_parquet_and_json_lines_files(pm, tmp_path, suffix):
    import datasets

    rows = [{"body": text, "queue": QUEUES[label]} for text, label in keyword_rows(120, tuple(QUEUES), seed=4)]
    path = tmp_path / f"tickets.{suffix}"
    table = datasets.Dataset.from_list(rows)
    table.to_parquet(path) if suffix == "parquet" else table.to_json(path, lines=True)
    task = _task(pm, text_column="body", label_column="queue")
    dataset, splits, _ = load(pm, path, task)
    assert dataset.labels == tuple(sorted(QUEUES.values())) and len(splits["train"]) == 120
    assert splits["train"][0]["text"] == rows[0]["body"]
    assert dataset.labels[splits["train"][0]["label"]] == rows[0]["queue"]


def test_folder_with_its_own_test_file_and_several_training_files(tmp_path, tiny_model):
    folder = tmp_path / "data"
    folder.mkdir()
    write_tickets(folder / "train.csv", 240, seed=1, header=("id", "text", "label"))
    write_tickets(folder / "train-old.csv", 20, seed=2, header=("id", "text", "label"))
    write_tickets(folder / "test.csv", 60, seed=3, header=("id", "text", "label"))
    output = ok("run", "--data", folder, "--set", f"model={tiny_model}", "--set", "validation_size=40", *FAST)
    assert "train: picked train.csv" in output and "not used: train-old.csv" in output
    metrics = json.loads((run_dir_of(output) / "metrics.json").read_text())
    assert 55 <= metrics["n"] <= 60  # test.csv, not a fifth of train.csv (48)


def test_class_folders_and_fixed_label_order(pm, tmp_path):
    for label in ("neg", "pos"):
        (tmp_path / "reviews" / label).mkdir(parents=True)
        for i, (text, _) in enumerate(keyword_rows(10, (label,), seed=len(label))):
            (tmp_path / "reviews" / label / f"{i}.txt").write_text(text)
    task = _task(pm, labels=["pos", "neg"])
    dataset, splits, _ = load(pm, tmp_path / "reviews", task)
    assert dataset.labels == ("pos", "neg") and len(splits["train"]) == 20
    with pytest.raises(TkError, match="lacks label values found in the data: 'neg'"):
        load(pm, tmp_path / "reviews", _task(pm, labels=["pos", "other"]))


def _task(pm, **keys):
    from toolkit.config import build_task

    return build_task("t", {"dataset": "files", "model": "minilm", **keys}, "test",
                      tuple(pm.settings().values()))


def test_evaluate_uses_the_recorded_data_and_warns_when_it_changed(tmp_path, tiny_model, monkeypatch):
    data = write_tickets(tmp_path / "tickets.csv", header=("id", "text", "label"))
    output = ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST)
    run_dir = run_dir_of(output)
    trained = json.loads((run_dir / "metrics.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded path is absolute
    output = ok("evaluate", run_dir)
    assert f"Data: {data.resolve()}" in output and "split: test (held out by the run)" in output
    assert f"{trained['n']} examples" in output or str(trained["accuracy"])[:5] in output
    with open(data, "a", encoding="utf-8") as handle:
        handle.write("999,good great best,praise\n")
    output = ok("evaluate", run_dir)
    assert "WARNING" in output and "changed since the run" in output and "fingerprint at training" in output


def test_readme_evaluate_examples_run(tmp_path, tiny_model):
    data = write_tickets(tmp_path / "reviews.csv", header=("id", "text", "label"))
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST))
    other = write_tickets(tmp_path / "other-reviews.csv", 50, seed=9, header=("id", "text", "label"))
    readme = (TESTS.parent / "README.md").read_text()
    commands = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("tk evaluate ")]
    assert len(commands) >= 2 and any("--data" not in c for c in commands)
    for command in commands:
        args = [str(run_dir) if a.startswith("runs/") else str(other) if a.endswith(".csv") else a
                for a in shlex.split(command)[1:]]
        output = ok(*args)
        assert "accuracy" in output
        if "--data" in args:
            assert "split: all rows of other-reviews.csv" in output and "50 examples" in output


def test_pipeline_gives_tk_predict_scores_on_long_texts(tmp_path, tiny_model):
    from transformers import pipeline

    data = write_tickets(tmp_path / "t.csv", header=("id", "text", "label"))
    long_text = " ".join(["good", "the", "movie", "bad"] * 100)  # 400 words: past the model's 128 positions
    for truncation in ("head", "tail"):
        run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", "--set", "epochs=1",
                                "--set", "max_length=48", "--set", f"truncation={truncation}"))
        expected = json.loads(ok("predict", run_dir, "--json", long_text))["predictions"][0]["probabilities"]
        classify = pipeline("text-classification", model=str(run_dir / "model"), truncation=True)
        got = {row["label"]: row["score"] for row in classify(long_text, top_k=None)}
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert abs(got[name] - value) < 1e-3, (truncation, name, got[name], value)


def test_predict_shows_the_top_classes_and_json_all(tmp_path, tiny_model):
    data = write_tickets(tmp_path / "t.csv", header=("id", "text", "label"))
    with open(data, "a", newline="", encoding="utf-8") as handle:  # a fifth class: predict shows the top 3
        csv.writer(handle).writerows((1000 + i, text, "spam") for i, (text, _) in
                                     enumerate(keyword_rows(60, ("neg",), seed=5)))
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", "--set", "epochs=1"))
    line = ok("predict", run_dir, "good great").strip()
    assert len(re.findall(r" \d\.\d{3}\b", line)) == 3, line
    assert len(json.loads(ok("predict", run_dir, "--json", "good"))["predictions"][0]["probabilities"]) == 5


def test_further_training_keeps_the_head_only_for_the_same_labels(tmp_path, tiny_model):
    from toolkit.models import load_classifier

    data = write_tickets(tmp_path / "t.csv", header=("id", "text", "label"))
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", "--set", "epochs=1"))
    saved = tuple(json.loads((run_dir / "model" / "config.json").read_text())["id2label"].values())
    import torch

    kept = load_classifier(str(run_dir / "model"), saved)
    original = dict(kept.named_parameters())["classifier.weight"].detach().clone()
    torch.manual_seed(0)
    fresh = load_classifier(str(run_dir / "model"), tuple(reversed(saved)))
    assert not torch.equal(dict(fresh.named_parameters())["classifier.weight"], original)
    assert fresh.config.id2label[0] == saved[-1]
    output = ok("run", "--data", data, "--set", f"model={run_dir / 'model'}", "--set", "epochs=1")
    assert "accuracy" in output


def test_hub_model_offline_fails_fast_naming_offline_models(tmp_path):
    data = write_tickets(tmp_path / "t.csv", header=("id", "text", "label"))
    result = fails_with("Cannot reach the Hugging Face Hub", "run", "--data", data,
                        "--set", "model=hf:someone/some-bert")
    assert "minilm" in result.output
    fails_with("is not a Hub model id", "run", "--data", data, "--set", "model=hf:../x")
    fails_with("no folder no/such/folder", "run", "--data", data, "--set", "model=no/such/folder")


def test_run_without_task_or_data_says_what_to_pass():
    result = tk("run")
    assert result.exit_code == 2 and "--data FILE" in result.output


def test_run_keeps_library_progress_off_stderr(tmp_path, tiny_model):
    from click.testing import CliRunner

    from toolkit.cli import cli

    data = write_tickets(tmp_path / "t.csv", header=("id", "text", "label"))
    result = CliRunner().invoke(cli, ["run", "--data", str(data), "--set", f"model={tiny_model}",
                                      "--set", "epochs=1"])
    assert result.exit_code == 0, result.output
    for noise in ("Map", "Filter", "Loading weights", "Generating", "Writing model shards", "LOAD REPORT"):
        assert noise not in result.stderr, result.stderr


@pytest.mark.slow
def test_real_sms_spam_and_trec(tmp_path, pm):
    extra = SHARED_DATA / "extra"
    if not (extra / "sms_spam" / "SMSSpamCollection").is_file():
        pytest.skip(f"real data folder {extra} is absent")
    dataset, splits, notes = load(pm, extra / "sms_spam" / "SMSSpamCollection")
    assert dataset.labels == ("ham", "spam") and len(splits["train"]) == 5574
    output = ok("run", "--data", extra / "sms_spam" / "SMSSpamCollection", "--set", "model=minilm",
                "--set", "train_size=200", "--set", "epochs=1", "--set", "max_length=32",
                "--set", "validation_size=50", "--set", "eval_size=200", "--set", "learning_rate=1e-4")
    assert "spam" in output and "accuracy" in output
    trec = tmp_path / "trec.csv"  # TREC's "COARSE:fine text" lines, as a CSV with the coarse label
    with open(trec, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        for line in (extra / "trec" / "train_5500.label").read_text(encoding="latin-1").splitlines():
            label, text = line.split(" ", 1)
            writer.writerow([label.split(":")[0], text])
    dataset, splits, _ = load(pm, trec)
    assert dataset.labels == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM") and len(splits["train"]) == 5452
