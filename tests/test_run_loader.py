"""Only complete, intact runs answer: one loader reads every run folder (toolkit/runs/loader.py)."""

import json
import shutil

import pytest

from tests.helpers import TESTS, TOY_TASKS, fails_with, ok, tk
from toolkit.config import with_overrides
from toolkit.plugins import PluginManager
from toolkit.runs.loader import open_run
from toolkit.runs.pipeline import run_task
from toolkit.tasks_file import load_config
from toolkit.testing import write_keyword_dataset
from toolkit.training.progress import Progress

REFUSED = "is not a complete, intact tk run"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model):
    """One finished toy run (1 epoch) shared by the module; each test changes a copy."""
    root = tmp_path_factory.mktemp("loader")
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
def run(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


def tasks_file(finished):
    return finished.parent.parent / "tasks.toml"


def every_command(run, finished, *extra):
    """tk predict, evaluate, report and compare on ``run``: their results."""
    return [tk("predict", run, "good film", *extra), tk("--tasks", tasks_file(finished), "evaluate", run, *extra),
            tk("report", run, "--output", run.parent / "page.html", *extra), tk("compare", run, finished, *extra)]


def test_a_complete_run_answers_everywhere(run, finished):
    for result in every_command(run, finished):
        assert result.exit_code == 0, result.output
        assert "NOT A COMPLETE RUN" not in result.output


def test_a_failed_run_is_refused_by_every_command_then_allowed_and_marked(run, finished):
    (run / "status.json").write_text(json.dumps({"status": "failed", "error": "Training loss became nan"}))
    for result in every_command(run, finished):
        assert result.exit_code == 1 and REFUSED in result.output and "status is 'failed'" in result.output
        assert "--allow-incomplete" in result.output and len(result.output.strip().splitlines()) == 1
    predicted, evaluated, reported, compared = every_command(run, finished, "--allow-incomplete")
    for result in (predicted, evaluated, reported, compared):
        assert result.exit_code == 0, result.output
    assert "NOT A COMPLETE RUN" in predicted.output and "NOT A COMPLETE RUN" in evaluated.output
    saved = next((run / "evaluations").iterdir())
    assert "NOT A COMPLETE RUN" in json.loads(saved.read_text())["incomplete_run"]
    assert "NOT A COMPLETE RUN" in (run.parent / "page.html").read_text()
    assert f"{run.name} (INCOMPLETE)" in compared.output


def test_predict_json_marks_an_incomplete_run(run):
    (run / "status.json").write_text(json.dumps({"status": "running"}))
    result = tk("predict", run, "good film", "--allow-incomplete", "--json")
    assert result.exit_code == 0 and "NOT A COMPLETE RUN" in json.loads(result.stdout)["incomplete_run"]


def retype_first_tensor(weights):
    """F32 -> I32 in the safetensors header: same size, the weights read as integers (the issue's tampering)."""
    data = bytearray(weights.read_bytes())
    length = int.from_bytes(data[:8], "little")
    header = data[8:8 + length].decode()
    assert '"F32"' in header
    data[8:8 + length] = header.replace('"F32"', '"I32"', 1).encode()
    weights.write_bytes(bytes(data))


def swap_labels(config):
    values = json.loads(config.read_text())
    values["id2label"] = {"0": values["id2label"]["1"], "1": values["id2label"]["0"]}
    config.write_text(json.dumps(values, indent=2))


@pytest.mark.parametrize("damage, named", [
    (lambda run: retype_first_tensor(run / "model" / "model.safetensors"), "model/model.safetensors has changed"),
    (lambda run: swap_labels(run / "model" / "config.json"), "model/config.json has changed"),
    (lambda run: (run / "model" / "tokenizer.json").write_text(
        (run / "model" / "tokenizer.json").read_text().replace('"[UNK]"', '"[UNX]"')), "model/tokenizer.json has"),
    (lambda run: (run / "metrics.json").write_text(
        (run / "metrics.json").read_text().replace('"accuracy": 0.', '"accuracy": 1.', 1)), "metrics.json has changed"),
])
def test_a_file_changed_since_the_run_saved_it_is_named(run, finished, damage, named):
    damage(run)
    predicted = tk("predict", run, "good film")
    if "metrics.json" not in named:  # predict reads the model; the others read the results too
        assert predicted.exit_code == 1 and named in predicted.output, predicted.output
    compared = tk("compare", run, finished)
    if "model/" not in named:
        assert compared.exit_code == 1 and named in compared.output
    evaluated = tk("--tasks", tasks_file(finished), "evaluate", run)
    assert evaluated.exit_code == 1 and named in evaluated.output and REFUSED in evaluated.output


def test_tk_list_shows_a_complete_run_with_a_missing_file_as_damaged(run):
    (run / "predictions.csv").unlink()
    assert "damaged" in ok("list", "--runs", "--output", run.parent)


def test_the_loader_names_json_of_the_wrong_shape(run):
    from toolkit.errors import TkError
    from toolkit.runs.loader import record_checksums

    metrics = json.loads((run / "metrics.json").read_text())
    metrics["history"][0].pop("validation_loss")
    (run / "metrics.json").write_text(json.dumps(metrics))
    record_checksums(run)  # a file that matches its checksum can still be wrong: an older tk, a plugin
    with pytest.raises(TkError, match=r"metrics.json: history missing or not what tk wrote"):
        open_run(run)
    fails_with("metrics.json: history", "compare", run, run)


def test_every_key_a_run_writes_has_a_shape_the_loader_checks(finished):
    """A new key in config, manifest or metrics needs its entry in toolkit.runs.shapes: the loader can
    only refuse a damaged value of a key it knows."""
    from toolkit.runs.shapes import CONFIG, MANIFEST, METRICS, check_of

    for name, shape in (("config.json", CONFIG), ("manifest.json", MANIFEST), ("metrics.json", METRICS)):
        values = json.loads((finished / name).read_text())
        assert [key for key in values if check_of(shape, key) is None] == [], name
        assert [key for key, value in values.items() if not check_of(shape, key)(value)] == [], name


@pytest.mark.parametrize("name", ["config.json", "manifest.json", "metrics.json"])
def test_a_value_of_another_kind_is_named_by_the_loader(run, name):
    from toolkit.errors import TkError
    from toolkit.runs.loader import record_checksums
    from toolkit.runs.shapes import CONFIG, MANIFEST, METRICS, check_of

    shape = {"config.json": CONFIG, "manifest.json": MANIFEST, "metrics.json": METRICS}[name]
    saved = json.loads((run / name).read_text())
    for key in saved:
        for wrong in ([], "text", 42, None, {"x": 1}, True):
            if check_of(shape, key)(wrong):
                continue  # a kind tk writes there too (None for an optional key, say)
            (run / name).write_text(json.dumps({**saved, key: wrong}))
            record_checksums(run)
            with pytest.raises(TkError, match=rf"{name}: .*{key}.* not what tk wrote"):
                open_run(run)


def test_a_model_that_answers_nan_is_refused_not_printed(run):
    """Weights of nan (a diverged run saved by an older tk, say) with checksums that match them."""
    from safetensors.torch import load_file, save_file

    from toolkit.runs.loader import record_checksums

    weights = run / "model" / "model.safetensors"
    tensors = load_file(weights)
    name = next(key for key in tensors if "classifier" in key and key.endswith("bias"))
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    record_checksums(run)
    result = fails_with("the model answers nan", "predict", run, "good film")
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


def test_an_unreadable_model_file_is_one_line(run, monkeypatch):
    import errno

    from toolkit.runs import loader

    real = loader.sha256_of

    def unreadable(path):
        if path.name == "model.safetensors":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(loader, "sha256_of", unreadable)  # the tests run as root, where chmod stops nothing
    fails_with("model/model.safetensors: cannot read it (Permission denied)", "predict", run, "good film")


@pytest.mark.parametrize("status", ['"complete"', "null", "[]", "42", '{"status": null}', '{"status": ["complete"]}',
                                    '{"status": 5}', '{"status": "finished"}'])
def test_tk_list_shows_a_status_file_of_the_wrong_shape_as_incomplete(run, status):
    (run / "status.json").write_text(status)
    listed = ok("list", "--runs", "--output", run.parent, "--json")
    [row] = json.loads(listed)["runs"]
    assert row["status"] == "incomplete", row
    fails_with("its status is 'incomplete', not 'complete'", "compare", run, run)


def test_a_folder_that_was_never_a_run_is_not_called_damaged(tmp_path):
    """A folder of texts, or a sweep folder, has neither config.json nor status.json: not a damaged run."""
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("a review")
    result = fails_with("texts is not a tk run folder (no config.json or status.json). tk list --runs",
                        "predict", tmp_path / "texts", "x")
    assert "damaged" not in result.output
    sweep = tmp_path / "sweep"
    (sweep / "run-1").mkdir(parents=True)
    (sweep / "run-1" / "config.json").write_text("{}")
    fails_with("It holds run folders (run-1): name one.", "evaluate", sweep)
