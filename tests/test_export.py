"""tk export --format onnx: the export answers as the run does (within the documented tolerance), a broken one is
refused with nothing left behind, and tk predict / tk evaluate / tk serve --onnx take the export folder."""

import json
import shutil

import pytest

from tests.helpers import TESTS, TOY_TASKS, tk, tk_json, toy_environment
from tests.served import Server
from tests.test_json_output import documented
from toolkit.config import with_overrides
from toolkit.plugins import PluginManager
from toolkit.runs.pipeline import run_task
from toolkit.tasks_file import load_config
from toolkit.testing import write_keyword_dataset
from toolkit.training.progress import Progress

pytestmark = pytest.mark.slow

FP32_TOLERANCE = 1e-3  # docs/deploy.md: a float32 export's probabilities against the run's float32 scoring
TEXTS = ["great film, wonderful", "an awful bad movie", "fine " * 200]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("export")
    with toy_environment(root, tiny_model):
        shutil.copy(TESTS / "toy_plugin.py", root / "toy_plugin.py")
        (root / "tasks.toml").write_text(TOY_TASKS)
        write_keyword_dataset(root / "toy-data")
        pm = PluginManager().load(("toy_plugin",), root)
        # bf16 off: tk scores in float32 on every CPU, so the float32 export must match it closely
        task = with_overrides(load_config(root / "tasks.toml").task("toy"), {"epochs": 2, "bf16": "off"})
        outcome = run_task(pm, task, output=root / "runs", base=root, progress=Progress(lambda t: None, bar=False))
        assert outcome.status == "complete"
        yield root, outcome.run_dir


@pytest.fixture
def run(project, monkeypatch):
    root, run_dir = project
    monkeypatch.chdir(root)  # tasks.toml there declares the toy plugin, whose dataset holds the test rows
    return run_dir


@pytest.fixture(scope="module")
def exported(project):
    root, run_dir = project
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        document, _ = tk_json("export", run_dir, "--format", "onnx")
    return document


def test_export_answers_as_the_run_does(exported, run):
    check = exported["check"]
    assert exported["folder"] == str(run / "onnx") and check["rows"] == 80
    assert check["agreement"] == 1.0 and check["disagreements"] == 0
    assert check["max_probability_difference"] < FP32_TOLERANCE
    assert check["metrics"]["run"]["accuracy"] == check["metrics"]["export"]["accuracy"]
    speed = check["texts_per_second"]  # 80 rows: two interleaved timing rounds of 40
    assert check["mcnemar_p"] == 1.0 and speed["run"] > 0 and speed["export"] > 0 and speed["rounds"] == 2
    assert 0 < speed["ratio_range"][0] <= speed["ratio_range"][1]
    assert set(exported) == documented("`tk export --json`")  # docs/json.md lists every field
    assert set(check) == documented("`tk export --json`", "check.")
    manifest = json.loads((run / "onnx" / "tk_export.json").read_text())
    assert manifest == {key: value for key, value in exported.items() if key != "folder"}
    assert manifest["labels"] == ["neg", "pos"] and manifest["task"]["max_length"] == 64
    assert {"model.onnx", "tokenizer.json", "config.json", "README.md"} <= {p.name for p in (run / "onnx").iterdir()}
    assert "How it was checked" in (run / "onnx" / "README.md").read_text()
    assert "tk scored the test split" in (run / "onnx" / "README.md").read_text()
    ours = tk_json("predict", run, *TEXTS)[0]["predictions"]
    theirs = tk_json("predict", run / "onnx", *TEXTS)[0]["predictions"]
    for a, b in zip(ours, theirs):
        assert a["label"] == b["label"]
        assert all(abs(a["probabilities"][k] - b["probabilities"][k]) <= FP32_TOLERANCE for k in a["probabilities"])


def test_the_onnx_model_has_dynamic_batch_and_sequence_axes(exported, run):
    import onnx

    graph = onnx.load(str(run / "onnx" / "model.onnx")).graph
    for node in graph.input:
        dims = node.type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, True], node  # named (dynamic), not fixed sizes


def operator_domains(path):
    import onnx

    return {node.domain or "ai.onnx" for node in onnx.load(str(path)).graph.node}


def test_the_graph_is_fused_for_onnx_runtime_unless_told_not_to(exported, run, tmp_path):
    assert {"attention", "skip_layer_normalization"} <= set(exported["fusions"])
    assert "com.microsoft" in operator_domains(run / "onnx" / "model.onnx")  # ONNX Runtime's fused operators
    assert "runs in ONNX Runtime only" in (run / "onnx" / "README.md").read_text()
    document, stderr = tk_json("export", run, "--no-fuse", "--output", tmp_path / "plain")
    assert document["fusions"] is None and "fused" not in stderr.splitlines()[0]
    assert operator_domains(tmp_path / "plain" / "model.onnx") == {"ai.onnx"}
    assert document["check"]["agreement"] == 1.0
    assert document["check"]["max_probability_difference"] < FP32_TOLERANCE


def test_evaluate_and_serve_take_the_export(exported, run, project):
    document, _ = tk_json("evaluate", run / "onnx")
    assert document["metrics"]["accuracy"] == exported["check"]["metrics"]["export"]["accuracy"]
    with Server(run, "--onnx", cwd=project[0]) as server:
        status, answer = server.request("POST", "/predict", {"texts": TEXTS})
        assert status == 200 and server.request("GET", "/metadata")[1]["backend"] == "onnx"
        predicted = tk_json("predict", run / "onnx", *TEXTS)[0]
        assert answer["predictions"] == predicted["predictions"]
        assert answer["run_dir"] == predicted["run_dir"] == str(run.resolve())  # the run exported, both ways
        assert answer["backend"] == predicted["backend"] == "onnx"  # an export's answers say they are
        assert server.stop() == 0


def test_int8_export_is_checked_and_written(run, tmp_path):
    document, stderr = tk_json("export", run, "--quantize", "int8", "--output", tmp_path / "int8",
                               "--check-data", "toy-data/test.csv")
    assert document["quantize"] == "int8" and document["check"]["agreement"] >= 0.99
    assert document["check"]["data_source"].endswith("test.csv (from --check-data)")
    assert "activations quantized per batch" in (tmp_path / "int8" / "README.md").read_text()
    assert "McNemar exact p" in stderr and "texts/s" in stderr
    assert tk_json("predict", tmp_path / "int8", "great film")[0]["predictions"][0]["label"] in ("neg", "pos")


def test_a_broken_export_is_refused_and_nothing_is_left(run, tmp_path, monkeypatch):
    """A graph whose classifier answers the opposite class (as an exporter bug would): under the floor."""
    import toolkit.runs.export

    exportable = toolkit.runs.export.exportable_model

    def broken(run_dir):
        model = exportable(run_dir)
        model.classifier.weight.data.neg_()
        model.classifier.bias.data.neg_()
        return model

    monkeypatch.setattr(toolkit.runs.export, "exportable_model", broken)
    result = tk("export", run, "--output", tmp_path / "broken")
    assert result.exit_code == 1
    assert "under the floor of 99% (--min-agreement): not written. Export with --no-fuse" in result.output
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its hidden staging folder
    result = tk("export", run, "--quantize", "int8", "--output", tmp_path / "broken-int8")
    assert result.exit_code == 1 and "not written. Export without --quantize (float32), or lower " \
        "--min-agreement where the accuracy and McNemar lines above show no loss" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_answers_nan_is_refused_not_printed(exported, run, tmp_path):
    """The classifier's bias set to nan in the graph (a damaged or hand-edited model.onnx): tk predict's one-line
    refusal, as for a run whose weights hold nan."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folder = shutil.copytree(run / "onnx", tmp_path / "onnx")
    graph = onnx.load(folder / "model.onnx")
    bias = next(tensor for tensor in graph.graph.initializer if "classifier" in tensor.name and "bias" in tensor.name)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) * np.float32("nan"), bias.name))
    onnx.save(graph, folder / "model.onnx")
    result = tk("predict", folder, "great film")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert f"{folder / 'model.onnx'}: the model answers nan" in result.output and "tk export" in result.output


def test_an_existing_output_and_a_missing_check_file_are_refused(exported, run, tmp_path):
    result = tk("export", run)
    assert result.exit_code == 1 and "already exists; remove it first, or pass --output PATH" in result.output
    result = tk("export", run, "--output", run / "onnx")
    assert result.exit_code == 1 and "already exists; remove it first, or name another folder with --output" \
        in result.output
    result = tk("export", run, "--check-data", tmp_path / "nope.csv", "--output", tmp_path / "x")
    assert result.exit_code == 1 and "--check-data" in result.output


def test_an_output_folder_that_cannot_be_made_is_one_line(run, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = tk("export", run, "--output", tmp_path / "a-file" / "onnx")
    assert result.exit_code == 1 and "The output folder" in result.output and "is a file, not a folder" in result.output
    result = tk("export", run, "--output", "/proc/tk-export")  # a folder that takes no new folder
    assert result.exit_code == 1 and "Cannot create the export in /proc" in result.output
    assert "--output PATH" in result.output


def test_an_export_where_a_run_is_needed_is_named_as_an_export(exported, run):
    """tk report, compare and export took an export folder for a damaged run ('its status is incomplete')."""
    for command in (("report", run / "onnx"), ("compare", run, run / "onnx")):
        said = tk(*command)
        assert said.exit_code == 1, said.output
        assert (f"{run / 'onnx'} is a tk export, not a run: tk predict, tk evaluate and tk serve take it; this "
                "command needs the run it was exported from") in said.output and "damaged" not in said.output


def test_the_check_says_why_a_metric_has_no_interval():
    from toolkit.runs.export_check import describe

    few = {"accuracy": 0.9, "accuracy_ci": None, "accuracy_ci_note": "n < 30", "f1": 0.8, "f1_ci": None,
           "f1_ci_note": "n < 30"}
    check = {"rows": 20, "agreement": 1.0, "disagreements": 0, "max_probability_difference": 1e-6,
             "mcnemar_p": 1.0, "texts_per_second": {"run": 10.0, "export": 20.0},
             "metrics": {"run": few, "export": {**few, "accuracy_ci": [0.7, 0.98]}}}
    lines = describe(check, "ONNX Runtime")
    assert lines[-1].endswith("(2.00x; one round, so no spread)")
    rounds = {**check, "texts_per_second": {"run": 10.0, "export": 20.0, "rounds": 4, "ratio_range": [1.8, 2.3]}}
    assert describe(rounds, "onnx")[-1].endswith("(2.00x; 1.80x to 2.30x over 4 interleaved rounds)")
    assert "int8 quantization moves probabilities" in describe({**check, "run_bf16": True}, "onnx-int8")[0]
    assert "bf16" not in lines[0] and "(the run scores in bf16 on this machine" in describe({**check, "run_bf16": True},
                                                                                         "ONNX Runtime")[0]
    assert lines[1].endswith("accuracy 0.900 (no interval: n < 30), macro F1 0.800 (no interval: n < 30)")
    assert "accuracy 0.900 [0.700, 0.980], macro F1 0.800 (no interval: n < 30)" in lines[2]
    binary = {**check, "metrics": {side: {**found, "positive_label": "pos"}
                                   for side, found in check["metrics"].items()}}
    assert "F1 of 'pos' 0.800" in describe(binary, "onnx")[1]  # the F1 tk run reports for two classes


def test_serve_onnx_on_a_run_without_a_default_export_says_how_to_serve_one_written_elsewhere(tmp_path):
    from toolkit.errors import TkError
    from toolkit.runs.exported import export_of

    with pytest.raises(TkError, match=r"written elsewhere with --output: name its folder \(tk serve FOLDER\)"):
        export_of(tmp_path)


def test_serve_onnx_prefers_the_float32_export_whose_answers_do_not_depend_on_the_batch(tmp_path):
    from toolkit.runs.exported import MANIFEST, export_of

    (tmp_path / "onnx-int8").mkdir()
    (tmp_path / "onnx-int8" / MANIFEST).write_text("{}")
    assert export_of(tmp_path) == tmp_path / "onnx-int8"  # the only export
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / MANIFEST).write_text("{}")
    assert export_of(tmp_path) == tmp_path / "onnx"
    assert export_of(tmp_path / "onnx-int8") == tmp_path / "onnx-int8"  # named: served as named
