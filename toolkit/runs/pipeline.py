"""`tk run`: load → map labels → split → check → tokenize → train → evaluate → save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig
from toolkit.errors import TkError
from toolkit.runs import artifacts, liveness, tracking
from toolkit.runs import resume as resuming
from toolkit.runs.folders import check_task_name, new_run_dir, run_status, set_status
from toolkit.runs.outcome import RunOutcome, train_and_evaluate
from toolkit.runs.prepare import prepare
from toolkit.runs.saved import read_run_config, task_of
from toolkit.saving import FULL, SAVING, os_error_in, saving_error, write_json
from toolkit.training import checkpoints, distributed
from toolkit.training.interrupt import EndedEarly, RunInterrupted, graceful_interrupts
from toolkit.training.progress import Progress


def run_task(pm, task: TaskConfig, *, data: str | None = None, output: Path = Path("runs"),
             base: Path | None = None, progress: Progress | None = None,
             resume_dir: Path | None = None, strict: bool = False, where: str | None = None,
             recorded_engine: str | None = None, inexact: bool = False, trial: Any = None) -> RunOutcome:
    """A run from start to end; a Ctrl-C or SIGTERM anywhere in it ends it as 'interrupted'.

    ``trial``: a tk tune trial (``toolkit.runs.tune_trial.TrialRun``): it watches each epoch and may end the
    run early (pruned), and it ends the run after training, scored on the validation split alone."""
    progress = progress or Progress()
    check_task_name(task.name)  # before any work: the name becomes the run folder's
    if not distributed.is_main():
        progress = Progress(echo=lambda text: None, bar=False)  # one process speaks for a data-parallel run
    main = distributed.is_main()
    run_dir, started = resume_dir, False
    tracker = tracking.Tracker([])  # report_to's trackers, once the run folder exists
    with graceful_interrupts(progress.note):
        try:
            if resume_dir is not None and main:
                liveness.acquire(resume_dir)  # before any work: a live run is refused
            prepared = prepare(pm, task, data, base, progress, strict, where, recorded_engine)
            fingerprint = artifacts.fingerprint(prepared.splits)
            if resume_dir is not None:
                missing = resuming.begin(resume_dir, prepared, fingerprint, inexact, progress.note)
            else:
                run_dir = distributed.shared(lambda: new_run_dir(output, task.name))
                if main:
                    liveness.acquire(run_dir)
                    write_json(run_dir / "config.json", {
                        "task": task.describe(), "engine": prepared.engine.name,
                        "data": str(prepared.source.path.resolve()) if prepared.source.path else None,
                        "data_as_given": data, "data_source": prepared.source.describe(),
                        "data_fingerprint": fingerprint, "base": str(base or ""),
                        "start_again": start_again(task, data, where),
                        "notes": prepared.notes})  # e.g. a stride this task does not use
                    write_json(run_dir / "left_out.json", prepared.checks.left_out)
            started = True
            if main:
                if resume_dir is not None:
                    resuming.record_inexact(run_dir, missing)
                set_status(run_dir, "running")
                progress.note(f"Run folder: {run_dir}")
                if prepared.checks.left_out:
                    progress.note(f"Every row left out of {' and '.join(prepared.checks.left_out)}: "
                                  f"{run_dir / 'left_out.json'}")
                tracker = tracking.start(task, run_dir, {**task.describe(), "resolved_engine": prepared.engine.name,
                                                         "data_source": prepared.source.describe()},
                                         resume_dir is not None, progress.note)
            return train_and_evaluate(pm, prepared, run_dir, progress, resume=resume_dir is not None, tracker=tracker,
                                      trial=trial)
        except EndedEarly as ended:
            tracker.end("KILLED")
            return trial.pruned(run_dir, ended)
        except (RunInterrupted, KeyboardInterrupt):
            tracker.end("KILLED")  # MLflow's word for a run stopped by its user; it can resume
            mark = main and run_dir is not None and (started or resume_dir is None)  # a refused resume: untouched
            return interrupted(run_dir, start_again(task, data, where), progress, mark)
        except BaseException as error:
            tracker.end("FAILED")
            if main and run_dir is not None and (started or resume_dir is None):  # a refused resume: untouched
                mark_failed(run_dir, error)
            full = os_error_in(error)
            if full is not None and full.errno in FULL:  # e.g. a checkpoint save that hit a full disk or ulimit -f
                said = str(error) if isinstance(error, TkError) and str(error).startswith(SAVING) else None
                raise TkError((said or str(saving_error(run_dir or output, full)))
                              + (resuming.where_next(run_dir, start_again(task, data, where)) if run_dir is not None
                                 else "")) from None
            raise
        finally:
            if run_dir is not None and main:
                liveness.release(run_dir)


def start_again(task: TaskConfig, data: str | None, where: str | None) -> str:
    """The command that starts this run again: a run of your file (tk run --data F) has no task to name."""
    if where and where.startswith("--data"):
        return f"tk run --data {data}"
    return f"tk run {task.name}" + (f" --data {data}" if data else "")


def interrupted(run_dir: Path | None, again: str, progress: Progress, mark: bool) -> RunOutcome:
    """Mark the run interrupted and say how to go on: resume from a checkpoint, or start again."""
    if mark and run_status(run_dir) != "complete":
        try:
            set_status(run_dir, "interrupted")
        except TkError as error:  # e.g. a full disk: the status says 'running' and tk list shows it stale
            progress.note(f"Could not mark the run interrupted: {error}")
    if run_dir is not None and run_status(run_dir) == "complete":
        progress.note(f"Interrupted after the run was complete; its results are saved in {run_dir}.")
    elif run_dir is not None and checkpoints.latest(run_dir / "checkpoints") is not None:
        progress.note(f"Interrupted. The last finished epoch is saved; resume with:\n  tk run --resume {run_dir}")
    elif run_dir is not None:
        progress.note(f"Interrupted before the first epoch ended: {run_dir} has nothing to resume from. "
                      f"Start again: {again}")
    else:
        progress.note(f"Interrupted before the run folder was made; nothing to resume. Start again: {again}")
    return RunOutcome(run_dir, "interrupted", {})


def mark_failed(run_dir: Path, error: BaseException) -> None:
    """Best effort: on a full disk even status.json may not fit, and the first error is the one to report.
    A complete run stays complete (an error while removing its checkpoints changes nothing saved)."""
    if run_status(run_dir) == "complete":
        return
    try:
        set_status(run_dir, "failed", error=str(error) or type(error).__name__)
    except (TkError, OSError):
        pass


def resume_task(pm, run_dir: Path, progress: Progress | None = None, inexact: bool = False) -> RunOutcome:
    """Finish an interrupted run from its last epoch checkpoint, with its saved config and data."""
    liveness.refuse_if_held(run_dir)
    resuming.check_resumable(run_dir)
    saved = read_run_config(run_dir)
    task = task_of(run_dir, pm)
    return run_task(pm, task, data=saved.get("data"), base=Path(saved["base"]) if saved.get("base") else None,
                    progress=progress, resume_dir=run_dir, recorded_engine=saved.get("engine", "trainer"),
                    inexact=inexact)
