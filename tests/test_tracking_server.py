"""report_to = ["mlflow"] against a real `mlflow server` (SQLite backend, proxied artifacts), read back over HTTP."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import ok

STEPS_PER_EPOCH = 160 // 8  # the toy task


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(server, url, log, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow server exited ({server.returncode}): {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server gave no /health within {seconds} s: {log.read_text()[-3000:]}")


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """`mlflow server` on a free port, its store a SQLite file in tmp_path; stopped with its workers."""
    port, log = free_port(), tmp_path / "server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{(tmp_path / 'server.db').as_posix()}",
             "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # its own group: its workers
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(server, url, log)
        for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_ALLOW_FILE_STORE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def rest(url, path, **query):
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}", timeout=30) as answer:
        return json.loads(answer.read())


@pytest.mark.slow
def test_a_run_tracked_to_a_real_mlflow_server_reads_back_over_http(project, mlflow_server, tmp_path):
    output = ok("run", "toy", "--set", "report_to=mlflow", "--set", "epochs=2")
    run_dir = next((project / "runs").iterdir())
    run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"]
    assert f"Tracking: MLflow run {run_id} (experiment 'toy') in {mlflow_server}" in output

    run = rest(mlflow_server, "runs/get", run_id=run_id)["run"]  # the server's REST API, no MLflow client
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == run_dir.name
    params = {param["key"]: param["value"] for param in run["data"]["params"]}
    assert params["epochs"] == "2" and params["dataset"] == "toy" and params["report_to"] == '["mlflow"]'
    metrics = json.loads((run_dir / "metrics.json").read_text())
    logged = {metric["key"]: metric["value"] for metric in run["data"]["metrics"]}
    assert logged["test/accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-9)
    assert logged["best_epoch"] == metrics["best_epoch"]

    client = MlflowClient(mlflow_server)  # MLflow's own client over HTTP: metric histories and artifacts
    losses = client.get_metric_history(run_id, "train/loss")
    assert sorted(point.step for point in losses) == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    history = json.loads((run_dir / "history.json").read_text())
    assert [point.value for point in sorted(losses, key=lambda p: p.step)] == pytest.approx(
        [loss for row in history for loss in row["step_losses"]], abs=1e-6)
    names = {item.path for item in client.list_artifacts(run_id)}
    assert {"metrics.json", "model", "history.json", "config.json"} <= names
    assert not names & {"checkpoints", "run.lock"}
    copy = client.download_artifacts(run_id, "metrics.json", str(tmp_path / "downloaded"))
    assert json.loads(open(copy).read()) == metrics  # the file the server keeps is the run folder's
