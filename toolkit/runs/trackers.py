"""The two trackers behind report_to, through each library's own public API: MLflow and TensorBoard.

Each takes the same calls from ``toolkit.runs.tracking.Tracker``:
``scalars(points)`` (name, value, global step, wall time), ``close(status,
run_dir)`` (with ``run_dir``: the run folder first, as artifacts) and
``describe()`` (where to look).
"""

from __future__ import annotations

import contextvars
import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig
from toolkit.runs.liveness import LOCK_FILE
from toolkit.saving import read_json, write_json
from toolkit.training import checkpoints

STATE_FILE = "tracking.json"  # in the run folder: the MLflow run a resume continues
# A sweep's parent MLflow run: each run of the sweep is nested under it.
sweep_parent: contextvars.ContextVar[str | None] = contextvars.ContextVar("sweep_parent", default=None)
Point = tuple[str, float, int, float]  # name, value, global step, wall time (seconds since the epoch)
DEFAULT_STORE = "mlflow.db"  # without MLFLOW_TRACKING_URI: MLflow 3's own default, sqlite:///mlflow.db in ./
NOT_ARTIFACTS = {LOCK_FILE, "checkpoints"}  # the liveness lock; checkpoints are removed when the run completes


SERVER_PROBE_SECONDS = 5  # MLflow's own client retries an unreachable server for minutes before it fails


def answers_quickly(uri: str) -> None:
    """An http(s) tracking server that accepts no connection within SERVER_PROBE_SECONDS raises OSError
    (the tracker then fails to start, says so once, and the run goes on without it)."""
    import socket

    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=SERVER_PROBE_SECONDS).close()
    except OSError as error:
        raise OSError(f"no answer from {public(uri)} within {SERVER_PROBE_SECONDS} s ({error})") from None


def public(uri: str) -> str:
    """A tracking URI without a user name or password in it: fit to print and to save in the run folder."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def default_store() -> str:
    return f"sqlite:///{Path(DEFAULT_STORE).resolve().as_posix()}"


def absolute_sqlite(uri: str) -> str:
    """``sqlite:///mlflow.db`` (relative to the current folder, as MLflow reads it) by its absolute path: the
    same file, recorded so that a resume from another folder finds it."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):].startswith("/") or uri[len(prefix):] in ("", ":memory:"):
        return uri
    return prefix + Path(uri[len(prefix):]).resolve().as_posix()


def param_value(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value) if isinstance(value, (list, tuple, dict)) \
        else str(value)


class MLflow:
    """One MLflow run: parameters once, metrics by step, the run folder as artifacts at the end."""

    name = "MLflow"
    uploads = True  # closes last: the other trackers' files are complete before the run folder is uploaded

    def __init__(self, client: Any, run_id: str, uri: str, experiment: str) -> None:
        self.client, self.run_id, self.uri, self.experiment = client, run_id, uri, experiment

    @staticmethod
    def connect(saved_uri: str | None = None) -> tuple[Any, str]:
        """MLFLOW_TRACKING_URI (or mlflow.set_tracking_uri) when set; else the store the run started in on a
        resume; else MLflow 3's default, ``sqlite:///mlflow.db`` in the current folder (recorded by its
        absolute path, so a resume from elsewhere finds it). A run started when tk wrote MLflow's file
        store (./mlruns) resumes into it: MLflow 3 opens that only with MLFLOW_ALLOW_FILE_STORE."""
        import mlflow
        from mlflow.tracking import MlflowClient

        if mlflow.is_tracking_uri_set():
            uri = absolute_sqlite(mlflow.get_tracking_uri())
            answers_quickly(uri)
        else:
            uri = saved_uri or default_store()
            if uri.startswith("file:"):
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return MlflowClient(tracking_uri=uri), uri

    @staticmethod
    def experiment_of(client: Any, task: TaskConfig) -> tuple[str, str]:
        """MLFLOW_EXPERIMENT_ID or MLFLOW_EXPERIMENT_NAME when set (as MLflow does), else the task's name."""
        from mlflow.exceptions import MlflowException

        if os.environ.get("MLFLOW_EXPERIMENT_ID"):
            found = client.get_experiment(os.environ["MLFLOW_EXPERIMENT_ID"])
            return found.experiment_id, found.name
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or task.name
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return client.create_experiment(name), name
            except MlflowException:  # another run made it meanwhile
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
        return found.experiment_id, name

    @classmethod
    def open(cls, task: TaskConfig, run_dir: Path, params: dict[str, Any], resume: bool) -> MLflow:
        """A new run named after the run folder; on a resume, the run it started (recorded in tracking.json)."""
        from mlflow.entities import Param

        saved = (read_json(run_dir / STATE_FILE).get("mlflow") or {}) if resume and (run_dir / STATE_FILE).is_file() \
            else {}
        client, uri = cls.connect(saved.get("tracking_uri"))
        if saved.get("run_id"):
            run = client.get_run(saved["run_id"])
            client.update_run(run.info.run_id, status="RUNNING")
            return cls(client, run.info.run_id, uri, client.get_experiment(run.info.experiment_id).name)
        experiment, name = cls.experiment_of(client, task)
        tags = {"tk.run_folder": str(run_dir.resolve()), "tk.task": task.name}
        if sweep_parent.get():
            tags["mlflow.parentRunId"] = sweep_parent.get()
        run_id = client.create_run(experiment, run_name=run_dir.name, tags=tags).info.run_id
        write_json(run_dir / STATE_FILE, {"mlflow": {"run_id": run_id, "experiment_id": experiment,
                                                     "tracking_uri": public(uri)}})
        client.log_batch(run_id, params=[Param(key, param_value(value)) for key, value in params.items()])
        return cls(client, run_id, uri, name)

    @classmethod
    def parent(cls, task: TaskConfig, sweep_dir: Path) -> MLflow:
        client, uri = cls.connect()
        experiment, name = cls.experiment_of(client, task)
        run = client.create_run(experiment, run_name=sweep_dir.name, tags={"tk.sweep_folder": str(sweep_dir.resolve())})
        return cls(client, run.info.run_id, uri, name)

    def describe(self) -> str:
        where = f"MLflow run {self.run_id} (experiment '{self.experiment}') in {public(self.uri)}"
        if self.uri.startswith("file:"):  # MLflow 3 opens its file store only when allowed
            where += f"; to see it: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {self.uri}"
        elif self.uri.startswith("sqlite:"):
            where += f"; to see it: mlflow ui --backend-store-uri {self.uri}"
        return where

    def scalars(self, points: list[Point]) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(self.run_id, metrics=[Metric(name, value, int(at * 1000), step)
                                                    for name, value, step, at in points])

    def upload(self, path: Path) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str, run_dir: Path | None) -> None:
        for path in sorted(run_dir.iterdir()) if run_dir is not None else ():
            if path.name not in NOT_ARTIFACTS and not path.name.startswith("."):  # "." : atomic writes' temp files
                self.upload(path)
        self.client.set_terminated(self.run_id, status)


class TensorBoard:
    """Event files in RUN/tensorboard: the same scalars, and the resolved config as a text table."""

    name = "TensorBoard"
    uploads = False

    def __init__(self, writer: Any, folder: Path) -> None:
        self.writer, self.folder = writer, folder

    @classmethod
    def open(cls, task: TaskConfig, run_dir: Path, params: dict[str, Any], resume: bool) -> TensorBoard:
        """On a resume, a new event file in the same folder; TensorBoard hides what the first one logged past
        the checkpoint resumed from (``purge_step``), since those steps are trained again."""
        from torch.utils.tensorboard import SummaryWriter

        latest = checkpoints.latest(run_dir / "checkpoints") if resume else None
        folder = run_dir / "tensorboard"
        writer = SummaryWriter(str(folder), purge_step=checkpoints.step_of(latest) + 1 if latest else None)
        if not resume:
            rows = "".join(f"| {key} | {param_value(value).replace('|', '&#124;')} |\n" for key, value in params.items())
            writer.add_text("config", "| key | value |\n|---|---|\n" + rows)
        return cls(writer, folder)

    def describe(self) -> str:
        return f"TensorBoard event files in {self.folder}"

    def scalars(self, points: list[Point]) -> None:
        for name, value, step, at in points:
            self.writer.add_scalar(name, value, step, walltime=at)
        self.writer.flush()

    def close(self, status: str, run_dir: Path | None) -> None:
        self.writer.close()


OPEN = {"mlflow": MLflow.open, "tensorboard": TensorBoard.open}
