"""tk run under torchrun: data-parallel on 2 CPU processes (gloo), one run folder, metrics once, the same run
as one process with the same global batch, and a job that stops (a signal, a process that dies) resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from toolkit.errors import TkError

# The tiny model has no dropout and bf16 is off: one process and two compute the same numbers up to the order
# of the sums. calibration off: the saved head is the trained one.
EXACT = ("--set", "bf16=off", "--set", "calibration=off")


def environment():
    return {**os.environ, "TK_TOY_MODEL": os.environ["TK_TOY_MODEL"], "OMP_NUM_THREADS": "1"}


def torchrun(port, *args, launcher=()):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
            *launcher, "-m", "toolkit", "run", "toy", *args]


def run(command, project):
    result = subprocess.run(command, cwd=project, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def only_run(folder: Path) -> Path:
    runs = list(folder.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def read(run_dir, name):
    return json.loads((run_dir / name).read_text())


@pytest.mark.slow
def test_two_processes_train_the_run_one_process_trains_with_the_same_global_batch(project):
    two = run(torchrun(29517, "--set", "epochs=4", "--set", "batch_size=8", *EXACT, "--output",
                       str(project / "two")), project)
    run([sys.executable, "-m", "toolkit", "run", "toy", "--set", "epochs=4", "--set", "batch_size=16", *EXACT,
         "--output", str(project / "one")], project)
    assert two.stdout.count("Test metrics") == 1
    assert "2 processes" in two.stdout and "global batch 16" in two.stdout
    runs = {name: only_run(project / name) for name in ("one", "two")}
    metrics = {name: read(run_dir, "metrics.json") for name, run_dir in runs.items()}
    # Each process saw half of each global batch: 160 training rows in 10 steps of 2 x 8.
    assert read(runs["two"], "manifest.json")["training"]["global_steps"] == 4 * 10
    for ours, theirs in zip(metrics["two"]["history"], metrics["one"]["history"]):
        assert (ours["accuracy"], ours["f1"]) == (theirs["accuracy"], theirs["f1"]), ours["epoch"]
        for key in ("train_loss", "validation_loss"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), (ours["epoch"], key)
    assert metrics["two"]["best_epoch"] == metrics["one"]["best_epoch"]
    assert metrics["two"]["accuracy"] == metrics["one"]["accuracy"] > 0.7  # chance is 0.5
    weights = {name: load_file(run_dir / "model" / "model.safetensors") for name, run_dir in runs.items()}
    for key, value in weights["one"].items():
        torch.testing.assert_close(weights["two"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def start_job(project, port, output, *args, launcher=()):
    return subprocess.Popen(torchrun(port, "--set", "epochs=4", *EXACT, "--output", str(project / output), *args,
                                     launcher=launcher),
                            cwd=project, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for_checkpoint(project, output, job, timeout=300):
    started = time.time()
    while time.time() - started < timeout:
        if list((project / output).glob("*/checkpoints/checkpoint-*/tk_state.json")):
            return only_run(project / output)
        assert job.poll() is None, job.communicate()[0][-3000:]
        time.sleep(0.05)
    raise AssertionError("no checkpoint written")


def rank_process(port, rank):
    """The pid of the worker of rank ``rank`` in the job on ``port`` (from the processes' environments)."""
    for entry in Path("/proc").iterdir():
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, PermissionError):
            continue
        if f"MASTER_PORT={port}".encode() in env and f"RANK={rank}".encode() in env:
            return int(entry.name)
    raise AssertionError(f"no rank {rank} process")


@pytest.mark.slow
def test_a_signalled_job_resumes_exactly_and_a_job_whose_process_died_resumes(project):
    whole = run(torchrun(29518, "--set", "epochs=4", *EXACT, "--output", str(project / "whole")), project)
    assert whole.returncode == 0

    job = start_job(project, 29519, "stopped")
    run_dir = wait_for_checkpoint(project, "stopped", job)
    os.killpg(job.pid, signal.SIGTERM)  # as a scheduler stops a job: every process of it
    output = job.communicate(timeout=300)[0]
    assert read(run_dir, "status.json")["status"] == "interrupted", output[-3000:]
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29520",
         "-m", "toolkit", "run", "--resume", str(run_dir)], project)
    resumed, uninterrupted = read(run_dir, "metrics.json"), read(only_run(project / "whole"), "metrics.json")
    assert [r["validation_loss"] for r in resumed["history"]] == [r["validation_loss"]
                                                                 for r in uninterrupted["history"]]
    weights = load_file(only_run(project / "whole") / "model" / "model.safetensors")
    for key, value in load_file(run_dir / "model" / "model.safetensors").items():
        assert torch.equal(value, weights[key]), key

    # torchrun checks its processes every 0.1 s and then SIGTERMs the living ones, which on a quiet CPU can
    # come before rank 0's next collective call fails; checking every 5 s leaves rank 0 to notice, as here
    job = start_job(project, 29521, "died", launcher=("--monitor-interval", "5"))
    run_dir = wait_for_checkpoint(project, "died", job)
    os.kill(rank_process(29521, 1), signal.SIGKILL)
    output = job.communicate(timeout=300)[0]
    assert job.returncode != 0
    assert "Error: Another process of this data-parallel run stopped" in output, output[-3000:]
    assert "[rank0]: Traceback" not in output, output[-3000:]  # torchrun's own report of the dead process follows
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29522",
         "-m", "toolkit", "run", "--resume", str(run_dir)], project)
    assert read(run_dir, "status.json")["status"] == "complete"


@pytest.mark.slow
def test_a_resume_with_another_number_of_processes_is_refused(project):
    job = start_job(project, 29523, "runs")
    run_dir = wait_for_checkpoint(project, "runs", job)
    os.killpg(job.pid, signal.SIGTERM)
    job.communicate(timeout=300)
    result = subprocess.run([sys.executable, "-m", "toolkit", "run", "--resume", str(run_dir)], cwd=project,
                            env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "trained by 2 process(es) and is being resumed by 1" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_global_batch_over_the_training_rows_is_refused_before_training(project):
    """Each of 2 processes takes batch_size rows a step: batch_size 100 passes the 160 rows one process would
    check, but the global batch of 200 would leave a process training on padding alone."""
    result = subprocess.run(torchrun(29529, "--set", "batch_size=100", "--output", str(project / "runs")),
                            cwd=project, env=environment(), capture_output=True, text=True, timeout=600)
    said = result.stdout + result.stderr
    # torchrun reports the failed processes with its own traceback; tk's error is one line, no frame of tk's
    assert result.returncode != 0 and 'toolkit/' not in said.replace(str(project), ""), said[-3000:]
    assert ("task 'toy': batch_size = 100 on each of 2 torchrun processes is a global batch of 200, larger than the "
            "160 training rows: a process would train on padding alone; set batch_size to at most 80, e.g. --set "
            "batch_size=16.") in said, said[-3000:]
    assert not list((project / "runs").glob("*/checkpoints/*"))
    assert said.count("batch_size = 100 on each of 2 torchrun processes") == 1  # said once, not per process


def test_an_error_is_said_once_per_machine_before_the_processes_join_and_by_its_own_process_after(monkeypatch):
    from toolkit.training import distributed

    error = TkError("the file is missing")
    monkeypatch.setenv("WORLD_SIZE", "4")
    for rank, local_rank, said in [(0, 0, "x"), (1, 1, None), (2, 0, "x")]:  # 2 machines of 2 processes each
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
        assert distributed.error_line("x", error) == said
    monkeypatch.setattr(distributed, "_joined", True)  # after joining, an error may be this process's own
    assert distributed.error_line("x", error) == "process 3 of 4: x"
    assert distributed.error_line("x", distributed.ProcessLost("another stopped")) is None
    monkeypatch.setenv("RANK", "0")
    assert distributed.error_line("x", distributed.ProcessLost("another stopped")) == "x"


def test_the_global_batch_is_checked_with_the_processes_torchrun_set(monkeypatch):
    from toolkit.config import TaskConfig
    from toolkit.errors import TkError
    from toolkit.training.policy import check_batch_size

    monkeypatch.setenv("WORLD_SIZE", "4")
    task = TaskConfig(name="toy", dataset="d", model="m", batch_size=2)
    check_batch_size(task, 8)  # a global batch of 8 rows: every process has 2
    with pytest.raises(TkError, match=r"global batch of 8, larger than the 7 training rows: a process would train "
                                      r"on padding alone; set batch_size to at most 1, e.g. --set batch_size=1\.$"):
        check_batch_size(task, 7)
    with pytest.raises(TkError, match=r"larger than the 3 training rows: .*; run fewer than 4 processes\.$"):
        check_batch_size(task, 3)
