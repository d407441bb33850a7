"""One trial of tk tune, in a process of its own: ``python -m toolkit.runs.tune_trial SPEC.json``.

The trial is an ordinary run (``run_task``) with a ``TrialRun`` beside it, which listens to the run's
epochs: each epoch's validation value goes to the Optuna trial (``trial.report``), and when the study's
pruner says stop, the run ends after that epoch (``EndedEarly``) and its folder is marked ``pruned``. A
trial that trains to its end is scored on the validation split alone and marked ``trial``: the test split
is scored once, at the end of the search, for the configurations it reports. A trial's folder keeps its
config, history and ``trial.json``, not its weights (the final runs save theirs).

The tuner reads the outcome from the spec's result file; a trial that raises writes its one-line error
there and exits 1, one killed from outside (the kernel's out-of-memory killer) writes nothing, and the
tuner says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from toolkit.config import build_task
from toolkit.errors import TkError, user_message
from toolkit.plugins import PluginManager
from toolkit.records import EpochRecord
from toolkit.runs import trackers
from toolkit.runs.endings import RunOutcome
from toolkit.runs.folders import set_status
from toolkit.runs.pipeline import run_task
from toolkit.runs.tune_study import open_storage, pruner
from toolkit.saving import write_json
from toolkit.tasks_file import local_plugins, read_toml
from toolkit.training.interrupt import EndedEarly
from toolkit.training.progress import Progress

TRIAL_FILE = "trial.json"


def objective_value(record: EpochRecord, metric: str) -> float:
    """The epoch's validation value of the metric the task selects epochs on (``select_metric``)."""
    return float(record.validation_loss if metric == "loss" else getattr(record, metric))


class TrialRun:
    """What a run does differently as a trial: it reports each epoch, may be pruned, and ends unscored."""

    def __init__(self, trial: Any, metric: str, number: int, params: dict[str, Any], epochs: int | None = None
                 ) -> None:
        self.trial, self.metric, self.number, self.params, self.epochs = trial, metric, number, params, epochs
        self.seen: list[EpochRecord] = []

    def on_epoch(self, record: EpochRecord) -> None:
        """A listener of the training loop: each epoch is reported to the study, which may prune the trial
        before its last epoch (after it there is nothing left to save: the trial is complete)."""
        self.seen.append(record)
        value = objective_value(record, self.metric)
        self.trial.report(value, record.epoch)
        if (self.epochs is None or record.epoch < self.epochs) and self.trial.should_prune():
            raise EndedEarly(record.epoch, f"validation {self.metric} {value:.4f} after epoch {record.epoch} is "
                                           "worse than the median of the finished trials there")

    def finish(self, run_dir: Path, result: Any) -> Any:
        best = next(r for r in result.history if r.epoch == result.best_epoch)
        return self._end(run_dir, list(result.history), "complete", objective_value(best, self.metric),
                         best_epoch=result.best_epoch, validation_accuracy=best.accuracy, validation_f1=best.f1)

    def pruned(self, run_dir: Path, ended: EndedEarly) -> Any:
        values = [objective_value(r, self.metric) for r in self.seen]
        best = (min if self.metric == "loss" else max)(values) if values else None
        return self._end(run_dir, self.seen, "pruned", best, pruned_after=ended.epoch, why=ended.reason)

    def _end(self, run_dir: Path, history: list[EpochRecord], state: str, value: float | None, **more: Any) -> Any:
        record = {"number": self.number, "state": state, "metric": self.metric, "value": value,
                  "params": self.params, "epochs_run": len(history), **more}
        write_json(run_dir / "history.json", [r.as_dict() for r in history])
        write_json(run_dir / TRIAL_FILE, record)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a trial is not resumed: tk tune re-asks
        set_status(run_dir, "trial" if state == "complete" else "pruned")
        return RunOutcome(run_dir, state, record)


def run_trial(spec: dict[str, Any]) -> Any:
    """The trial's run, with the plugins of the tuner's tasks file and the tuner's study."""
    import optuna


    tasks = Path(spec["tasks"])
    local = local_plugins(read_toml(tasks), tasks) if tasks.exists() else ()
    pm = PluginManager().load(local, tasks.resolve().parent)
    task = build_task(spec["task_name"], spec["values"], "tk tune", tuple(pm.settings().values()))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=spec["study"], storage=open_storage(spec["storage"], heartbeat=False),
                              pruner=pruner(spec["pruner"]))
    trial = TrialRun(optuna.trial.Trial(study, spec["trial_id"]), task.select_metric, spec["number"],
                     spec["params"], task.epochs)
    base = Path(spec["base"]) if spec.get("base") else None
    trackers.sweep_parent.set(spec.get("mlflow_parent"))  # report_to = ["mlflow"]: nested under the tune's run
    return run_task(pm, task, data=spec.get("data"), output=Path(spec["output"]), base=base,
                    progress=Progress(print, bar=False), trial=trial, where=spec.get("where"))


PARENT_CHECK_SECONDS = 1.0


def stop_with_the_tuner() -> None:
    """A tuner killed outright (SIGKILL, a lost ssh session) cannot stop its trial, which would train on as an
    orphan and write a result the next tuner has already marked interrupted. The trial watches for its
    parent to change and then stops itself as a Ctrl-C would: its run is marked interrupted."""
    tuner = os.getppid()

    def watch() -> None:
        while os.getppid() == tuner:
            time.sleep(PARENT_CHECK_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="tk-tuner-watch").start()


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    result = Path(spec["result"])
    stop_with_the_tuner()
    try:
        outcome = run_trial(spec)
    except TkError as error:
        message = user_message(error)
    except Exception as error:  # a bug or a library's error: its traceback goes to the trial's log
        traceback.print_exc()
        message = f"{type(error).__name__}: {error}"
    else:
        write_json(result, {"state": outcome.status, "run_dir": str(outcome.run_dir) if outcome.run_dir else None,
                            **({} if outcome.status == "interrupted" else outcome.metrics)})
        return 130 if outcome.status == "interrupted" else 0
    line = (message.strip().splitlines() or ["failed"])[0]
    print(f"Error: {message}", file=sys.stderr)
    write_json(result, {"state": "failed", "error": line if len(line) <= 300 else line[:297] + "..."})
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
