"""report_to: a run tracked in MLflow and TensorBoard, under the same names whatever engine trained it.

Tracking is driven from the shared run pipeline, not from an engine: every
engine hands each epoch's ``EpochRecord`` to ``progress.epoch``, and
``Tracker.watch`` passes those records on. From a record come the training
loss at its real global steps (one point per step; at most
``policy.CURVE_POINTS`` means per epoch on longer epochs), the learning rate
of those steps (``policy.learning_rate_at``: the schedule is a function of
the step) and the epoch's validation numbers. At the end come the test
metrics with their interval bounds and the run folder as artifacts.

Tracking never costs a run: a tracker that fails (a server down, a full
store) is named once and dropped, and the run goes on; the run folder stays
the record. A missing library is a ``TkError`` before any work
(``require``). The backends are in ``toolkit.runs.trackers``.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig, origin_of
from toolkit.errors import TkError
from toolkit.records import EpochRecord
from toolkit.runs import trackers
from toolkit.runs.trackers import Point, sweep_parent
from toolkit.training import policy

# report_to name -> (the module it needs, the library); `pip install 'tk-toolkit[NAME]'` installs it
LIBRARIES = {"mlflow": ("mlflow", "MLflow"), "tensorboard": ("torch.utils.tensorboard", "TensorBoard")}
RUN_KEYS = ("best_epoch", "epochs_run", "train_seconds", "eval_seconds")  # metrics.json numbers about the run


def require(task: TaskConfig, where: str | None = None) -> None:
    """Every library ``report_to`` names can be imported: else a TkError that says what to install."""
    for name in task.report_to:
        module, library = LIBRARIES[name]
        if name == "mlflow" and importable(module) and needs_database(os.environ.get("MLFLOW_TRACKING_URI")):
            module, library = "sqlalchemy", "the full MLflow (its database store needs SQLAlchemy)"
        if not importable(module):
            raise TkError(f"{origin_of(task, 'report_to', where)}: report_to = {list(task.report_to)} needs {library}, "
                          f"which is not installed here: pip install 'tk-toolkit[{name}]'")


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores


def needs_database(uri: str | None) -> bool:
    """MLflow 3's default store (no MLFLOW_TRACKING_URI: sqlite:///mlflow.db) and every database URI need
    SQLAlchemy, which mlflow-skinny leaves out; a server or a file store does not."""
    return not uri or uri.split(":", 1)[0].split("+", 1)[0] in DATABASES


def short(error: BaseException) -> str:
    """An error in one short line: a tracking library's messages can run to paragraphs."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 300 else text[:297] + "..."


class Tracker:
    """The run's trackers (none, one or both), fed the same names and values; a failing one is dropped."""

    def __init__(self, backends: list[Any], task: TaskConfig | None = None, note: Callable[[str], Any] = print,
                 run_dir: Path | None = None) -> None:
        self.backends, self.task, self.note, self.run_dir = list(backends), task, note, run_dir
        self.rate: Callable[[int], float] | None = None

    def on_epoch(self, record: EpochRecord) -> None:
        """A listener of the training loop: the epoch's step losses and learning rates at their global steps,
        then its validation numbers."""
        if not self.backends or not record.steps:
            return
        if self.rate is None:  # every epoch has the same steps, so the schedule's length is known now
            self.rate = policy.learning_rate_at(self.task, record.steps * self.task.epochs)
        before = (record.epoch - 1) * record.steps  # global steps of the earlier epochs
        ended = time.time()
        started = ended - record.seconds
        points: list[Point] = []
        for end, loss in zip(policy.curve_steps(record.steps, len(record.step_losses)), record.step_losses):
            step, at = before + end, started + record.seconds * end / record.steps
            points += [("train/loss", loss, step, at), ("train/learning_rate", self.rate(step), step, at)]
        step = before + record.steps
        points += [(name, value, step, ended) for name, value in (
            ("train/epoch_loss", record.train_loss), ("validation/loss", record.validation_loss),
            ("validation/accuracy", record.accuracy), ("validation/f1", record.f1), ("epoch", record.epoch))]
        self._scalars(points, f"logging epoch {record.epoch}")

    def finish(self, metrics: dict[str, Any], steps: int, run_dir: Path) -> None:
        """The test metrics (with interval bounds) at the last step, the run folder as artifacts; done."""
        if not self.backends:
            return
        self._scalars([(name, value, steps, time.time()) for name, value in final_scalars(metrics)],
                      "logging the test metrics")
        for backend in sorted(self.backends, key=lambda b: b.uploads):  # files complete before an upload
            self._each(backend, "saving the run folder", lambda b: b.close("FINISHED", run_dir))
        self.backends = []

    def end(self, status: str) -> None:
        """The run stopped early: ``KILLED`` (interrupted: it can resume) or ``FAILED``. What was logged stays."""
        for backend in list(self.backends):
            self._each(backend, "closing", lambda b: b.close(status, None))
        self.backends = []

    def _scalars(self, points: list[Point], what: str) -> None:
        points = [point for point in points if point[1] is not None and math.isfinite(point[1])]
        for backend in list(self.backends):
            self._each(backend, what, lambda b: b.scalars(points))

    def _each(self, backend: Any, what: str, call: Callable[[Any], Any]) -> None:
        try:
            call(backend)
        except Exception as error:  # a tracker never stops the run; KeyboardInterrupt still does
            self.backends.remove(backend)
            self.note(f"Tracking: {backend.name} failed {what} ({short(error)}). The run goes on without it; "
                      f"what {backend.name} has so far stays there, and the run folder {self.run_dir} has it all.")


def final_scalars(metrics: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """metrics.json as scalars: ``test/NAME`` with ``test/NAME_low`` / ``_high`` where it has an interval,
    ``test/baseline_NAME``, the linear baseline's ``test/linear_baseline_NAME`` (with its interval) and the
    paired ``test/fine_tune_minus_linear_NAME`` (with its), and the run's ``best_epoch``, ``epochs_run``,
    ``train_seconds``, ``eval_seconds``."""
    yield from _with_intervals(metrics, "", RUN_KEYS)
    for name, value in (metrics.get("baseline") or {}).items():
        if _number(value):
            yield f"test/baseline_{name}", float(value)
    linear = metrics.get("linear_baseline") or {}
    yield from _with_intervals(linear.get("metrics") or {}, "linear_baseline_")
    for name, found in ((linear.get("versus") or {}).get("differences") or {}).items():
        yield from _with_intervals({name: found.get("difference"), f"{name}_ci": found.get("ci")}, "fine_tune_minus_linear_")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _with_intervals(metrics: dict[str, Any], prefix: str, run_keys: tuple[str, ...] = ()) -> Iterator[tuple[str, float]]:
    for name, value in metrics.items():
        if not _number(value):
            continue
        yield (name if name in run_keys else f"test/{prefix}{name}"), float(value)
        interval = metrics.get(f"{name}_ci")
        if isinstance(interval, list) and len(interval) == 2 and all(map(_number, interval)):
            yield f"test/{prefix}{name}_low", float(interval[0])
            yield f"test/{prefix}{name}_high", float(interval[1])


def start(task: TaskConfig, run_dir: Path, params: dict[str, Any], resume: bool,
          note: Callable[[str], Any]) -> Tracker:
    """The trackers ``report_to`` names, opened on the run (reopened on a resume); one that cannot open is
    named and left out."""
    backends = []
    for name in task.report_to:
        label = LIBRARIES[name][1]
        try:
            backends.append(trackers.OPEN[name](task, run_dir, params, resume))
        except Exception as error:  # e.g. a tracking server that does not answer: the run goes on
            note(f"Tracking: {label} could not start ({short(error)}). The run goes on without it; "
                 f"the run folder {run_dir} has it all.")
    for backend in backends:
        note(f"Tracking: {backend.describe()}")
    return Tracker(backends, task, note, run_dir)


@contextmanager
def sweep(task: TaskConfig, sweep_dir: Path, note: Callable[[str], Any], record: str = "sweep.json") -> Iterator[None]:
    """A sweep (or a tune) with report_to = ["mlflow"]: one parent MLflow run, each run of it nested under it;
    ``record``, the sweep's table, is uploaded to the parent at the end."""
    parent = None
    if "mlflow" in task.report_to:
        try:
            parent = trackers.MLflow.parent(task, sweep_dir)
        except Exception as error:
            note(f"Tracking: MLflow could not start the sweep's parent run ({short(error)}); each run is "
                 "tracked on its own.")
    token = sweep_parent.set(parent.run_id if parent else None)
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        sweep_parent.reset(token)
        if parent is not None:
            try:
                if (sweep_dir / record).exists():
                    parent.upload(sweep_dir / record)  # the table; each run uploads its own folder
                parent.close(status, None)
            except Exception as error:
                note(f"Tracking: MLflow failed closing the sweep's parent run ({short(error)}).")
