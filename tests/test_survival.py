"""Runs that survive anything: a run folder knows whether it is alive, resume checks what it resumes,
a checkpoint that cannot resume exactly is refused, a signal anywhere ends a run as 'interrupted'."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.helpers import InterruptAt, fails_with, ok, quiet, tk, toy_task, train_toy
from toolkit.errors import TkError
from toolkit.runs import folders, liveness, pipeline
from toolkit.runs.pipeline import resume_task


def fake_run(project, name="toy-1", status="running", checkpoint=True, lock=None):
    """A run folder as a killed run leaves it: config, status, maybe a committed checkpoint, maybe a lock."""
    run_dir = project / "runs" / name
    run_dir.mkdir(parents=True)
    folders.write_json(run_dir / "config.json", {"task": {"name": "toy", "dataset": "toy"}, "engine": "trainer"})
    folders.set_status(run_dir, status)
    if checkpoint:
        (run_dir / "checkpoints" / "checkpoint-20").mkdir(parents=True)
        folders.write_json(run_dir / "checkpoints" / "checkpoint-20" / "tk_state.json", {})
    if lock is not None:
        (run_dir / liveness.LOCK_FILE).write_text(json.dumps(lock))
    return run_dir


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_resume_refuses_a_live_run_and_one_on_another_host(project):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = {"pid": sleeper.pid, "host": socket.gethostname(), "since": "now",
                "process_start": liveness._start_time(sleeper.pid)}
        run_dir = fake_run(project, lock=live)
        fails_with("is running now (process", "run", "--resume", run_dir)
        assert "running " in ok("list", "--runs", "--output", project / "runs")
        # The same pid with another start time is another process: the lock is stale.
        (run_dir / liveness.LOCK_FILE).write_text(json.dumps({**live, "process_start": "1"}))
        assert liveness.holder(liveness.read_lock(run_dir)) == "stale"
    finally:
        sleeper.kill()
        sleeper.wait()
    elsewhere = fake_run(project, "toy-2", lock={"pid": 1, "host": "other-host", "since": "now"})
    fails_with("is marked running on host other-host", "run", "--resume", elsewhere)
    assert folders.run_status(elsewhere) == "running"


def test_list_runs_shows_a_run_whose_process_is_gone_as_stale(project):
    fake_run(project, "toy-1", lock={"pid": dead_pid(), "host": socket.gethostname(), "since": "now"})
    fake_run(project, "toy-2", checkpoint=False, lock={"pid": dead_pid(), "host": socket.gethostname()})
    fake_run(project, "toy-3", status="interrupted")
    lines = ok("list", "--runs", "--output", project / "runs").splitlines()
    assert lines[0].startswith("stale (resumable)") and lines[0].endswith("toy-1")
    assert lines[1].startswith("stale (start again)") and lines[1].endswith("toy-2")
    assert lines[2].startswith("interrupted")


def test_resume_refuses_options_that_would_change_the_run(project):
    run_dir = fake_run(project, status="interrupted")
    for extra in (["toy"], ["--set", "epochs=2"], ["--data", "toy-data"], ["--output", "elsewhere"]):
        fails_with("cannot be given with it", "run", "--resume", run_dir, *extra)


def test_resume_without_a_checkpoint_changes_nothing(project):
    failed = fake_run(project, status="failed", checkpoint=False)
    fails_with("has no epoch checkpoint to resume from", "run", "--resume", failed)
    assert folders.run_status(failed) == "failed"
    complete = fake_run(project, "toy-2", status="complete", checkpoint=False)
    fails_with("already complete", "run", "--resume", complete)
    assert folders.run_status(complete) == "complete"


def test_resume_uses_the_recorded_data_and_refuses_changed_data(pm, project, monkeypatch):
    stopped = pipeline.run_task(pm, toy_task(project, epochs=2), data="toy-data",
                                output=project / "runs", base=project, progress=InterruptAt(25))
    assert stopped.status == "interrupted"
    config = json.loads((stopped.run_dir / "config.json").read_text())
    assert config["data"] == str((project / "toy-data").resolve()) and config["data_as_given"] == "toy-data"
    assert not (stopped.run_dir / liveness.LOCK_FILE).exists()
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative --data would now name another folder
    train = project / "toy-data" / "train.csv"
    original = train.read_text()
    train.write_text(original.replace("neg", "pos", 3))
    with pytest.raises(TkError, match="The data changed since the run started.*fingerprint.*recorded"):
        resume_task(pm, stopped.run_dir, quiet())
    assert folders.run_status(stopped.run_dir) == "interrupted"
    train.write_text(original)
    assert resume_task(pm, stopped.run_dir, quiet()).status == "complete"


@pytest.mark.slow
def test_a_resume_names_where_the_data_came_from_when_the_run_started(pm, project):
    """The resume reads the path the run recorded; its Data line says what gave it, as the start's did."""
    data = (project / "toy-data").resolve()
    from_key = train_toy(pm, project, progress=InterruptAt(25), epochs=2)  # the task's data = "toy-data"
    from_option = pipeline.run_task(pm, toy_task(project, epochs=2), data="toy-data", output=project / "runs",
                                    base=project, progress=InterruptAt(25))
    for stopped, origin in ((from_key, "the task's data key"), (from_option, "--data")):
        assert stopped.status == "interrupted"
        result = tk("run", "--resume", stopped.run_dir)
        assert result.exit_code == 0, result.output
        assert f"Data: toy from {data} (from {origin})\n" in result.output, result.output


def test_checkpoint_without_weights_cannot_resume(pm, project, engine):
    stopped = train_toy(pm, project, progress=InterruptAt(25), epochs=2, engine=engine,
                        **({"resume_point_seconds": 0} if engine == "cuda-graphs" else {}))
    checkpoint = stopped.run_dir / "checkpoints" / "checkpoint-20"
    assert sorted(path.name for path in checkpoint.iterdir()) == ["tk_state.json", "training_state.pt"]
    (checkpoint / "training_state.pt").unlink()
    with pytest.raises(TkError, match="checkpoint-20 lacks training_state.pt: the run cannot continue from it"):
        resume_task(pm, stopped.run_dir, quiet())


def test_a_run_of_the_retired_trainer_engine_says_so_on_resume(pm, project):
    stopped = train_toy(pm, project, progress=InterruptAt(25), epochs=2)
    config = json.loads((stopped.run_dir / "config.json").read_text())
    folders.write_json(stopped.run_dir / "config.json", {**config, "engine": "trainer"})  # as such a run recorded
    with pytest.raises(TkError, match='The engine "trainer" .* was retired.*cannot be resumed'):
        resume_task(pm, stopped.run_dir, quiet())
    assert folders.run_status(stopped.run_dir) == "interrupted"


def sigterm_in(monkeypatch, module, name):
    real = getattr(module, name)

    def interrupting(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupting)


def test_sigterm_during_data_preparation_says_there_is_nothing_to_resume(project, monkeypatch):
    sigterm_in(monkeypatch, pipeline, "make_splits")
    result = tk("run", "toy", "--output", project / "runs")
    assert result.exit_code == 130, result.output
    assert "Interrupted before the run folder was made; nothing to resume. Start again: tk run toy" in result.output
    assert not (project / "runs").exists() or not list((project / "runs").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("where", ["predict_probabilities", "linear_baseline", "write_model_card"])
def test_sigterm_after_training_keeps_the_trained_model_and_resumes_without_training_again(pm, project,
                                                                                          monkeypatch, where):
    """Interrupted while scoring the test split, fitting the linear baseline or saving: the last epoch keeps
    no checkpoint of its own (a run that completes needs none), so the trained state is kept as the resume
    point then. A one-epoch run used to have nothing to resume from and lost its training."""
    with monkeypatch.context() as patch:
        sigterm_in(patch, pipeline, where)
        result = tk("run", "toy", "--set", "epochs=1", "--output", project / "runs")
    assert result.exit_code == 130, result.output
    run_dir = next((project / "runs").iterdir())
    assert f"resume with:\n  tk run --resume {run_dir}" in result.output
    assert folders.run_status(run_dir) == "interrupted"
    assert not (run_dir / liveness.LOCK_FILE).exists()
    assert "interrupted" in ok("list", "--runs", "--output", project / "runs")
    [kept] = [path for path in (run_dir / "checkpoints").iterdir() if path.name.startswith("checkpoint-")]
    trained = json.loads((kept / "tk_state.json").read_text())["history"]
    assert "Test metrics" in ok("run", "--resume", run_dir)
    assert folders.run_status(run_dir) == "complete"
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["seconds"] for row in history] == [row["seconds"] for row in trained]  # no epoch trained again


@pytest.mark.slow  # a tk process of its own
def test_a_run_whose_output_pipe_closes_goes_on_to_the_end(project):
    """tk run | head: the reader goes away after two lines. The run used to die of the broken pipe (status
    failed); now it says so on stderr once, trains to the end and saves everything."""
    process = subprocess.Popen([sys.executable, "-m", "toolkit", "run", "toy", "--set", "epochs=2"], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    process.stdout.readline()
    process.stdout.close()  # as head does once it has its lines
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=600) == 0, stderr
    assert stderr.count("the output's reader has gone") == 1 and "Traceback" not in stderr
    run_dir = next((project / "runs").iterdir())
    assert folders.run_status(run_dir) == "complete" and (run_dir / "metrics.json").is_file()
