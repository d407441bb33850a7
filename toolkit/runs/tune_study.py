"""tk tune's study: Optuna's storage, sampler and pruner, and the loop that runs trials as processes.

The study lives in its storage (by default SQLite in the tune folder; ``--storage URL`` for one shared by
several workers). ``--trials N`` is the study's total: each worker asks for trials until N have run or are
running. Trial numbers are handed out by the storage, one at a time, so a worker whose trial is numbered
after the N-th counted one closes it untrained (``surplus``): N trials in total, none run twice.

A trial's state, besides Optuna's, is in its user attribute ``tk_state``: ``complete``, ``pruned``,
``failed`` (it raised, or was killed: it counts), ``interrupted`` (its worker stopped: it does not count)
or ``surplus``. A trial left running by a worker of this machine that is gone is marked interrupted when a
worker starts; one left by another machine's worker, once its heartbeat is older than the grace period.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.errors import TkError
from toolkit.runs.folders import run_status, set_status
from toolkit.runs.tracking import short
from toolkit.runs.tune_space import Dimension, suggest_values
from toolkit.saving import write_json

HEARTBEAT_SECONDS = 30  # a worker records that its trial is alive this often (RDB storages)
GRACE_SECONDS = 300  # after this long without a heartbeat, another machine's trial counts as interrupted
COUNTED = ("complete", "pruned", "failed", "running")


def open_storage(url: str, heartbeat: bool = True) -> Any:
    """Optuna's storage for ``url``; one that cannot be opened is a one-line TkError."""
    import optuna

    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
        beat = {"heartbeat_interval": HEARTBEAT_SECONDS, "grace_period": GRACE_SECONDS} if heartbeat else {}
        # SQLite: several workers write one file; each waits its turn rather than failing on the lock.
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        for attempt in range(3):  # workers starting at once on a new database race to create its tables
            try:
                with warnings.catch_warnings():  # heartbeats: "experimental" in Optuna's words, stable since 2.9
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beat)
            except Exception as error:
                if attempt == 2 or "already exists" not in str(error) and "UNIQUE" not in str(error):
                    raise
                time.sleep(1 + attempt)
    except Exception as error:
        hint = driver_hint(url) if isinstance(error, ImportError) else ""
        raise TkError(f"Cannot open the study storage {redact(url)}: {short(error).rstrip('.')}.{hint}") from None


# pip packages of the database drivers SQLAlchemy picks for a URL (postgresql:// is psycopg 3 from SQLAlchemy 2.1)
DRIVER_PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "mysqldb": "mysqlclient",
                   "pymysql": "PyMySQL", "pg8000": "pg8000", "oracledb": "oracledb"}


def driver_hint(url: str) -> str:
    """Which package to install for the database driver the URL names (or SQLAlchemy's default for it)."""
    from sqlalchemy.engine import make_url  # optuna's dependency: imported with the storage, not at tk's start

    try:
        driver = make_url(url).get_dialect().driver
    except Exception:  # SQLAlchemy's own errors for a URL it cannot place: the generic hint below
        return " Install the database's Python driver (docs/tune.md)."
    package = DRIVER_PACKAGES.get(driver, driver)
    return f" Install its Python driver ({driver}): pip install {package}"


def redact(url: str) -> str:
    """A storage URL with its password hidden, for messages and tune.json."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        credentials, at, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


def pruner(spec: dict[str, Any]) -> Any:
    """``median``: a trial worse than the median of the finished trials at the same epoch stops there (from
    epoch ``after``, once ``startup`` trials have finished, and only at an epoch that as many finished trials
    reached: a "median" of one trial that trained that long is that trial); ``halving``: successive halving
    over epochs."""
    import optuna

    if spec["kind"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec["startup"], n_warmup_steps=spec["after"],
                                           n_min_trials=spec["startup"])
    if spec["kind"] == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, spec["after"]))
    return optuna.pruners.NopPruner()


def open_study(url: str, name: str, direction: str, prune: dict[str, Any], seed: int,
               signature: dict[str, Any]) -> tuple[Any, bool]:
    """The study, created or continued (and whether this call created it): a continued one must search the
    same task, metric and space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    sampler = optuna.samplers.TPESampler(seed=seed)
    created = True
    try:
        try:  # one worker creates the study (the storage's unique name decides which): it enqueues the firsts
            study = optuna.create_study(study_name=name, storage=storage, direction=direction, sampler=sampler,
                                        pruner=pruner(prune))
        except optuna.exceptions.DuplicatedStudyError:
            created = False
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner(prune))
    except Exception as error:
        raise TkError(f"Cannot open the study {name!r} in {redact(url)}: {short(error).rstrip('.')}.") from None
    if not created and study.direction.name.lower() != direction:
        raise TkError(f"The study {name!r} in {redact(url)} was started to {study.direction.name.lower()} its "
                      f"value; this task's select_metric needs it to {direction}. Pass another --study.")
    study.sampler = optuna.samplers.TPESampler(seed=worker_seed(seed, len(study.trials), created))
    recorded = study.user_attrs.get("tk_signature")
    if recorded is not None and recorded.get("data_content") and recorded.get("data_content") == signature.get(
            "data_content"):  # the same bytes by another path (./f.csv, /abs/f.csv, another machine's mount)
        signature = {**signature, "data": recorded.get("data")}
        was = recorded.get("task")
        if isinstance(signature.get("task"), dict) and isinstance(was, dict) and "data" in was:  # tk tune --data
            signature["task"] = {**signature["task"], "data": was["data"]}  # FILE: the task's data key is the file
    if recorded is None:
        study.set_user_attr("tk_signature", signature)
    elif recorded != signature:
        was, now = recorded.get("data"), signature.get("data")
        if was != now:  # another file: not a change of content, and a new study is the way on
            raise TkError(f"The study {name!r} in {redact(url)} was made for another data file: {data_named(was)}, "
                          f"not {data_named(now)}. A study continues only on the data it started on: pass another "
                          f"--output (or --study) to start a new study on {data_named(now)}.")
        changed = [differs(key, recorded.get(key), signature.get(key)) for key in sorted(set(recorded) | set(signature))
                   if recorded.get(key) != signature.get(key)]
        raise TkError(f"The study {name!r} in {redact(url)} was started with another {', '.join(changed)}; it "
                      "continues only with the same task, --set, --space and --data (its content too). Pass another "
                      "--output (or --study) to start a new study.")
    return study, created


def data_named(data: Any) -> str:
    """A study's --data in words (None: the task's own data key, or the Hub)."""
    return f"--data {data}" if data else "the task's own data (no --data)"


def differs(key: str, was: Any, now: Any) -> str:
    """What changed in a study's signature, in words: 'task (max_length: 32, now 48)', 'space (epochs: 1..2,
    now 1..3)', 'data (its content changed)'."""
    if key in ("task", "space") and isinstance(was, dict) and isinstance(now, dict):
        keys = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        shown = repr if key == "task" else lambda v: "not searched" if v is None else v  # a space's ranges as typed
        return f"{key} (" + "; ".join(f"{k}: {shown(was.get(k))}, now {shown(now.get(k))}" for k in keys) + ")"
    return {"data_content": "data (its content changed)"}.get(key, key)


def worker_seed(seed: int, trials_so_far: int, created: bool) -> int:
    """The sampler's seed in this process. TPE's proposals follow from its seed and the trials so far, so a
    resumed study or a second worker seeded like the first would propose the configurations already tried:
    the trials so far and (for a worker joining a study) the process id make each one's seed its own, while
    a new study searched by one worker stays reproducible from the task's seed."""
    return (seed + 1_000_003 * trials_so_far + (0 if created else os.getpid())) % 2**32


def state_of(trial: Any) -> str:
    """tk's word for a trial: what it recorded, else Optuna's state (a FAIL it did not record: interrupted)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return "running" if trial.state == TrialState.RUNNING else "waiting"
    recorded = trial.user_attrs.get("tk_state")
    if recorded:
        return recorded
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(trial.state, "interrupted")


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_stale(study: Any, note: Callable[[str], Any]) -> None:
    """Trials left running by a worker that is gone: marked interrupted (they do not count; the search goes on
    with new ones). On this machine the worker's process is checked; elsewhere its heartbeat (RDB storages)."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("tk_worker", "")
        where, _, pid = worker.rpartition(":")
        if where == host and pid.isdigit() and not alive(int(pid)):
            close(study, trial, "interrupted", "its worker stopped before the trial ended")
            note(f"Trial {trial.number} was left running by a worker that stopped: marked interrupted.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    except Exception:  # a storage without heartbeats: nothing to check
        pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close(study: Any, trial: Any, state: str, error: str | None = None, value: float | None = None) -> None:
    """Tell the study how the trial ended, with tk's state (and error) on it."""
    import optuna
    from optuna.trial import TrialState

    try:
        study._storage.set_trial_user_attr(trial._trial_id, "tk_state", state)
        if error:
            study._storage.set_trial_user_attr(trial._trial_id, "tk_error", error)
    except optuna.exceptions.UpdateFinishedTrialError:  # another worker found it stale and closed it
        return
    if state == "complete":
        study.tell(trial.number, value, skip_if_finished=True)
    else:
        study.tell(trial.number, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL,
                   skip_if_finished=True)


def counted(trials: list[Any]) -> int:
    return sum(state_of(t) in COUNTED for t in trials)


def run_trials(study: Any, total: int, launch: Callable[[Any, dict[str, Any]], dict[str, Any]],
               space: dict[str, Dimension], note: Callable[[str], Any]) -> int:
    """Ask for trials and run each (``launch``) until the study holds ``total``; returns how many this
    worker ran."""
    ran = 0
    while True:
        fail_stale(study, note)
        if counted(study.get_trials(deepcopy=False)) >= total:
            return ran
        with warnings.catch_warnings():  # "heartbeats go with Study.optimize": tk records them itself (beat)
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask()
        trial.set_user_attr("tk_worker", this_worker())
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if counted(earlier) >= total:  # another worker asked first: N are running or done
            close(study, trial, "surplus")
            return ran
        params = suggest_values(trial, space)
        note(f"\nTrial {trial.number} ({counted(earlier) + 1} of {total}): "
             + ", ".join(f"{key}={format_value(value)}" for key, value in params.items()))
        found = launch(trial, params)
        close(study, trial, found["state"], found.get("error"), found.get("value"))
        ran += 1
        said = {"complete": lambda: completed(found),
                "pruned": lambda: f"pruned after epoch {found.get('pruned_after')}",
                "failed": lambda: f"failed: {found.get('error')}"}
        note(f"Trial {trial.number}: " + said.get(found["state"], lambda: found["state"])())
        if found["state"] == "interrupted":
            raise KeyboardInterrupt


def completed(found: dict[str, Any]) -> str:
    """'validation loss 0.3684 (epoch 2; val acc 0.864, val f1 0.000: it learned nothing of the class F1 is
    measured on)': a trial that learned nothing says so now, not after the final runs."""
    said = f"validation {found.get('metric')} {found['value']:.4f}"
    if found.get("validation_f1") is None:  # a trial recorded before tk kept these
        return said
    f1 = found["validation_f1"]
    return (f"{said} (epoch {found.get('best_epoch')}; val acc {found['validation_accuracy']:.3f}, val f1 {f1:.3f}"
            + (": it learned nothing of the class F1 is measured on)" if f1 == 0 else ")"))


def format_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def launch_trial(trial: Any, params: dict[str, Any], spec: dict[str, Any], trials_dir: Path,
                 storage: Any) -> dict[str, Any]:
    """Run the trial as ``python -m toolkit.runs.tune_trial``; returns its result file (or why it has none).
    Its output goes to ``trials/NNN/log.txt``; its run folder is the one folder beside it."""
    folder = trials_dir / f"{trial.number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / "result.json"
    spec = {**spec, "values": {**spec["values"], **params}, "params": params, "trial_id": trial._trial_id,
            "number": trial.number, "output": str(folder), "result": str(result)}
    write_json(folder / "spec.json", spec)
    beat(storage, trial)
    with open(folder / "log.txt", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "toolkit.runs.tune_trial", str(folder / "spec.json")],
                                   stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            while True:
                try:
                    code = process.wait(timeout=HEARTBEAT_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    beat(storage, trial)
        except KeyboardInterrupt:  # Ctrl-C reached the trial too (one process group): let it mark its run
            wait_after_interrupt(process)
            return {"state": "interrupted"}
    if result.exists():
        found = json.loads(result.read_text())
        if code != 0 and found.get("state") == "complete":
            found = {"state": "failed", "error": f"exited with code {code}"}
        return found
    return {"state": "failed", "error": killed(code)}


def beat(storage: Any, trial: Any) -> None:
    try:
        storage.record_heartbeat(trial._trial_id)
    except Exception:  # a storage without heartbeats
        pass


def wait_after_interrupt(process: subprocess.Popen) -> int:
    """The trial stops at its next step and marks its run interrupted (a Ctrl-C in the terminal reached it
    already; a SIGTERM to the tuner alone did not)."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout=60)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        return process.wait()


def killed(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = " (often the system's out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"the trial's process was killed by {name}{why}"
    return f"the trial's process exited with code {code} and no result"


def mark_interrupted_folders(trials_dir: Path, study: Any) -> None:
    """Run folders of interrupted trials: status interrupted, no checkpoints (a trial is never resumed: tk tune
    asks for a new one; tk run --resume would finish it as a plain run, outside the study)."""
    for trial in study.get_trials(deepcopy=False):
        if state_of(trial) != "interrupted":
            continue
        for run in (trials_dir / f"{trial.number:03d}").glob("*/config.json"):
            if run_status(run.parent) in ("running", "incomplete"):  # incomplete: killed before status.json
                set_status(run.parent, "interrupted")
            shutil.rmtree(run.parent / "checkpoints", ignore_errors=True)  # never resumed: a new trial goes on
