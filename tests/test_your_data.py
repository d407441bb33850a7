"""Your own data and model with no plugin to write: the files dataset, the any model plugin, tk evaluate."""

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA, TESTS, fails_with, ok, tk, tk_json
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
    loaded = load_with_labels(pm, pm.dataset("files"), DataSource(path, "test", path.parent), task, labels)
    return loaded.dataset, loaded.splits, loaded.notes


def run_dir_of(output):
    return Path(re.search(r"Saved to (\S+)", output)[1]).resolve()


def test_multiclass_csv_run_with_no_task(tmp_path, tiny_model):
    data = write_tickets(tmp_path / "tickets.csv")
    result = fails_with("no text column found by name (tk looks for text, review", "run", "--data", data,
                        "--set", f"model={tiny_model}")
    assert "Columns: ticket_id, body, queue." in result.output
    assert 'text_column = "NAME" in the task, or --set text_column=NAME' in result.output
    assert "Rename" not in result.output
    output = ok("run", "--data", data, "--set", "text_column=body", "--set", "label_column=queue",
                "--set", f"model={tiny_model}", *FAST)
    assert "Task 'tickets': dataset files" in output and "accuracy" in output
    assert f"val f1 is macro F1: the {len(QUEUES)} classes' F1, averaged" in output  # not one class's, nor micro
    # the classes of the rows trained on, not only of the file as loaded (which train_size may draw from)
    assert re.search(r"Rows: train 173 \(general 44, how-to 43, praise 43, refunds 43\), validation 19, test 48",
                     output), output
    run_dir = run_dir_of(output)
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert list(config["id2label"].values()) == sorted(QUEUES.values())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data_path"] == str(data.resolve()) and manifest["source_fingerprint"]["train"]["rows"] == 240
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert trained["n"] == 48  # a fifth held out as the test split
    output = ok("evaluate", run_dir)  # the run's own column names, recorded in config.json
    assert "split: test (held out by the run)" in output and f"{trained['accuracy']:.4f}" in output
    other = write_tickets(tmp_path / "more-tickets.csv", 30, seed=5)
    assert "30 examples" in ok("evaluate", run_dir, "--data", other)
    unknown = tmp_path / "new-queue.csv"  # a label the model never learned: not 'the train split' or a plugin
    unknown.write_text(other.read_text(encoding="utf-8") + "999,a brand new kind of ticket,facilities\n",
                       encoding="utf-8")
    result = fails_with("1 row has a label the model was not trained on: 'facilities' (e.g. row 31: 'facilities'). The "
                        "model's labels: ", "evaluate", run_dir, "--data", unknown)
    assert "A model is scored only on labels it knows: fix those rows, or leave them out of the file." in result.output
    # a file with other column names: each command's hint names a way it has to name them
    renamed = write_tickets(tmp_path / "renamed.csv", 30, seed=5, header=("id", "message", "team"))
    result = fails_with("Name it with --text-column NAME.", "evaluate", run_dir, "--data", renamed)
    assert "--set" not in result.output
    assert "30 examples" in ok("evaluate", run_dir, "--data", renamed, "--text-column", "message",
                               "--label-column", "team")
    pytest.importorskip("onnxruntime")
    result = fails_with(f"Rename that column of {renamed} to 'text', or score the file with tk evaluate RUN --data",
                        "export", run_dir, "--check-data", renamed, "--output", tmp_path / "onnx")
    assert "--set" not in result.output
    data.rename(tmp_path / "moved.csv")
    result = fails_with("which no longer exists. Pass the data to score with --check-data PATH.", "export", run_dir,
                        "--output", tmp_path / "onnx")


def test_model_card_names_your_file_and_keeps_advice_to_the_console(tmp_path, tiny_model, monkeypatch):
    """The card is about the model: the data it learnt from by name (not the plugin 'files'), and no
    suggestion meant for whoever ran tk (the hint to hold out fewer test rows)."""
    from toolkit.data import splits

    monkeypatch.setattr(splits, "LARGE_TEST", 20)  # 120 held-out rows are "far more" than train_size 8 then
    data = write_tickets(tmp_path / "tickets.csv", n=600, header=("id", "text", "label"))
    output = ok("run", "--data", data, "--set", f"model={tiny_model}", "--set", "train_size=8", *FAST)
    hint = "Scoring the 120 held-out test rows may take longer than training on train_size = 8; eval_size = 20"
    assert hint in output
    run_dir = run_dir_of(output)
    card = (run_dir / "model" / "README.md").read_text()
    assert "on `tickets.csv`. Classes:" in card and "texts like those of `tickets.csv`" in card
    assert "`files`" not in card and "Scoring the" not in card
    assert "held out 120 training rows as the test split." in card  # the fact stays
    assert not any("Scoring the" in note for note in json.loads((run_dir / "config.json").read_text())["notes"])


def test_a_data_run_says_the_tasks_toml_defaults_do_not_apply(tmp_path, tiny_model):
    """A learning rate in [defaults] silently unused by tk run --data looked like a bug (a trial's underfit run)."""
    project = tmp_path / "project"
    project.mkdir()
    data = write_tickets(project / "tickets.csv", header=("id", "text", "label"))
    (project / "tasks.toml").write_text('[defaults]\nlearning_rate = 2e-3\nepochs = 1\n')
    base = ("--tasks", project / "tasks.toml", "run", "--data", data, "--set", f"model={tiny_model}",
            "--set", "max_length=64", "--set", "batch_size=8")
    output = ok(*base, "--set", "epochs=1")
    assert "[defaults] (learning_rate) do not apply to a --data run" in output  # epochs came with --set
    assert "do not apply" not in ok(*base, "--set", "epochs=1", "--set", "learning_rate=2e-3")


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


def test_evaluate_data_file_is_scored_even_when_the_run_had_test_data(tmp_path, tiny_model):
    """--data FILE names the rows to score; the run's own test_data file used to replace them, under FILE's name."""
    data = write_tickets(tmp_path / "reviews.csv", header=("id", "text", "label"))
    test_file = write_tickets(tmp_path / "reviews-test.csv", 60, seed=5, header=("id", "text", "label"))
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", "--set",
                            f"test_data={test_file.name}", *FAST))  # relative to the folder of tasks.toml
    other = write_tickets(tmp_path / "other.csv", 40, seed=9, header=("id", "text", "label"))
    output = ok("evaluate", run_dir, "--data", other)
    assert "split: all rows of other.csv" in output and "40 examples" in output, output
    output = ok("evaluate", run_dir)  # without --data: the run's test file, named as such
    assert "60 examples" in output and "split: test split" in output
    # the Data line names the file scored first, then the one trained on
    assert f"Data: {test_file} (the task's test_data; training data: " in output, output  # the full path



def test_evaluate_data_file_with_rows_left_out_says_how_many_of_its_rows_it_scored(tmp_path, tiny_model):
    """Rows loading leaves out (here empty texts; a plugin's label mapped to None, as Sentiment140's neutral 2)
    were scored as 'all rows of FILE', every_row true, and named in a note as rows of 'train'."""
    data = write_tickets(tmp_path / "reviews.csv", header=("id", "text", "label"))
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST))
    other = write_tickets(tmp_path / "other.csv", 40, seed=9, header=("id", "text", "label"))
    with open(other, "a", encoding="utf-8") as handle:
        handle.write('901,"  ",praise\n902,,praise\n')
    evaluated = json.loads(ok("evaluate", run_dir, "--data", other, "--json"))["metrics"]
    assert evaluated["n"] == 40 and not evaluated["every_row"] and evaluated["rows_left_out"] == 2
    assert evaluated["split_description"] == "40 of the file's 42 rows (2 left out, as said above)"
    assert any(note.startswith("other.csv: left out 2 empty") for note in evaluated["notes"]), evaluated["notes"]
    assert not any(note.startswith("train:") for note in evaluated["notes"])
    whole = json.loads(ok("evaluate", run_dir, "--data", data, "--json"))["metrics"]
    assert whole["every_row"] and whole["rows_left_out"] == 0 and whole["split_description"].startswith("all rows")


def test_a_test_data_file_with_other_column_names_gets_advice_that_can_work(tmp_path, tiny_model):
    """text_column names the column in both files: the advice to set it to the test file's column (a raw
    Sentiment140 file's column6) then failed on the training file. The advice now says what does work."""
    data = write_tickets(tmp_path / "reviews.csv", header=("id", "text", "label"))
    rows = list(csv.reader(open(data, newline="", encoding="utf-8")))[1:41]
    raw = tmp_path / "raw-test.csv"
    with open(raw, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([label, "x", text] for _, text, label in rows)  # no header
    fixes = "give raw-test.csv a header row naming its columns as reviews.csv does, or leave test_data out"
    fails_with(fixes, "check", "--data", data, "--set", f"model={tiny_model}", "--set", f"test_data={raw}")
    fails_with("text_column names the column in both the training data and test_data; if raw-test.csv names it "
               "otherwise, give it a header row naming its columns as reviews.csv does, or leave test_data out and "
               f"score it after training: tk evaluate RUN --data {raw} --text-column NAME --label-column NAME.",
               "check", "--data", data, "--set", f"model={tiny_model}", "--set", f"test_data={raw}", "--set",
               "text_column=column3")


def test_compare_on_a_file_scores_every_run_on_its_rows_and_pairs_them(tmp_path, tiny_model):
    """tk compare --data FILE: the runs' verdict on a file the user names (a hand-labelled set), where runs can
    rank otherwise than on their own test splits; each run's numbers are tk evaluate --data's."""
    data = write_tickets(tmp_path / "reviews.csv", header=("id", "text", "label"))
    runs = [run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST, "--set",
                          f"learning_rate={rate}")) for rate in ("2e-3", "1e-4")]
    other = write_tickets(tmp_path / "other.csv", 60, seed=9, header=("id", "body", "queue"))
    document = json.loads(ok("compare", *runs, "--data", other, "--text-column", "body", "--label-column", "queue",
                             "--json"))
    assert document["scored_on"] == str(other)
    for run_dir, row in zip(runs, document["runs"]):
        alone = json.loads(ok("evaluate", run_dir, "--data", other, "--text-column", "body", "--label-column",
                              "queue", "--json"))["metrics"]
        assert (row["accuracy"], row["f1_macro"]) == (alone["accuracy"], alone["f1_macro"]) and alone["n"] == 60
        assert alone["data_path"] == str(other.resolve())  # recorded as scored, whatever the folder it ran in
        assert alone["columns"] == {"text_column": "body", "label_column": "queue"}
    tested = [row["vs_best"]["test"] for row in document["runs"] if row["vs_best"]["verdict"] != "best"]
    assert tested == ["paired bootstrap"]  # macro F1 decides 4 classes; the same rows for every run: paired
    assert any(note.startswith(f"Every run scored {other} (all rows of other.csv): 60 rows, the same for every run")
               for note in document["notes"]), document["notes"]
    # each run's linear baseline, fitted again on its training rows, on the file's rows (not on its test rows)
    header = ("Each run against its linear baseline (TF-IDF + logistic regression fitted on the run's training rows, "
              f"refitted for this comparison, scored on {other}; ")
    start = next(i for i, note in enumerate(document["notes"]) if note.startswith(header))
    baselines = set()
    for row, line in zip(document["runs"], document["notes"][start + 1:]):
        found = re.match(rf"  {re.escape(row['label'])}: macro F1 ([+-]\d\.\d+) \[.*\] against its baseline's "
                         r"(\d\.\d+): ", line)
        assert found and abs(row["f1_macro"] - float(found[2]) - float(found[1])) < 0.0015, line
        baselines.add(found[2])
    assert len(baselines) == 1  # both runs trained on the same rows: one baseline
    said = ok("compare", *runs, "--data", data)
    assert "on file accuracy" in said and f"trained on {data}, so their scores there are optimistic" in said
    data.write_text("".join(data.read_text().splitlines(True)[:-1]))  # changed since: not the rows trained on
    changed = ok("compare", *runs, "--data", other, "--text-column", "body", "--label-column", "queue")
    assert "on file accuracy" in changed and "against its linear baseline" not in changed


def test_evaluate_on_a_file_says_how_many_of_its_texts_the_run_trained_on(tmp_path, tiny_model):
    """TREC_10 shares texts with TREC's training file: tk evaluate --data scored them with nothing said, where
    tk run leaves such rows out of its test split."""
    data = write_tickets(tmp_path / "tickets.csv", header=("id", "text", "label"))
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST))
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        tested = [(row["text"], row["label"]) for row in csv.DictReader(handle)]  # never trained on
    with open(data, newline="", encoding="utf-8") as handle:
        held = {text for text, _ in tested}
        trained = [(row["text"], row["label"]) for row in csv.DictReader(handle) if row["text"] not in held][:3]
    mixed = tmp_path / "mixed.csv"
    with open(mixed, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *tested[:4], *[(text.upper(), label) for text, label in
                                                                         trained]])
    document, said = tk_json("evaluate", run_dir, "--data", mixed)
    seen = document["metrics"]["rows_seen_in_training"]
    assert seen == list(range(seen[0], seen[0] + 3))  # the last three rows of the file, as numbered there
    warning = (f"WARNING: 3 of these 7 rows hold texts the run trained or validated on (rows {seen[0]}, {seen[1]} "
               f"and {seen[2]}; all of them in the evaluation JSON's rows_seen_in_training), alike but for case, "
               "spaces and HTML tags: the model has seen them, so its scores on them are optimistic.")
    assert any(note.startswith(warning) for note in document["metrics"]["notes"]) and warning in said, said
    clean = tmp_path / "clean.csv"
    with open(clean, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *tested[:4]])
    assert not any("trained or validated on" in note
                   for note in tk_json("evaluate", run_dir, "--data", clean)[0]["metrics"]["notes"])


def test_label_names_give_coded_labels_names_the_model_keeps(tmp_path, tiny_model):
    """Sentiment140's polarity 0 and 4 in a user's CSV: the labels key only orders names, so a model answered
    '0' and '4'. label_names names them; tk evaluate on the same kind of file reads them through the run's key."""
    rows = keyword_rows(120, ("neg", "pos"), 3)
    data = tmp_path / "tweets.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        coded = (({"neg": 0, "pos": 4}[label], text) for text, label in rows)
        csv.writer(handle).writerows([("polarity", "text"), *coded])
    output = ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST, "--set",
                'label_names={0 = "negative", 4 = "positive", 2 = "neutral"}')
    assert "label_names names '2', which no row here has as its label (labels here, as named: negative, " \
           "positive)." in output
    assert "In the epoch table, val f1 is the F1 of 'positive', the positive class" in output  # not macro F1
    run_dir = run_dir_of(output)
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["negative", "positive"]
    answer = json.loads(ok("predict", run_dir, "good great", "--json"))
    assert answer["predictions"][0]["label"] in ("negative", "positive")
    evaluated = json.loads(ok("evaluate", run_dir, "--data", data, "--json"))["metrics"]
    assert evaluated["n"] == 120 and evaluated["every_row"]
    fails_with("label_names gives each label value a name (a string): 0 = 1 is not one", "check", "--data", data,
               "--set", f"model={tiny_model}", "--set", "label_names={0 = 1}")
    coded = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST))  # answers '0' and '4'
    fails_with(f"The runs name their labels differently ({run_dir.name}: negative, positive; {coded.name}: 0, 4), "
               "so their answers on", "compare", run_dir, coded, "--data", data)


def test_evaluate_scores_the_runs_test_rows_without_those_also_in_training(tmp_path, tiny_model):
    """tk run leaves out test rows whose text is also in the training data; tk evaluate used to score them all,
    so its numbers differed from the run's with nothing saying why."""
    data = write_tickets(tmp_path / "reviews.csv", header=("id", "text", "label"))
    test_file = write_tickets(tmp_path / "reviews-test.csv", 60, seed=5, header=("id", "text", "label"))
    with open(data, encoding="utf-8") as handle:
        copied = handle.read().splitlines()[1:3]  # two training rows, also put in the test file
    with open(test_file, "a", encoding="utf-8") as handle:
        handle.write("".join(f"9{line}\n" for line in copied))
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", "--set",
                            f"test_data={test_file}", *FAST))
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run_metrics["n"] == 60
    document = json.loads(ok("evaluate", run_dir, "--json"))
    evaluated = document["metrics"]
    assert evaluated["n"] == 60 and evaluated["accuracy"] == run_metrics["accuracy"]
    assert re.fullmatch(r"test-\d{8}-\d{6}\.json", Path(document["path"]).name)
    assert evaluated["split_description"] == "test split, the rows tk run scored" and not evaluated["every_row"]
    assert "Scoring the run's 60 test rows, as tk run did: of the test split's 62, 2 hold texts also in the " \
           "rows it trained or validated on. --split test scores all of them." in evaluated["notes"], evaluated["notes"]
    document = json.loads(ok("evaluate", run_dir, "--json", "--split", "test"))
    everything = document["metrics"]
    assert re.fullmatch(r"test-all-\d{8}-\d{6}\.json", Path(document["path"]).name)  # not taken for the run's
    assert everything["split_description"] == "test split, every row" and everything["every_row"]
    assert everything["n"] == 62 and any(note.startswith("WARNING: 2 of these 62 rows hold texts also in the "
                                                         "rows the run trained or validated on")
                                         for note in everything["notes"])


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


def test_a_model_folder_named_plainly_is_taken_as_from_pretrained_takes_it(tmp_path, monkeypatch):
    """--set model=tiny with a save_pretrained folder 'tiny' here was 'Unknown model', while the same message
    offered "a folder saved with save_pretrained"; only ./tiny worked."""
    from plugins.models.any import tk_resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text("{}")
    (tmp_path / "notes").mkdir()  # a folder that holds no model: still an unknown name
    assert tk_resolve_model(name="tiny", base=None).source == str((tmp_path / "tiny").resolve())
    assert tk_resolve_model(name="notes", base=None) is None and tk_resolve_model(name="nosuch", base=None) is None


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


# --------------------------------------------------------------------------
# What the classes of each split may be (issue 11's rule), and the splits tk makes
# --------------------------------------------------------------------------

def write_rows(path, rows, header=("id", "text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows((i, text, label) for i, (text, label) in enumerate(rows))
    return path


def test_a_given_test_split_lacking_a_class_is_a_warning_and_the_run_goes_on(tmp_path, tiny_model):
    folder = tmp_path / "tickets"
    folder.mkdir()
    write_rows(folder / "train.csv", keyword_rows(200, ("neg", "neutral", "pos"), seed=1))
    write_rows(folder / "test.csv", keyword_rows(40, ("neg", "pos"), seed=2))  # no 'neutral'
    output = ok("check", "--data", folder)
    assert "WARNING test: no rows of class 'neutral'" in output and "classes_absent" in output
    assert "recommended" in ok("analyze-lengths", "--data", folder, "--model", tiny_model).lower()
    output = ok("run", "--data", folder, "--set", f"model={tiny_model}", *FAST)
    assert "Data check: test: no rows of class 'neutral'" in output
    metrics = json.loads((run_dir_of(output) / "metrics.json").read_text())
    assert metrics["classes_absent"] == ["neutral"] and metrics["n"] <= 40
    # the same with test_data = "other.csv" beside one training file
    other = write_rows(tmp_path / "other.csv", keyword_rows(30, ("neg", "pos"), seed=3))
    output = ok("check", "--data", folder / "train.csv", "--set", f"test_data={other}")
    assert "WARNING test: no rows of class 'neutral'" in output


def test_a_class_training_never_saw_is_an_error_quoting_its_rows(pm, tmp_path):
    folder = tmp_path / "tickets"
    folder.mkdir()
    write_rows(folder / "train.csv", keyword_rows(60, ("neg", "pos"), seed=1))
    rows = keyword_rows(20, ("neg", "pos"), seed=2) + [("please look at this fraud", "fraud"),
                                                       ("another fraud case", "fraud")]
    write_rows(folder / "test.csv", rows)
    for command in ("check", "run"):
        result = fails_with("the test split has 2 rows of class 'fraud', which no row of the training split has",
                            command, "--data", folder, "--set", "model=minilm")
        assert "rows 21 'please look at this fraud', 22 'another fraud case'" in result.output
        assert "add training rows of that class" in result.output and "tk_label_mapping" not in result.output
        assert "Files: train train.csv, test test.csv." in result.output  # which file each split is
    # a plugin's dataset (labels declared, mapped by tk_label_mapping): the mapping may be the cause
    toy3 = tmp_path / "toy3"
    toy3.mkdir()
    write_rows(toy3 / "train.csv", keyword_rows(60, ("neg", "pos"), seed=1))
    write_rows(toy3 / "test.csv", keyword_rows(30, ("neg", "neutral", "pos"), seed=2))
    with pytest.raises(TkError, match="rows of class 'neutral', which no row of the training split has.*"
                                      "tk_label_mapping"):
        load_with_labels(pm, pm.dataset("toy3"), DataSource(toy3, "test", toy3))


def test_default_validation_size_is_a_tenth_of_the_training_rows_decided_after_parsing(pm, tmp_path):
    from toolkit.data.choose import data_task
    from toolkit.data.splits import make_splits
    from toolkit.tasks_file import load_config

    project = tmp_path / "project"
    project.mkdir()
    write_tickets(project / "tickets.csv", 395, header=("id", "text", "label"))  # 316 training rows
    (project / "tasks.toml").write_text('[tasks.tickets]\ndataset = "files"\ndata = "tickets.csv"\n'
                                        'model = "minilm"\n')  # the four-line task of docs/your-data.md
    task = load_config(project / "tasks.toml", pm).task("tickets")
    assert task.validation_size is None
    made = make_splits(load(pm, project / "tickets.csv", task)[1], task)
    splits = made.splits
    assert len(splits["validation"]) == 31 and len(splits["train"]) == 285 and len(splits["test"]) == 79
    assert "Validation: 31 of the 316 training rows (validation_size default: a tenth, at most 500)." in made.notes
    # 300 rows whose texts span three lines each: rows count, not lines (901 of them)
    multi = tmp_path / "multi.csv"
    write_rows(multi, [(text.replace(" ", "\n", 2), label) for text, label in keyword_rows(300, ("neg", "pos"))])
    task = data_task(str(multi), {}, tuple(pm.settings().values()))
    splits = make_splits(load(pm, multi, task)[1], task).splits
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [216, 24, 60]
    # 5,000 training rows and up: 500, as before; the data's own validation split: at most 500
    import datasets

    rows = datasets.Dataset.from_dict({"text": [f"text {i} good" for i in range(6000)],
                                       "label": [i % 2 for i in range(6000)]},
                                      features=datasets.Features(text=datasets.Value("string"),
                                                                 label=datasets.ClassLabel(names=["neg", "pos"])))
    made = make_splits(datasets.DatasetDict(train=rows), task).splits
    assert len(made["validation"]) == 480  # a tenth of the 4,800 left after the test hold-out of 1,200
    unseen = datasets.Dataset.from_dict({"text": [f"unseen {i}" for i in range(10)], "label": [0, 1] * 5},
                                        features=rows.features)  # a test split whose texts training lacks
    made = make_splits(datasets.DatasetDict(train=rows, test=unseen), task).splits
    assert len(made["validation"]) == 500
    own = make_splits(datasets.DatasetDict(train=rows.select(range(100)), validation=rows.select(range(1000, 1800)),
                                           test=rows.select(range(3000, 3010))), task).splits
    assert len(own["validation"]) == 500
    # an explicit validation_size stays as given, with its error when too large
    from toolkit.config import with_overrides

    with pytest.raises(TkError, match=r"cannot carve 500 validation rows from 240 training rows \(left after "
                                      r"holding out 60 as the test split: a 20% share, as eval_size is not set\). Lower "
                                      r"validation_size to at "
                                      "most 239, or add training rows"):
        make_splits(load(pm, multi, task)[1], with_overrides(task, {"validation_size": 500}))


def test_check_and_analyze_lengths_take_set_and_name_columns_both_ways(tmp_path, tiny_model):
    data = write_tickets(tmp_path / "tickets.csv")  # columns ticket_id, body, queue
    columns = ("--set", "text_column=body", "--set", "label_column=queue")
    assert "refunds" in ok("check", "--data", data, *columns)
    output = ok("check", "files", "--data", data, *columns)  # a dataset named, not a task: tk's defaults
    assert "As tk run splits it: train 173, validation 19, test 48 rows" in output
    plain = write_tickets(tmp_path / "plain.csv", header=("ticket_id", "text", "label"))
    assert "As tk run splits it" in ok("check", "files", "--data", plain)
    output = ok("analyze-lengths", "--data", data, *columns, "--model", tiny_model)
    assert "Histogram: lengths-tickets.png" in output and (tmp_path / "lengths-tickets.png").is_file()
    held_out = write_tickets(tmp_path / "held-out.csv")  # a separate test file: the test split's rows are its own
    output = ok("analyze-lengths", "--data", data, *columns, "--set", f"test_data={held_out}", "--split", "test",
                "--model", tiny_model)
    assert f"(test split, {held_out} (the task's test_data))" in output
    assert "Histogram: lengths-tickets-test.png" in output and (tmp_path / "lengths-tickets-test.png").is_file()
    result = fails_with("no label column found by name", "analyze-lengths", "--data", data, "--set",
                        "text_column=body", "--model", tiny_model)
    assert "--set label_column=NAME" in result.output
    # a name given that is not a column: that name, the columns, the closest one
    result = fails_with("label_column = 'queu' is not a column of", "check", "--data", data,
                        "--set", "text_column=body", "--set", "label_column=queu")
    assert "Columns: ticket_id, body, queue. Did you mean 'queue'?" in result.output
    assert 'label_column = "NAME" in the task, or --set label_column=NAME' in result.output
    result = fails_with("text_column = 'body' is not a column of", "run", "--data", plain,
                        "--set", "text_column=body")
    assert "Columns: ticket_id, text, label." in result.output and "expected one of" not in result.output



def test_check_says_which_rows_tk_run_would_leave_out_of_its_splits(tmp_path):
    rows = keyword_rows(120, ("neg", "pos"), seed=3)
    data = write_rows(tmp_path / "twice.csv", rows + rows)  # every text twice: validation twins are in train
    output = ok("check", "--data", data)
    assert re.search(r"As tk run splits it: [^\n]*\n(  [^\n]*\n)*  validation: left out \d+ rows whose text is also "
                     "in the training data", output), output
    document = json.loads(ok("check", "--data", data, "--json"))
    assert any(note.startswith("validation: left out") for note in document["split_notes"])

def unique_rows(n, seed=0):
    """``n`` keyword rows whose texts all differ (a serial word each)."""
    return [(f"{text} serial{i}", label) for i, (text, label) in enumerate(keyword_rows(n, ("neg", "pos"), seed))]


def test_run_names_the_rows_it_leaves_out_as_numbered_in_the_file_and_saves_them_all(tmp_path, tiny_model):
    rows = [("no label here", ""), ("", "neg")] + unique_rows(200)  # rows 1-2 left out when loading: not renumbered
    rows += [(text.upper(), label) for text, label in rows[2:32]]  # rows 203-232 repeat rows 3-32
    data = write_rows(tmp_path / "twice.csv", rows)
    repeated = {text.lower() for text, _ in rows[2:32]}
    output = ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST)
    run_dir = run_dir_of(output)
    left_out = json.loads((run_dir / "left_out.json").read_text())
    said = re.search(rf"Every row left out of {' and '.join(left_out)}: (\S+)", output)
    assert said and Path(said[1]).resolve() == run_dir / "left_out.json", output
    for split, earlier in (("validation", "training data"), ("test", "training or validation data")):
        if split not in left_out:
            continue
        numbers = left_out[split]["rows"]
        assert left_out[split]["rows_of"] == "train" and numbers == sorted(numbers)
        # each number is the file's data row (from 1, header not counted) whose text the run trains or validates on
        assert all(rows[n - 1][0].lower() in repeated for n in numbers), numbers
        listed = [str(n) for n in numbers]  # the first five named, then how many more
        shown = (f"rows {', '.join(listed[:5])} and {len(listed) - 5} more" if len(listed) > 5 else
                 f"rows {', '.join(listed[:-1])} and {listed[-1]}" if len(listed) > 1 else f"row {listed[0]}")
        assert (f"{split}: left out {len(numbers)} {'row' if len(numbers) == 1 else 'rows'} whose text is also in "
                f"the {earlier}: train {shown}.") in output, output
    assert "test" in left_out
    predictions = list(csv.DictReader(open(run_dir / "predictions.csv", encoding="utf-8")))
    scored = {row["text"].lower() for row in predictions}
    assert not scored & {rows[n - 1][0].lower() for n in left_out["test"]["rows"]}
    # each prediction names its row in the file (the test split is held out of it), which holds that text
    assert all(rows[int(row["row"]) - 1][0] == row["text"] for row in predictions) and len(predictions) > 10
    mistakes = json.loads((run_dir / "metrics.json").read_text())["worst_mistakes"]  # the report's table too
    assert mistakes and all(rows[m["row"] - 1][0][:500] == m["text"] for m in mistakes)
    assert "<th>row</th><th>text</th><th>true</th>" in (run_dir / "report.html").read_text()
    # tk check makes the same splits, names the same rows, and lists them all under left_out
    document = json.loads(ok("check", "--data", data, "--json"))
    assert document["left_out"] == left_out


def test_check_names_rows_as_numbered_in_the_file(tmp_path):
    rows = [("no label here", ""), ("", "neg"), ("a fine film", "pos")] + unique_rows(60)
    rows += [("A  fine FILM", "pos"), ("a fine film", "pos")]  # rows 64 and 65 repeat row 3
    data = write_rows(tmp_path / "reviews.csv", rows)
    output = ok("check", "--data", data)
    assert "e.g. rows 3 and 65: 'a fine film'" in output, output
    assert "e.g. rows 3, 64 and 65: 'a fine film'" in output, output
    assert "Rows are numbered as in the file each split was read from (a Hub dataset: its split), from 1, a header " \
           "line not counted." in output
    folder = tmp_path / "folder"  # a test file whose row 3 is a training text: named by its row in test.csv
    folder.mkdir()
    write_rows(folder / "train.csv", rows[2:])
    write_rows(folder / "test.csv", [("fresh words", "pos"), ("", "neg"), ("A fine film", "pos")] + unique_rows(20, 1))
    output = ok("check", "--data", folder)
    assert "e.g. test row 3: 'A fine film'" in output, output
    assert "test: left out 1 row whose text is also in the training or validation data: test row 3." in output


def test_a_file_with_no_labels_or_no_rows_says_so(tmp_path):
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("text,label\n" + "".join(f"text {i},\n" for i in range(30)))
    result = fails_with("unlabelled.csv: no row has a label in column 'label' (30 rows read).", "check",
                        "--data", unlabelled)
    assert "tk_dataset_labels" not in result.output
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    result = fails_with("header.csv: the file has a header row (text, label) but no rows of data.", "check",
                        "--data", header_only)
    assert "corresponds to no data" not in result.output


def test_rare_classes_are_warned_per_split_after_splitting(tmp_path, tiny_model):
    from toolkit.data.checks import RARE_CLASS_ROWS

    rows = keyword_rows(240, ("neg", "pos"), seed=1) + keyword_rows(12, ("neutral",), seed=2)
    data = write_rows(tmp_path / "reviews.csv", rows)  # 12 'neutral' rows in all: about 2 in the test hold-out
    output = ok("check", "--data", data)
    assert "files: train 252 rows\nAs tk run splits it: train 182, validation 20, test 50 rows" in output
    assert re.search(rf"WARNING test: 1 class has fewer than {RARE_CLASS_ROWS} rows: neutral \(\d rows?\)\. Its "
                     r"per-class scores have very wide intervals", output), output
    assert re.search(r"WARNING train: 1 class has fewer than 10 rows: neutral \(\d rows?\)\. The model learns it "
                     "from few examples", output), output  # 12 in the file: not rare before splitting
    output = ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST)
    assert re.search(r"Data check: test: 1 class has fewer than 10 rows: neutral \(\d rows?\)", output), output
    manifest = json.loads((run_dir_of(output) / "manifest.json").read_text())
    assert manifest["data_checks"]["split_rows"] == {"train": 182, "validation": 20, "test": 50}
    assert any(f["check"] == "rare_classes" and f["message"].startswith("test:")
               for f in manifest["data_checks"]["findings"])
    card = (run_dir_of(output) / "model" / "README.md").read_text()  # unset sizes say what their default gave
    assert "| validation_size | not set (20 rows used) |" in card and "| eval_size | not set (50 rows used) |" in card
    assert "film" not in card  # the usage example is not a movie review for data of any kind


def test_hints_name_options_and_commands_the_command_has(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "status.json").write_text('{"status": "complete"}')
    (run / "model" / "config.json").write_text("{}")
    for command in (("predict", run / "model", "hi"), ("evaluate", run / "model"), ("export", run / "model")):
        result = fails_with(f"{run / 'model'} is the model folder inside the run {run}; pass the run folder: {run}.",
                            *command)
        assert "damaged" not in result.output and "incomplete" not in result.output
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "status.json").write_text('{"status": "interrupted"}')
    (interrupted / "config.json").write_text('{"task": {}}')
    assert "--allow-incomplete" in fails_with("tk run --resume", "predict", interrupted, "hi").output
    for command in ("export", "serve", "audit"):  # no --allow-incomplete there: not named
        result = tk(command, interrupted)
        assert result.exit_code == 1 and "--allow-incomplete" not in result.output, result.output
    cv = tmp_path / "cv"
    cv.mkdir()
    (cv / "status.json").write_text('{"status": "interrupted"}')
    (cv / "config.json").write_text('{"kind": "cv", "task": {}}')
    for command in (("predict", cv, "hi"), ("evaluate", cv)):
        result = fails_with(f"Finish it first: tk cv --resume {cv}.", *command)
        assert "tk run --resume" not in result.output
    (cv / "status.json").write_text('{"status": "complete"}')
    for command in (("predict", cv, "hi"), ("evaluate", cv)):
        result = fails_with(f"{cv} is a tk cv folder: it has no single model to use", *command)
        assert "missing" not in result.output and "damaged" not in result.output


def test_small_messages(tmp_path):
    from toolkit.data.findings import CheckReport, Finding, format_report

    fails_with("runs/nosuch: no such folder. tk list --runs shows the run folders.", "predict", "runs/nosuch", "hi")
    fails_with("runs/nosuch: no such folder.", "evaluate", "runs/nosuch")
    empty = tk("predict", "runs/nosuch", "fine", " ")  # checked before the run is even looked for
    assert empty.exit_code == 2 and "Text 2 is empty." in empty.output, empty.output
    (tmp_path / "runs" / "a").mkdir(parents=True)
    result = fails_with("--data: nosuch.csv does not exist.", "evaluate", "runs/a", "--data", "nosuch.csv")
    assert "leave --data out to score the run's own data" in result.output and "the Hub" not in result.output
    report = CheckReport("d", {"train": 3}, [Finding("html", "warning", "train: html")])
    assert format_report(report).endswith("\n1 warning.")


def test_no_command_reads_a_column_row_by_row(tmp_path, tiny_model, engine, monkeypatch):
    """Iterating a datasets Column (or np.asarray on one) reads row by row: 16.6 s for 1.6M labels, 0.05 s from a
    slice, and a 400,000-row CSV took 97-103 s to prepare for training instead of 17-18 s. tk check, tk run (each
    engine) and tk evaluate read every column at once."""
    import traceback

    import datasets.arrow_dataset

    read_by_row = []
    iterate = datasets.arrow_dataset.Column.__iter__

    def recorded(column):
        ours = [f"{frame.filename.split('/')[-1]}:{frame.lineno}" for frame in traceback.extract_stack()[:-1]
                if "/toolkit/" in frame.filename or "/plugins/" in frame.filename]
        read_by_row.extend(ours[-1:])
        return iterate(column)

    monkeypatch.setattr(datasets.arrow_dataset.Column, "__iter__", recorded)
    data = write_tickets(tmp_path / "tickets.csv", header=("id", "text", "label"))
    ok("check", "--data", data)
    run_dir = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", "--set", f"engine={engine}",
                            *FAST))
    ok("evaluate", run_dir)
    ok("evaluate", run_dir, "--data", write_tickets(tmp_path / "more.csv", n=60, seed=1, header=("id", "text", "label")))
    assert read_by_row == []


def test_a_data_fingerprint_is_the_one_earlier_versions_recorded(monkeypatch):
    """Hashed a slice at a time: the digest of every row framed as its length-prefixed label and text, and, for
    runs saved before the framing, every row as "label<TAB>text<NEWLINE>" (framed=False) still matches."""
    import hashlib

    import datasets

    from toolkit.runs import artifacts

    texts, labels = [f"text {i} é" for i in range(10)], [i % 3 for i in range(10)]
    split = datasets.Dataset.from_dict({"text": texts, "label": labels})
    row_by_row = hashlib.sha256()
    for text, label in zip(texts, labels):
        row_by_row.update(f"{label}\t{text}\n".encode())
    framed = hashlib.sha256()
    for text, label in zip(texts, labels):
        framed.update(f"{len(str(label))}:{label}{len(text)}:{text}".encode())
    monkeypatch.setattr(artifacts, "FINGERPRINT_ROWS", 3)  # several slices, the last one short
    assert artifacts.fingerprint({"train": split}, framed=False) == {
        "train": {"rows": 10, "sha256": row_by_row.hexdigest()[:16]}}
    assert artifacts.fingerprint({"train": split}) == {
        "train": {"rows": 10, "sha256": framed.hexdigest()[:16], "framing": "length-prefixed"}}


def test_compare_says_when_runs_named_alike_used_other_data(project, tiny_model, monkeypatch):
    """A run of tk run --data toy.csv made where no tasks.toml had a task 'toy' is named toy-*, like the toy
    task's runs: tk compare runs/toy-* says that they were trained on different data; where one file changed
    between runs, that they share the name but not the data."""
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    data = write_tickets(elsewhere / "toy.csv", header=("id", "text", "label"))
    monkeypatch.chdir(elsewhere)
    first = run_dir_of(ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST, "--output", project / "runs"))
    monkeypatch.chdir(project)
    second = run_dir_of(ok("run", "toy", "--set", "epochs=1", "--output", project / "runs"))
    assert first.name.startswith("toy-") and second.name.startswith("toy-")
    output = ok("compare", first, second)
    assert (f"task 'toy': these runs were trained on different data ({first.name} on {data.resolve()}; "
            f"{second.name} on {(project / 'toy-data').resolve()}): a difference between them is the data's as much "
            "as the settings'.") in output
    assert f"data={json.dumps(str(data.resolve()))}" in output  # under the settings that differ, as resolved
    document = json.loads(ok("compare", first, second, "--json"))
    assert any(note.startswith("task 'toy': these runs were trained on different data") for note in document["notes"])
    assert "different data" not in ok("compare", second, second)
    # the same file, changed between runs (manifest.json's source fingerprint); unrecorded (older runs): no note
    from toolkit.runs.compare import RunSummary, data_notes

    def run(label, fingerprint):
        return RunSummary(label, {}, None, None, None, {"name": "toy"}, "/data/toy.csv", fingerprint)

    assert data_notes([run("a", "train 1a"), run("b", "train 2b")]) == [
        "task 'toy': these runs share its name but not their data (a on /data/toy.csv (data fingerprint train 1a); "
        "b on /data/toy.csv (data fingerprint train 2b)), so they are not runs of one task; compare runs of the "
        "same data."]
    assert data_notes([run("a", "train 1a"), run("b", None)]) == []


def test_a_file_named_like_a_task_of_tasks_toml_gets_a_task_name_of_its_own(project, tiny_model):
    """runs/toy-* are the toy task's; tk run --data toy.csv used to add its runs there, and tk compare mixed them."""
    data = write_tickets(project / "toy.csv", header=("id", "text", "label"))
    output = ok("run", "--data", data, "--set", f"model={tiny_model}", *FAST)
    assert "Task 'toy-data': dataset files" in output and run_dir_of(output).name.startswith("toy-data-")
    assert "tasks.toml has a task 'toy', whose runs these are not" in output
    elsewhere = write_tickets(project / "tickets.csv", header=("id", "text", "label"))
    assert "Task 'tickets': dataset files" in ok("run", "--data", elsewhere, "--set", f"model={tiny_model}", *FAST)


@pytest.mark.slow
def test_sweep_over_your_own_file(tmp_path, tiny_model):
    """docs/your-data.md suggests a class_weights sweep for your data: tk sweep --data FILE needs no task."""
    data = write_tickets(tmp_path / "tickets.csv", n=160)
    output = ok("sweep", "--data", data, "--set", "text_column=body", "--set", "label_column=queue",
                "--set", f"model={tiny_model}", *FAST, "--set", "linear_baseline=false",
                "--grid", "class_weights=none,balanced", "--output", tmp_path / "runs")
    assert "class_weights=none" in output and "class_weights=balanced" in output and "vs best" in output
    sweep = json.loads(next((tmp_path / "runs").glob("sweep-tickets-*/sweep.json")).read_text())
    assert [row["setting"] for row in sweep["rows"]] == [{"class_weights": "none"}, {"class_weights": "balanced"}]
    assert "Missing argument" not in tk("sweep", "--grid", "epochs=1").output
    assert "pass --data FILE to sweep over your own file" in tk("sweep", "--grid", "epochs=1").output


def test_the_rows_line_names_many_classes_by_their_smallest():
    import datasets

    from toolkit.runs.pipeline import trained_classes

    labels = tuple(f"c{i}" for i in range(8))
    split = datasets.Dataset.from_dict({"label": [0] * 5 + [1] * 9 + [3] * 2 + list(range(8)) * 3})
    assert trained_classes(split, labels) == "8 classes, the smallest 'c2' with 3"
    two = datasets.Dataset.from_dict({"label": [0, 1, 1]})
    assert trained_classes(two, ("neg", "pos")) == "neg 1, pos 2"
