"""Bad input never crashes, an interrupted run resumes to the same result, no result is lost."""

import errno
import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import fails_with, ok, tk
from toolkit.data.labels import _as_int, apply_label_mapping
from toolkit.errors import TkError
from toolkit.records import DatasetInfo, LabelMapping
from toolkit.runs import folders as runs
from toolkit.training.progress import Progress


def test_unknown_dataset_names_file_task_and_key(project):
    tasks = project / "tasks.toml"
    tasks.write_text(tasks.read_text().replace('dataset = "toy"\n', 'dataset = "tyo"\n', 1))
    fails_with("tasks.toml: task 'toy', key 'dataset': Unknown dataset 'tyo'. Did you mean 'toy'?", "run", "toy")


def test_a_bad_value_from_set_is_said_to_come_from_set_not_from_tasks_toml(project):
    """tasks.toml holds a good value, or none: naming it sends the user to a file that is right."""
    for key, value, said in [("model", "tiyn", "--set: task 'toy', key 'model': Unknown model 'tiyn'."),
                             ("dataset", "tyo", "--set: task 'toy', key 'dataset': Unknown dataset 'tyo'."),
                             ("learning_rate", "abc", "--set: task 'toy': key 'learning_rate' must be a number"),
                             ("epochs", "-1", "--set: task 'toy': key 'epochs' must not be negative, got -1.")]:
        for command in ("run", "check"):
            result = fails_with(f"Error: {said}", command, "toy", "--set", f"{key}={value}")
            assert "tasks.toml" not in result.output, result.output
    fails_with("--set: task 'toy', key 'positive_label': 'yes' is not a label of dataset 'toy'.", "run", "toy",
               "--set", "positive_label=yes")
    fails_with("Error: --set: task 'toy': select_on = \"test\" picks epochs on the scored rows", "cv", "toy",
               "--set", "select_on=test")
    tasks = project / "tasks.toml"  # a bad value of the file's, with another key --set: the file is named
    tasks.write_text(tasks.read_text().replace('model = "tiny"', 'model = "tiyn"', 1))
    fails_with("Error: tasks.toml: task 'toy', key 'model': Unknown model 'tiyn'.", "run", "toy", "--set", "epochs=1")


def test_check_and_analyze_lengths_name_the_task_and_key_of_an_unknown_name(project):
    fails_with("--set: task 'toy', key 'dataset': Unknown dataset 'tyo'. Did you mean 'toy'?",
               "check", "toy", "--set", "dataset=tyo")
    fails_with("task 'toy', key 'model': Unknown model 'tiyn'. Did you mean 'tiny'?",
               "analyze-lengths", "toy", "--set", "model=tiyn")
    fails_with("No task or dataset 'toyy'. Did you mean 'toy'? Tasks in tasks.toml: ", "check", "toyy")


def test_unknown_model_names_file_task_and_key(project):
    fails_with("task 'toy', key 'model': Unknown model 'tiyn'. Did you mean 'tiny'?", "run", "toy", "--set", "model=tiyn")


def test_unreadable_data_path(project, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if "toy-data" in str(path) else real_access(path, mode))
    fails_with("is not readable", "run", "toy", "--data", project / "toy-data")


def test_max_length_above_the_model_limit(project):
    fails_with("max_length = 512 is above the 128 tokens model 'tiny' can take", "run", "toy", "--set", "max_length=512")


@pytest.mark.parametrize("length", [1, 2])
def test_max_length_below_the_special_tokens(project, length):
    fails_with(f"max_length = {length} leaves no room for text: model 'tiny' adds 2 special tokens to every text. "
               "Use --set max_length=3 or more", "run", "toy", "--set", f"max_length={length}")


def test_empty_texts_and_rows_with_no_label_are_left_out_and_named(project):
    train = project / "toy-data" / "train.csv"
    rows = len(train.read_text().splitlines()) - 1  # data rows, the header line not counted
    train.write_text(train.read_text() + '"   ",neg\n"",pos\n')
    result = tk("run", "toy", "--set", "epochs=1")
    assert result.exit_code == 0, result.output
    assert f"train: left out 2 empty or whitespace-only texts: rows {rows + 1} and {rows + 2}." in result.output
    data = project / "own.csv"  # a file of the user's own: a row with no label is left out too
    data.write_text("text,label\n" + "".join(f"film {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40))
                    + "good film,\n")
    assert "train: left out 1 row with no label: row 41." in tk("check", "--data", data).output


def test_dataset_empty_after_filtering(project):
    (project / "toy-data" / "train.csv").write_text('text,label\n" ",neg\n"",pos\n')
    fails_with("The train split has no rows with text", "run", "toy")


def test_test_split_missing_a_class_is_a_warning(project):
    (project / "toy-data" / "test.csv").write_text("text,label\ngood film,pos\ngreat film,pos\n")
    output = ok("check", "toy")
    assert "WARNING test: no rows of class 'neg'. The test numbers leave it out" in output


def test_output_folder_not_writable(project):
    (project / "a-file").write_text("")
    fails_with("Cannot create the output folder", "run", "toy", "--output", project / "a-file" / "runs")


def test_tune_output_that_is_a_file_or_cannot_be_made_is_one_line(project):
    pytest.importorskip("optuna")
    (project / "a-file").write_text("data")
    fails_with("The output folder a-file is a file, not a folder. Pass --output DIR.", "tune", "toy",
               "--output", "a-file", "--trials", "1")
    fails_with("Cannot create the output folder /proc/tk-tune", "tune", "toy", "--output", "/proc/tk-tune",
               "--trials", "1")
    assert (project / "a-file").read_text() == "data"


def test_out_of_memory_stops_with_advice(project, monkeypatch):
    from plugins.engines.eager.step import EagerSteps

    real, steps = EagerSteps.train_step, []

    def out_of_memory_in_epoch_2(self, rows, width):
        steps.append(width)
        if len(steps) == 25:  # 20 steps an epoch
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(self, rows, width)

    monkeypatch.setattr(EagerSteps, "train_step", out_of_memory_in_epoch_2)
    result = fails_with("Out of memory training with batch_size = 8", "run", "toy", "--output", project / "runs")
    assert "--set batch_size=4" in result.output and "the last finished epoch is saved" in result.output
    run_dir = next((project / "runs").iterdir())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    assert (run_dir / "checkpoints" / "checkpoint-20" / "training_state.pt").is_file()


def test_full_disk_while_saving_keeps_earlier_files(project, monkeypatch):
    real_replace = os.replace

    def disk_full(src, dst):
        if str(dst).endswith("metrics.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full)
    fails_with("The disk is full: could not save", "run", "toy", "--set", "epochs=1", "--output", project / "runs")
    run_dir = next((project / "runs").iterdir())
    assert json.loads((run_dir / "config.json").read_text())["task"]["name"] == "toy"
    assert (run_dir / "model" / "config.json").exists()
    assert not (run_dir / "metrics.json").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert runs.run_status(run_dir) == "failed"


def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    runs.write_json(target, {"accuracy": 0.5})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(TkError):
        runs.write_json(target, {"accuracy": 0.9})
    assert json.loads(target.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_files_are_strict_with_null_for_non_finite_numbers(tmp_path):
    import numpy as np

    def refuse(name):
        raise ValueError(f"{name} in a JSON file")

    target = tmp_path / "metrics.json"
    runs.write_json(target, {"accuracy": float("nan"), "ci": [float("inf"), -float("inf"), 0.5],
                             "nested": {"f1": np.float32("nan"), "n": np.int64(3), "arr": np.array([np.nan, 1.0])}})
    data = json.loads(target.read_text(), parse_constant=refuse)
    assert data == {"accuracy": None, "ci": [None, None, 0.5], "nested": {"f1": None, "n": 3, "arr": [None, 1.0]}}


@pytest.mark.parametrize("name", ["../../escape", "/tmp/escape", "..", ".hidden", "a/b"])
def test_task_name_cannot_leave_the_output_folder(project, name):
    (project / "tasks.toml").write_text((project / "tasks.toml").read_text() + f'\n[tasks."{name}"]\ndataset = "toy"\n')
    fails_with(f"Task name {name!r} cannot name a run folder: use letters, digits", "run", name,
               "--output", project / "runs")
    assert not (project / "runs").exists()
    with pytest.raises(TkError, match="cannot name a run folder"):
        runs.new_run_dir(project / "runs", name)
    assert not list(project.parent.glob("escape*")) and not Path("/tmp/escape").exists()
    with pytest.raises(TkError, match="cannot name a run folder"):
        runs.new_run_dir(project / "runs", "")


def test_concurrent_runs_never_share_a_folder(tmp_path):
    made = []
    threads = [threading.Thread(target=lambda: made.append(runs.new_run_dir(tmp_path, "t"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 8


@pytest.mark.slow
def test_cli_interrupt_prints_resume_command_and_resume_finishes(project, monkeypatch):
    calls = []

    def advance(self):
        calls.append(1)
        if len(calls) == 25:
            os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(Progress, "advance", advance)
        result = tk("run", "toy", "--output", project / "runs")
    assert result.exit_code == 130
    assert "tk run --resume" in result.output
    run_dir = next((project / "runs").iterdir())
    assert "interrupted" in tk("list", "--runs", "--output", project / "runs").output
    result = tk("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "complete" in tk("list", "--runs", "--output", project / "runs").output
    fails_with("already complete", "run", "--resume", run_dir)


RAW = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.floats(allow_nan=False, allow_infinity=False), st.none())


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(RAW, min_size=1, max_size=20), mapping=st.dictionaries(RAW, st.one_of(st.integers(-1, 3), st.none()), max_size=6))
def test_random_labels_and_mappings_give_data_or_a_tkerror(labels, mapping):
    import datasets

    if len({type(v) for v in labels}) > 1:
        labels = [str(v) for v in labels]  # one Arrow type per column, as any loader produces
    splits = datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": ["t"] * len(labels), "label": labels}))
    try:
        mapped = apply_label_mapping(splits, DatasetInfo("d", ("a", "b")), LabelMapping(mapping))
    except TkError as error:
        assert str(error).startswith(("d:", ":")), error  # names the dataset (or its plugin)
        return
    ids, notes = mapped.value["train"]["label"], mapped.notes
    assert set(ids) == {0, 1}, "a trained split holds every class"
    kept = [mapping.get(v, mapping.get(_as_int(v))) for v in labels]
    assert ids == [k for k in kept if k is not None], "rows keep their order and their mapped class"
    assert (len(ids) < len(labels)) == any("left out" in note for note in notes)


def test_full_disk_while_saving_the_model_is_named_and_cleaned_up(tmp_path, tiny_model, monkeypatch):
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from toolkit.runs.artifacts import save_model

    def disk_full(*args, **kwargs):  # what safetensors raises: its own type, not OSError
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("transformers.modeling_utils.safe_save_file", disk_full)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    with pytest.raises(TkError, match=r"The disk is full: could not save .*/model\. Free some space"):
        save_model(model, AutoTokenizer.from_pretrained(tiny_model), tmp_path)
    assert list(tmp_path.iterdir()) == [], "the staging folder .model.partial was left behind"


def test_file_size_limit_is_a_clear_message(tmp_path):
    import subprocess
    import sys

    code = ("import resource, sys; from pathlib import Path; from toolkit.cli.group import file_size_limit_as_error; "
            "from toolkit.errors import TkError; from toolkit.saving import write_bytes; "
            "file_size_limit_as_error(); resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024)); "
            "exec('try:\\n write_bytes(Path(sys.argv[1]), bytes(1 << 20))\\nexcept TkError as e:\\n print(e)')")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.bin")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr  # not killed by SIGXFSZ
    assert (f"File size limit exceeded: could not save {tmp_path / 'big.bin'} (ulimit -f is 64 KiB). "
            "Raise it, e.g. ulimit -f unlimited") in out.stdout
    assert list(tmp_path.iterdir()) == []
