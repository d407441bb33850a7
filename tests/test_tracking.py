"""report_to: a run in MLflow and TensorBoard, read back through each library's own reader, on both engines."""

import json
import sys

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import InterruptAt, fails_with, ok, quiet, toy_task, train_toy
from toolkit.errors import TkError
from toolkit.runs.pipeline import resume_task
from toolkit.training import policy
from toolkit.training.progress import Progress

STEPS_PER_EPOCH = 160 // 8  # the toy task: 160 training rows, batch_size 8
PEAK_RATE = 2e-3  # the toy task's learning_rate


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch):
    """No MLflow settings from the machine running the tests, and no telemetry (the suite is offline)."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)  # restored afterwards, even where tk sets it
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def store(monkeypatch, tmp_path):
    """MLflow 3's default store named by MLFLOW_TRACKING_URI as its users name it, a SQLite file in the current
    folder (each test's own tmp_path); read back by its absolute path (MLflow caches a store by its URI)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    return f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"


def only_run(client, experiment="toy"):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [run.info.run_name for run in runs]
    return runs[0]


def history_of(run_dir):
    return json.loads((run_dir / "history.json").read_text())


def linear_rates(steps):
    """The toy task's schedule: linear decay from the peak with no warm-up; step s trains at factor 1 - (s-1)/steps."""
    return [PEAK_RATE * (1 - (step - 1) / steps) for step in range(1, steps + 1)]


def test_mlflow_run_reads_back_through_mlflows_client(pm, project, engine, store):
    outcome = train_toy(pm, project, engine=engine, epochs=2, report_to=["mlflow"])
    client = MlflowClient(store)
    run = only_run(client)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == outcome.run_dir.name
    assert run.data.tags["tk.run_folder"] == str(outcome.run_dir.resolve())
    assert json.loads((outcome.run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == run_id

    params = run.data.params  # the resolved config
    assert params["learning_rate"] == str(PEAK_RATE) and params["batch_size"] == "8" and params["epochs"] == "2"
    assert params["max_length"] == "64" and params["dataset"] == "toy" and params["report_to"] == '["mlflow"]'
    assert params["resolved_engine"] == engine and "toy-data" in params["data_source"]

    history = history_of(outcome.run_dir)
    steps = 2 * STEPS_PER_EPOCH
    losses = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in losses] == list(range(1, steps + 1))  # one point per step, at its global step
    assert [m.value for m in losses] == pytest.approx([loss for row in history for loss in row["step_losses"]])
    rates = client.get_metric_history(run_id, "train/learning_rate")
    assert [m.step for m in rates] == list(range(1, steps + 1))
    assert [m.value for m in rates] == pytest.approx(linear_rates(steps))
    for name, key in (("validation/loss", "validation_loss"), ("validation/accuracy", "accuracy"),
                      ("validation/f1", "f1"), ("train/epoch_loss", "train_loss")):
        points = client.get_metric_history(run_id, name)
        assert [m.step for m in points] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH], name  # at each epoch's end
        assert [m.value for m in points] == pytest.approx([row[key] for row in history]), name

    metrics, logged = outcome.metrics, run.data.metrics
    for name in ("accuracy", "f1", "f1_macro", "recall"):
        assert logged[f"test/{name}"] == pytest.approx(metrics[name]), name
        if metrics[f"{name}_ci"] is not None:  # an interval: its bounds too
            assert [logged[f"test/{name}_low"], logged[f"test/{name}_high"]] == pytest.approx(metrics[f"{name}_ci"])
    assert logged["test/accuracy_low"] <= logged["test/accuracy"] <= logged["test/accuracy_high"]
    assert logged["test/baseline_accuracy"] == pytest.approx(metrics["baseline"]["accuracy"])
    linear = metrics["linear_baseline"]  # the model the fine-tune has to beat, and by how much it does
    assert logged["test/linear_baseline_accuracy"] == pytest.approx(linear["metrics"]["accuracy"])
    assert [logged["test/linear_baseline_accuracy_low"], logged["test/linear_baseline_accuracy_high"]] == \
        pytest.approx(linear["metrics"]["accuracy_ci"])
    difference = linear["versus"]["differences"]["accuracy"]
    assert logged["test/fine_tune_minus_linear_accuracy"] == pytest.approx(difference["difference"])
    assert logged["test/fine_tune_minus_linear_accuracy_low"] == pytest.approx(difference["ci"][0])
    assert logged["best_epoch"] == metrics["best_epoch"]

    artifacts = {item.path for item in client.list_artifacts(run_id)}
    assert {"metrics.json", "config.json", "history.json", "predictions.csv", "report.html", "model"} <= artifacts
    assert "run.lock" not in artifacts
    assert "model/model.safetensors" in {item.path for item in client.list_artifacts(run_id, "model")}
    copy = client.download_artifacts(run_id, "metrics.json", str(project / "downloaded"))
    assert json.loads(open(copy).read()) == json.loads((outcome.run_dir / "metrics.json").read_text())


def test_tensorboard_event_file_holds_the_same_scalars(pm, project, engine):
    outcome = train_toy(pm, project, engine=engine, epochs=2, report_to="tensorboard")
    events = EventAccumulator(str(outcome.run_dir / "tensorboard"))
    events.Reload()
    history, steps = history_of(outcome.run_dir), 2 * STEPS_PER_EPOCH
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, steps + 1))
    assert [e.value for e in losses] == pytest.approx([loss for row in history for loss in row["step_losses"]],
                                                      rel=1e-6)  # TensorBoard keeps float32
    assert [e.value for e in events.Scalars("train/learning_rate")] == pytest.approx(linear_rates(steps), rel=1e-6)
    accuracy = events.Scalars("validation/accuracy")
    assert [e.step for e in accuracy] == [STEPS_PER_EPOCH, steps]
    assert [e.value for e in accuracy] == pytest.approx([row["accuracy"] for row in history], rel=1e-6)
    [test] = events.Scalars("test/accuracy")
    assert test.step == steps and test.value == pytest.approx(outcome.metrics["accuracy"], rel=1e-6)
    assert events.Scalars("test/accuracy_low")[0].value <= test.value <= events.Scalars("test/accuracy_high")[0].value
    assert "config/text_summary" in events.Tags()["tensors"]  # the resolved config, as a table


def test_cli_set_report_to_writes_the_default_store_in_the_current_folder(project):
    output = ok("run", "toy", "--set", "report_to=mlflow", "--set", "epochs=1")
    store = f"sqlite:///{(project / 'mlflow.db').as_posix()}"  # MLflow 3's default, where `mlflow ui` looks
    assert "Tracking: MLflow run" in output and f"{store}; to see it: mlflow ui --backend-store-uri {store}" in output
    assert "MLFLOW_ALLOW_FILE_STORE" not in output
    run = only_run(MlflowClient(store))
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "1"
    assert len(MlflowClient(store).get_metric_history(run.info.run_id, "train/loss")) == STEPS_PER_EPOCH


@pytest.mark.parametrize("name, modules, library", [
    ("mlflow", ["mlflow"], "MLflow"),
    ("tensorboard", ["tensorboard", "torch.utils.tensorboard"], "TensorBoard"),
])
def test_a_missing_library_is_named_before_any_work(project, monkeypatch, name, modules, library):
    for module in modules:  # as if it were not installed
        monkeypatch.setitem(sys.modules, module, None)
    fails_with(f"report_to = ['{name}'] needs {library}, which is not installed here: "
               f"pip install 'tk-toolkit[{name}]'", "run", "toy", "--set", f"report_to={name}")
    assert not (project / "runs").exists() and not (project / "mlflow.db").exists()


def test_mlflow_skinny_alone_is_named_for_a_database_store_and_enough_for_a_server(project, monkeypatch):
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # mlflow-skinny: the client without SQLAlchemy
    fails_with("report_to = ['mlflow'] needs the full MLflow (its database store needs SQLAlchemy), which is not "
               "installed here: pip install 'tk-toolkit[mlflow]'", "run", "toy", "--set", "report_to=mlflow")
    from toolkit.runs import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    tracking.require(toy_task(project, report_to="mlflow"))  # a server: the client is all tk needs


def test_report_to_takes_a_list_one_name_or_none(project):
    assert toy_task(project).report_to == ()
    assert toy_task(project, report_to="mlflow").report_to == ("mlflow",)
    assert toy_task(project, report_to="tensorboard, mlflow").report_to == ("tensorboard", "mlflow")
    assert toy_task(project, report_to=["mlflow", "mlflow"]).report_to == ("mlflow",)
    assert toy_task(project, report_to="none").report_to == toy_task(project, report_to=[]).report_to == ()
    for bad, said in (("mlfow", "unknown name 'mlfow'. Did you mean 'mlflow'? Choices: 'mlflow', 'tensorboard'"),
                      (["mlflow", "none"], "'none' cannot be combined"), (1, "must be a list of names")):
        with pytest.raises(TkError, match="key 'report_to'") as error:
            toy_task(project, report_to=bad)
        assert said in str(error.value)
    fails_with("key 'report_to': unknown name 'wandb'", "run", "toy", "--set", "report_to=wandb")


def test_a_tracker_failing_mid_run_is_said_once_and_the_run_completes(pm, project, store, monkeypatch):
    real = MlflowClient.log_batch

    def server_down(self, run_id, metrics=(), params=(), tags=(), **kwargs):  # parameters go in; then it dies
        if metrics:
            raise MlflowException("API request to http://tracking:5000 failed: Connection refused")
        return real(self, run_id, metrics, params, tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", server_down)
    notes = []
    outcome = train_toy(pm, project, progress=Progress(notes.append, bar=False), epochs=2,
                        report_to=["mlflow", "tensorboard"])
    assert outcome.status == "complete" and (outcome.run_dir / "metrics.json").is_file()
    failed = [note for note in notes if "MLflow failed" in note]
    assert len(failed) == 1 and "Connection refused" in failed[0] and "goes on without it" in failed[0], notes
    events = EventAccumulator(str(outcome.run_dir / "tensorboard"))  # the other tracker went on
    events.Reload()
    assert len(events.Scalars("validation/loss")) == 2 and events.Scalars("test/accuracy")
    run = MlflowClient(store).get_run(json.loads((outcome.run_dir / "tracking.json").read_text())["mlflow"]["run_id"])
    assert run.data.params["epochs"] == "2"  # what MLflow got before it failed stays


def test_a_tracking_server_that_does_not_answer_costs_the_run_nothing(pm, project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: nothing listens
    # MLflow's own retry settings are left at their defaults (minutes of retries): tk's probe fails fast.
    notes = []
    outcome = train_toy(pm, project, progress=Progress(notes.append, bar=False), epochs=1, report_to="mlflow")
    assert outcome.status == "complete" and (outcome.run_dir / "model").is_dir()
    assert [note for note in notes if note.startswith("Tracking: MLflow could not start")], notes


@pytest.mark.slow  # two runs
def test_resume_continues_the_same_mlflow_run(pm, project, engine, store):
    stopped = train_toy(pm, project, progress=InterruptAt(STEPS_PER_EPOCH + 5), engine=engine, epochs=3,
                        report_to=["mlflow", "tensorboard"])
    assert stopped.status == "interrupted"
    client = MlflowClient(store)
    assert only_run(client).info.status == "KILLED"  # MLflow's word for stopped by its user
    assert resume_task(pm, stopped.run_dir, quiet()).status == "complete"
    run = only_run(client)  # the same run, not a second one
    assert run.info.status == "FINISHED"
    steps = 3 * STEPS_PER_EPOCH
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(1, steps + 1))
    assert len(client.get_metric_history(run.info.run_id, "validation/loss")) == 3
    events = EventAccumulator(str(stopped.run_dir / "tensorboard"))  # two event files, read as one
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, steps + 1))


@pytest.mark.slow  # two runs
def test_each_run_of_a_sweep_is_an_mlflow_run_nested_under_the_sweep(project, store):
    ok("sweep", "toy", "--grid", "epochs=1,2", "--set", "report_to=mlflow")
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    [parent] = [run for run in runs if run.info.run_name.startswith("sweep-toy-")]
    children = [run for run in runs if run is not parent]
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in children)
    assert sorted(run.data.params["epochs"] for run in children) == ["1", "2"]
    assert "sweep.json" in {item.path for item in client.list_artifacts(parent.info.run_id)}


def test_the_logged_learning_rate_is_the_one_each_step_trains_with(project):
    import torch

    for schedule in ("linear", "cosine", "constant", "constant_with_warmup"):
        task = toy_task(project, lr_scheduler=schedule, warmup_ratio=0.2)
        optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=task.learning_rate)
        scheduler = policy.build_scheduler(optimizer, task, 30)
        rate = policy.learning_rate_at(task, 30)
        for step in range(1, 31):
            assert rate(step) == pytest.approx(optimizer.param_groups[0]["lr"], abs=0), (schedule, step)
            optimizer.step()
            scheduler.step()


def test_curve_points_land_on_the_last_step_they_average():
    losses = np.arange(450.0)
    record = policy.epoch_record(1, losses, np.array([0]), np.array([[0.9, 0.1]]), 1.0, lambda y, p: {})
    ends = policy.curve_steps(record.steps, len(record.step_losses))
    assert len(ends) == policy.CURVE_POINTS and ends[-1] == 450 and ends == sorted(set(ends))
    starts = [0] + ends[:-1]
    assert record.step_losses == pytest.approx([losses[a:b].mean() for a, b in zip(starts, ends)])
    assert policy.curve_steps(20, 20) == list(range(1, 21))
