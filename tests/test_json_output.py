"""--json on every command: stdout is one JSON document with the fields docs/json.md lists; progress, notes
and warnings go to stderr."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_project
from tests.helpers import TESTS, ok, runner, tk_json, toy_environment
from toolkit.cli import cli
from toolkit.runs.compare import verdict
from toolkit.training.progress import EPOCH_HEADER, Progress

DOC = (TESTS.parent / "docs" / "json.md").read_text()


def documented(title: str, prefix: str = "") -> set[str]:
    """The fields docs/json.md lists in section ``title`` one level below ``prefix`` (``runs[].``, ``metrics.``)."""
    section = DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    return {name[len(prefix):] for name in names
            if name.startswith(prefix) and not re.search(r"[.\[]", name[len(prefix):])}


def metrics_fields(metrics: dict) -> set[str]:
    """Its keys as docs/json.md names them: accuracy_ci, f1_ci_note, ... are NAME_ci, NAME_ci_note."""
    return {re.sub(r"^(accuracy|f1|precision|recall|f1_macro|f1_weighted)_ci", "NAME_ci", key) for key in metrics}


def command(name: str) -> str:
    return f"`tk {name} --json`"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """Two toy runs made with tk run --json (seeds 1 and 2, one epoch): [(document, stderr), ...]."""
    root = make_project(tmp_path_factory.mktemp("json-project"))
    with toy_environment(root, tiny_model):
        return [tk_json("run", "toy", "--set", "epochs=1", "--set", f"seed={seed}", "--output", root / "runs")
                for seed in (1, 2)]


def test_run_prints_its_metrics_json_and_progress_on_stderr(runs):
    document, stderr = runs[0]
    assert document["schema"] == "tk.run/1"
    assert set(document) == documented(command("run"))
    assert document["status"] == "complete"
    run_dir = Path(document["run_dir"])
    assert document["metrics"] == json.loads((run_dir / "metrics.json").read_text())
    assert metrics_fields(document["metrics"]) <= documented("metrics.json")
    assert {"accuracy", "accuracy_ci", "history", "baseline", "diagnosis"} <= set(document["metrics"])
    assert set(json.loads((run_dir / "config.json").read_text())) == documented("config.json")
    assert set(json.loads((run_dir / "left_out.json").read_text())) <= documented("left_out.json")
    for text in (EPOCH_HEADER, "Engine: eager", f"Run folder: {run_dir}"):
        assert text in stderr


@pytest.mark.slow
def test_run_json_in_a_real_process_keeps_stdout_clean(project, tiny_model):
    """A real process: library logging, warnings and tqdm bound to the true file descriptors show up here."""
    result = subprocess.run([sys.executable, "-m", "toolkit", "run", "toy", "--set", "epochs=1", "--json"],
                            cwd=project, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result.stdout)
    assert document["status"] == "complete" and Path(project / document["run_dir"]).is_dir()
    # the epoch table; no bar, as standard error is a pipe here (a terminal would get one)
    assert EPOCH_HEADER in result.stderr and "\r" not in result.stderr
    assert result.stdout.count("\n") == json.dumps(document, indent=2).count("\n") + 1  # nothing before or after


def test_an_interrupted_run_still_prints_its_document(project, monkeypatch):
    sent = []

    def sigterm_at_first_step(self):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))

    monkeypatch.setattr(Progress, "advance", sigterm_at_first_step)
    document, stderr = tk_json("run", "toy", "--set", "epochs=1", exit_code=130)
    assert document == {"schema": "tk.run/1", "run_dir": document["run_dir"], "status": "interrupted",
                        "metrics": None}
    assert (project / document["run_dir"] / "status.json").is_file()
    assert "Interrupted" in stderr


def test_an_error_prints_nothing_on_stdout(project):
    result = runner().invoke(cli, ["run", "toyy", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and "Did you mean 'toy'" in result.stderr
    assert result.stderr.count("\n") == 1


def test_evaluate_prints_the_saved_evaluation_and_its_path(runs):
    run_dir = runs[0][0]["run_dir"]
    tasks = Path(run_dir).parent.parent / "tasks.toml"  # the toy dataset comes from its plugin
    document, stderr = tk_json("evaluate", run_dir, "--tasks", tasks)
    assert document["schema"] == "tk.evaluate/1"
    assert set(document) == documented(command("evaluate"))
    assert json.loads(Path(document["path"]).read_text()) == document["metrics"]
    assert Path(document["path"]).parent == Path(run_dir) / "evaluations"
    assert metrics_fields(document["metrics"]) <= documented("metrics.json") | documented(command("evaluate"), "metrics.")
    assert document["metrics"]["split"] == "test" and document["metrics"]["n"] == 80
    assert "Data: " in stderr and "Test metrics" not in stderr  # the notes on stderr, no text report anywhere
    recorded = json.loads((Path(run_dir) / "metrics.json").read_text())["calibration"]  # the head's temperature
    if recorded["method"] == "temperature":
        assert document["metrics"]["temperature"] == pytest.approx(recorded["temperature"], abs=1e-6)
    else:
        assert document["metrics"]["temperature"] is None
    said = ok("evaluate", run_dir, "--tasks", tasks)
    whose = "the saved model's, with the temperature" if recorded["method"] == "temperature" else \
        "which has no temperature (calibration off)"
    assert "calibration: ECE " in said and whose in said
    selective = document["metrics"]["selective"]  # a t from the run's report is checked on other rows here
    assert [row["min_confidence"] for row in selective][:2] == [0.5, 0.6] and selective[0]["answered"] == 80
    assert "answering only when sure (tk predict --min-confidence t), on these rows:" in said
    assert f"t 0.50: 80 answered (100.0%), accuracy {selective[0]['accuracy']:.3f} [" in said


def test_compare_prints_the_rows_the_table_shows(runs):
    run_dirs = [document["run_dir"] for document, _ in runs]
    document, _ = tk_json("compare", *run_dirs)
    assert document["schema"] == "tk.compare/1"
    assert set(document) == documented(command("compare"))
    rows = document["runs"]
    assert [row["run_dir"] for row in rows] == run_dirs
    for row in rows:
        assert set(row) == documented(command("compare"), "runs[].")
        fields = documented(command("compare"), "runs[].vs_best.")  # optional: paired_rows, rows (runs of nearly one set), too_few_rows
        assert fields - {"paired_rows", "rows", "too_few_rows"} <= set(row["vs_best"]) <= fields
        assert isinstance(row["best_validation_loss"], float)
    best = [row for row in rows if row["vs_best"]["verdict"] == "best"]
    other = [row for row in rows if row["vs_best"]["verdict"] != "best"]
    assert len(best) == 1 and best[0]["vs_best"]["p"] is None and best[0]["vs_best"]["accuracy_difference"] == 0
    assert best[0]["vs_best"]["test"] == "none" and other[0]["vs_best"]["test"] == "mcnemar"  # balanced: accuracy
    p = other[0]["vs_best"]["p"]
    assert 0 <= p <= 1  # the same test rows: McNemar applies
    assert other[0]["vs_best"]["verdict"] == ("real" if p < document["significance"] else "noise")
    assert other[0]["vs_best"]["accuracy_difference"] <= 0
    assert [row["settings"] for row in rows] == [{"seed": 1}, {"seed": 2}]
    assert document["notes"][0].startswith("vs best: decided on accuracy") and len(document["notes"]) == 5
    assert document["notes"][2].startswith("Each run against its linear baseline")  # then one line per run
    assert document["scored_on"] == "test splits"
    table = ok("compare", *run_dirs)
    line = next(line for line in table.splitlines() if line.startswith(other[0]["label"]))
    assert line.rstrip().endswith(verdict(p))
    assert "Settings that differ:" in table and re.search(rf"{rows[0]['label']} +seed=1", table)


def test_predict_prints_every_class_probability(runs):
    run_dir = runs[0][0]["run_dir"]
    document, _ = tk_json("predict", run_dir, "good great", "awful")
    assert document["schema"] == "tk.predict/1"
    assert set(document) == documented(command("predict"))
    assert document["labels"] == ["neg", "pos"]
    assert [row["text"] for row in document["predictions"]] == ["good great", "awful"]
    for row in document["predictions"]:
        # labels, thresholds: multi-label only; abstained: with --min-confidence only; windows: chunks only
        assert set(row) == documented(command("predict"), "predictions[].") - {"labels", "thresholds", "abstained",
                                                                                "windows"}
        assert set(row["probabilities"]) == {"neg", "pos"} and row["label"] in {"neg", "pos"}
    assert document["backend"] == "pytorch"


def test_report_prints_the_page_path(runs, tmp_path):
    document, _ = tk_json("report", *(document["run_dir"] for document, _ in runs), "--output", tmp_path / "ab.html")
    assert document == {"schema": "tk.report/1", "path": str(tmp_path / "ab.html"),
                        "runs": [document["run_dir"] for document, _ in runs]}
    assert (tmp_path / "ab.html").stat().st_size > 1000


def test_list_runs(runs, tmp_path):
    folder = Path(runs[0][0]["run_dir"]).parent
    document, _ = tk_json("list", "--runs", "--output", folder)
    assert document["schema"] == "tk.list-runs/1"
    assert set(document) == documented("`tk list --runs --json`")
    assert [row["path"] for row in document["runs"]] == sorted(document["run_dir"] for document, _ in runs)
    for row in document["runs"]:
        assert set(row) == documented("`tk list --runs --json`", "runs[].")
        assert row["status"] == row["shown"] == "complete"
    empty, _ = tk_json("list", "--runs", "--output", tmp_path / "none")
    assert empty["runs"] == []


def test_list_prints_every_registry(project):
    document, _ = tk_json("list")
    assert document["schema"] == "tk.list/1"
    assert set(document) == documented(command("list"))
    assert [task["name"] for task in document["tasks"]] == ["toy", "toy3"]
    assert document["tasks"][0]["epochs"] == 4 and document["tasks"][0]["engine_resolved"] == "eager"
    names = {key: {row["name"] for row in document[key]} for key in ("datasets", "models", "engines", "settings",
                                                                    "plugins")}
    assert "toy" in names["datasets"] and "tiny" in names["models"] and "eager" in names["engines"]
    assert "fast_dropout" in names["settings"] and {"toy_plugin", "metrics"} <= names["plugins"]
    for key in ("datasets", "models", "engines", "settings", "plugins"):
        for row in document[key]:
            assert set(row) == documented(command("list"), f"{key}[]."), key
    assert document["engines"][0]["auto_priority"] >= document["engines"][-1]["auto_priority"]


def test_check_json_and_strict(project):
    document, stderr = tk_json("check", "toy")
    assert document["schema"] == "tk.check/1"
    assert set(document) == documented(command("check"))
    assert document["rows"] == {"train": 200, "test": 80}
    for finding in document["findings"]:
        assert set(finding) == documented(command("check"), "findings[].")
    assert "Source: " in stderr
    leaky = project / "leaky"
    leaky.mkdir()
    (leaky / "train.csv").write_text("text,label\na good film,pos\na bad film,neg\nfine,pos\nawful,neg\n")
    (leaky / "test.csv").write_text("text,label\na good film,pos\nterrible,neg\n")
    document, stderr = tk_json("check", "toy", "--data", leaky, "--set", "validation_size=1", "--set", "batch_size=2",
                               "--strict", exit_code=1)  # the JSON, then the error; a batch within its 3 rows
    assert any(f["check"] == "leakage_exact" and f["level"] == "warning" for f in document["findings"])
    assert "data check warnings (--strict)" in stderr


def test_analyze_lengths_json_writes_no_file_unless_asked(project):
    before = set(project.iterdir())
    document, _ = tk_json("analyze-lengths", "toy", "--model", "tiny")
    assert set(project.iterdir()) == before
    assert document["schema"] == "tk.analyze-lengths/1"
    assert set(document) == documented(command("analyze-lengths"))
    assert document["histogram"] is None and document["dataset"] == "toy" and document["split"] == "train"
    assert set(document["models"]["tiny"]) == documented(command("analyze-lengths"), "models.NAME.")
    asked, _ = tk_json("analyze-lengths", "toy", "--model", "tiny", "--histogram", project / "h.png")
    assert asked["histogram"] == str(project / "h.png")
    assert (project / "h.png").stat().st_size > 1000
    assert asked["models"]["tiny"]["count"] == document["models"]["tiny"]["count"] == 200
    text = ok("analyze-lengths", "toy", "--model", "tiny")  # without --json: the histogram by default, said where
    assert "Histogram: lengths-toy.png" in text and (project / "lengths-toy.png").stat().st_size > 1000


def test_sweep_prints_its_rows_with_settings_and_run_folders(project):
    document, stderr = tk_json("sweep", "toy", "--grid", "learning_rate=1e-3,2e-3", "--set", "epochs=1",
                               "--output", project / "runs")
    assert document["schema"] == "tk.sweep/1"
    assert set(document) == documented(command("sweep"))
    sweep_dir = Path(document["sweep_dir"])
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert {key: document[key] for key in saved} == saved  # the document is sweep.json and its folder
    assert [row["setting"] for row in document["rows"]] == [{"learning_rate": 0.001}, {"learning_rate": 0.002}]
    for row in document["rows"]:
        assert set(row) == documented(command("compare"), "runs[].") | {"setting"}
        assert Path(row["run_dir"]).parent == sweep_dir and (Path(row["run_dir"]) / "metrics.json").is_file()
    assert "[2/2] learning_rate=0.002" in stderr and EPOCH_HEADER in stderr
    assert document["table"][0].startswith("run ") and "vs best" in document["table"][0]


@pytest.mark.slow
def test_sweep_over_seeds_prints_mean_and_sd_rows(project):
    document, _ = tk_json("sweep", "toy", "--seeds", "2", "--set", "epochs=1", "--output", project / "runs")
    (row,) = document["rows"]
    assert set(row) <= documented(command("sweep"), "rows[].")
    assert row["setting"] == {} and row["seeds"] == 2 and len(row["run_dirs"]) == 2
    assert set(row["accuracy"]) == {"mean", "sd"} and row["vs_best"]["verdict"] == "best"
    assert row["vs_best"]["test"] == "welch"
