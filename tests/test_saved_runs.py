"""Using a finished run folder that was damaged, is read-only, or is fed hostile input."""

import csv
import errno
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import TESTS, TOY_TASKS, fails_with, reseal, tk
from toolkit.config import with_overrides
from toolkit.plugins import PluginManager
from toolkit.runs.artifacts import write_predictions
from toolkit.runs.pipeline import run_task
from toolkit.tasks_file import load_config
from toolkit.testing import write_keyword_dataset
from toolkit.training.progress import Progress

DAMAGED = "The run folder is damaged"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model):
    """One finished toy run (1 epoch), shared by this module's tests; each test damages a copy."""
    root = tmp_path_factory.mktemp("finished")
    shutil.copy(TESTS / "toy_plugin.py", root / "toy_plugin.py")
    (root / "tasks.toml").write_text(TOY_TASKS)
    write_keyword_dataset(root / "toy-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TK_TOY_MODEL", str(tiny_model))
        patch.setenv("HF_HUB_OFFLINE", "1")
        pm = PluginManager().load(("toy_plugin",), root)
        task = with_overrides(load_config(root / "tasks.toml").task("toy"), {"epochs": 1})
        outcome = run_task(pm, task, output=root / "runs", base=root, progress=Progress(lambda t: None, bar=False))
    assert outcome.status == "complete"
    return outcome.run_dir


@pytest.fixture
def run_copy(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


def truncate(path, size):
    with open(path, "r+b") as handle:
        handle.truncate(size)


DAMAGE = {
    "no model config": (lambda m: (m / "config.json").unlink(), "model/config.json is missing. " + DAMAGED),
    "empty weights": (lambda m: truncate(m / "model.safetensors", 0), "model/model.safetensors is damaged"),
    "truncated weights": (lambda m: truncate(m / "model.safetensors", 5000), "model/model.safetensors is cut short"),
    "garbage tokenizer": (lambda m: (m / "tokenizer.json").write_text("garbage{"),
                          "model/tokenizer.json is not readable JSON"),
    "no tokenizer files": (lambda m: [(m / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
                           "model has no tokenizer vocabulary (tokenizer.json is missing). " + DAMAGED),
    "labels cut in the model config": (lambda m: (m / "config.json").write_text(json.dumps(
        {**json.loads((m / "config.json").read_text()), "id2label": {"0": "neg"}, "label2id": {"neg": 0}})),
                                      "model: cannot load the saved model"),
    "run config a list": (lambda m: (m.parent / "config.json").write_text("[1, 2]"),
                          "config.json is not a tk run config (expected an object with a 'task' table)"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_run_folder_names_the_file(run_copy, finished, damage):
    """A run saved before tk recorded checksums: the files themselves are checked (tests/test_run_loader.py
    checks a damaged file against its checksum)."""
    change, message = DAMAGE[damage]
    (run_copy / "checksums.json").unlink()
    change(run_copy / "model")
    fails_with(message, "predict", run_copy, "bad film")
    fails_with(message, "--tasks", finished.parent.parent / "tasks.toml", "evaluate", run_copy)


def test_tokenizer_that_does_not_match_the_model_is_refused(run_copy):
    from transformers import BertTokenizerFast

    # What transformers rebuilds when the vocabulary files are gone: the special tokens only.
    small = BertTokenizerFast(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (run_copy / "model" / name).unlink()
    small.save_pretrained(run_copy / "model")
    reseal(run_copy)  # the structural check, even where the checksums were recorded again
    fails_with("the tokenizer has 5 tokens but the model has 45 token embeddings; the tokenizer files do not belong "
               "to this model", "predict", run_copy, "bad film")


def test_evaluate_on_a_read_only_run_folder_prints_the_metrics_then_says_they_are_not_saved(run_copy, monkeypatch,
                                                                                           finished):
    import pathlib

    real_mkdir = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):  # the tests run as root, where chmod does not stop writes
        if self.name == "evaluations":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    result = fails_with("The metrics above are not saved: cannot write", "--tasks", finished.parent.parent / "tasks.toml",
                        "evaluate", run_copy)
    assert "accuracy" in result.output and "(Permission denied). Copy the run folder somewhere writable" in result.output
    assert not (run_copy / "evaluations").exists()


def test_predict_refuses_a_binary_file(run_copy, tmp_path):
    (tmp_path / "blob").write_bytes(bytes(range(256)) * 8)
    fails_with("--file ", "predict", run_copy, "--file", tmp_path / "blob")
    fails_with("not UTF-8 text (invalid start byte at byte 128); pass a text file with one text per line",
               "predict", run_copy, "--file", tmp_path / "blob")
    (tmp_path / "nul").write_bytes(b"good\x00film\n")
    fails_with("a binary file (it holds NUL bytes)", "predict", run_copy, "--file", tmp_path / "nul")
    (tmp_path / "blank.txt").write_text("\n  \n")
    result = tk("predict", run_copy, "--file", tmp_path / "blank.txt")
    assert result.exit_code == 2 and f"--file {tmp_path / 'blank.txt'} holds no text" in result.output



def test_predict_says_which_blank_lines_of_a_file_it_skipped(run_copy, tmp_path):
    (tmp_path / "texts.txt").write_text("good film\n\nbad film\n   \nfine\n")
    result = tk("predict", run_copy, "--file", tmp_path / "texts.txt", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["predictions"]) == 3 and document["skipped_lines"] == [2, 4]
    assert "skipped 2 blank lines (line 2, 4); one answer per other line, in order." in result.stderr

def test_predict_prints_no_terminal_control_codes(run_copy):
    result = tk("predict", run_copy, "great \x1b[2J\x1b]0;owned\x07film\x07\r\x9b31m\u202eend\tok")
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.endswith("great film31mend ok")
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in line)


def test_predict_exits_without_teardown_only_from_its_own_main(run_copy, monkeypatch, capsys):
    """tk predict ends with os._exit(0) once its answer is printed (the interpreter's teardown took about 1 s),
    but only the main() that ran it does: a command run in-process (CliRunner) must leave later ones alone."""
    import toolkit.cli

    exits = []
    monkeypatch.setattr(toolkit.cli.os, "_exit", exits.append)
    assert tk("predict", run_copy, "great film").exit_code == 0
    monkeypatch.setattr("sys.argv", ["tk", "--help"])
    with pytest.raises(SystemExit):
        toolkit.cli.main()
    assert exits == []
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["tk", "predict", str(run_copy), "great film"])
    with pytest.raises(SystemExit):  # os._exit is recorded, not called, so main goes on to click's exit
        toolkit.cli.main()
    assert exits == [0] and "great film" in capsys.readouterr().out


def test_loading_a_run_from_python_draws_no_library_bars_and_leaves_them_as_they_were(run_copy, capfd):
    from transformers.utils import logging

    from toolkit.longdocs import predict_long

    before = logging.is_progress_bar_enabled()
    logging.enable_progress_bar()  # as in a fresh Python session
    try:
        assert predict_long(run_copy, ["a text"])[0]["label"]
        assert logging.is_progress_bar_enabled()
    finally:
        (logging.enable_progress_bar if before else logging.disable_progress_bar)()
    assert "Loading weights" not in capfd.readouterr().err


def test_predictions_csv_neutralises_formulas(tmp_path):
    texts = ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tlead", "\rcr", "plain - text", "'quoted"]
    path = tmp_path / "predictions.csv"
    probabilities = np.tile([0.3, 0.7], (len(texts), 1))
    write_predictions(path, texts, np.zeros(len(texts), dtype=int), probabilities, ("-neg", "pos"))
    rows = list(csv.DictReader(path.open(newline="")))
    assert [r["text"] for r in rows] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2+3", "'@SUM(A1)", "'\tlead", "'\rcr",
                                         "plain - text", "'quoted"]
    assert rows[0]["label"] == "'-neg" and rows[0]["predicted"] == "pos" and rows[0]["confidence"] == "0.7000"


def test_disabled_metrics_plugin_is_refused(project, monkeypatch):
    monkeypatch.setenv("TK_DISABLE_PLUGINS", "metrics")
    fails_with("No plugin computes metrics (tk_compute_metrics): is the built-in 'metrics' plugin disabled?",
               "run", "toy", "--output", project / "runs")
    assert not (project / "runs").exists()


def test_tk_predict_answers_as_evaluate_without_importing_transformers(run_copy):
    """tk predict loads a BERT run as a bare model (toolkit.evaluation.bare_bert): the answers tk evaluate's
    transformers model gives, and a one-text start-up that pays for torch, not for transformers' imports."""
    from toolkit.runs.saved import load_run

    texts = ["bad film", "a good and wonderful story", "why was it so boring " * 20]
    bare, full = load_run(run_copy, bare=True), load_run(run_copy)
    assert type(bare.model).__module__ == "toolkit.evaluation.bare_bert"
    assert bare.labels == full.labels
    np.testing.assert_allclose(bare.probabilities(texts), full.probabilities(texts), atol=1e-3)

    script = ("import os, sys\nfrom toolkit.cli import main\nexit_now = os._exit\n"
              "os._exit = lambda code: (print('transformers' in sys.modules, file=sys.stderr), exit_now(code))\n"
              "sys.argv = ['tk', 'predict', sys.argv[1], 'bad film', '--json']\nmain()")
    result = subprocess.run([sys.executable, "-c", script, str(run_copy)], capture_output=True, text=True,
                            cwd=TESTS.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] in full.labels
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr
