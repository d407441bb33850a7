"""Fault injection: a run killed (SIGKILL) at seeded moments, checkpoint writes included, resumes to the
metrics of an uninterrupted run; a full disk at any of a run's writes ends with one line, a truthful
status and a folder that resumes or says to start again."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ok, tk
from toolkit.runs import folders, liveness
from toolkit.training import checkpoints

REPO = Path(__file__).resolve().parents[1]

# Run by the subprocess instead of `python -m toolkit`: every checkpoint write announces itself on stdout and
# pauses in the middle (a torch.save file cut short; a checkpoint folder with its files but not yet committed),
# so a kill can land mid-write.
KILLPOINTS = """
import sys, time
import torch
from toolkit.training import checkpoints

PAUSE = 0.4
real_save, real_commit = torch.save, checkpoints.commit

def save(obj, f, *args, **kwargs):
    if isinstance(f, (str, bytes, __import__("os").PathLike)) and "checkpoint-" in str(f):
        open(f, "wb").write(b"cut short")
        print("@save", str(f), flush=True)
        time.sleep(PAUSE)
    return real_save(obj, f, *args, **kwargs)

def commit(path, state):
    print("@commit", path.name, flush=True)
    time.sleep(PAUSE)
    return real_commit(path, state)

torch.save, checkpoints.commit = save, commit
from toolkit.cli import main
sys.argv = ["tk", *sys.argv[1:]]
main()
"""


def environment():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_folder(output):
    return next(output.iterdir())


def metrics_of(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["accuracy"], [row["validation_loss"] for row in metrics["history"]]


def kill_at(project, output, event, nth, delay):
    """Start `tk run toy`, SIGKILL it ``delay`` seconds after the ``nth`` line holding every part of ``event``."""
    command = [sys.executable, str(project / "killpoints.py"), "run", "toy", "--set", "epochs=3",
               "--output", str(output)]
    process = subprocess.Popen(command, cwd=project, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen = 0
    for line in process.stdout:
        if all(part in line for part in event):
            seen += 1
            if seen == nth:
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                break
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL, f"finished before the kill at {event} #{nth}"


@pytest.mark.slow
def test_sigkill_at_seeded_moments_resumes_to_the_same_metrics(project, with_dropout):
    (project / "killpoints.py").write_text(KILLPOINTS)
    whole = subprocess.run([sys.executable, "-m", "toolkit", "run", "toy", "--set", "epochs=3",
                            "--output", str(project / "whole")], cwd=project, env=environment(),
                           capture_output=True, text=True, timeout=300, check=False)
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
    expected = metrics_of(run_folder(project / "whole"))
    rng = random.Random(12)
    # 20 steps an epoch: the 2nd checkpoint is checkpoint-40; the loop torch.saves one file into it.
    moments = [(("@save", "checkpoint-40"), 1, rng.uniform(0.05, 0.3)),  # a file cut short
               (("@commit", "checkpoint-40"), 1, rng.uniform(0.05, 0.3)),  # files written, not committed
               (("@commit", "checkpoint-20"), 1, rng.uniform(0.5, 1.5))]  # somewhere after the 1st checkpoint
    for number, (event, nth, delay) in enumerate(moments):
        output = project / f"killed-{number}"
        kill_at(project, output, event, nth, delay)
        run_dir = run_folder(output)
        assert (run_dir / liveness.LOCK_FILE).exists()  # kill -9 leaves the lock: shown as stale
        assert "stale (resumable)" in ok("list", "--runs", "--output", output)
        resumed = subprocess.run([sys.executable, "-m", "toolkit", "run", "--resume", str(run_dir)], cwd=project,
                                 env=environment(), capture_output=True, text=True, timeout=300, check=False)
        assert resumed.returncode == 0, (event, nth, resumed.stdout[-2000:] + resumed.stderr[-2000:])
        assert folders.run_status(run_dir) == "complete"
        accuracy, losses = metrics_of(run_dir)
        assert accuracy == expected[0] and losses == pytest.approx(expected[1], abs=1e-6), (event, nth, delay)


class Disk:
    """Counts a run's writes (atomic renames, torch.save, safetensors) and fails the ``fail_at``-th with ENOSPC."""

    def __init__(self, monkeypatch, fail_at=None):
        import transformers.modeling_utils

        self.count, self.fail_at = 0, fail_at
        for module, name in ((os, "replace"), (torch, "save"), (transformers.modeling_utils, "safe_save_file")):
            monkeypatch.setattr(module, name, self.wrap(getattr(module, name)))

    def wrap(self, real):
        def write(*args, **kwargs):
            self.count += 1
            if self.count == self.fail_at:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return write


@pytest.mark.slow
def test_full_disk_at_each_write_ends_truthfully_and_resumes(project, monkeypatch):
    args = ("run", "toy", "--set", "epochs=2")
    with monkeypatch.context() as patch:
        disk = Disk(patch)
        ok(*args, "--output", project / "counted")
    writes = disk.count
    rng = random.Random(7)
    # The first writes (config, status), the last (status 'complete'), and a seeded sample in between
    # (checkpoint files, the model, metrics): a full run per write would take minutes.
    chosen = sorted({1, 2, writes, *rng.sample(range(3, writes), min(3, writes - 3))})
    resumed = 0
    for n in chosen:
        output = project / f"full-{n}"
        with monkeypatch.context() as patch:
            Disk(patch, fail_at=n)
            result = tk(*args, "--output", output)
        assert result.exit_code == 1, (n, result.output)
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("Error: The disk is full: could not save"), (n, result.output)
        if not output.exists() or not list(output.iterdir()):
            continue  # failed before the run folder was made: nothing to mark, nothing to resume
        run_dir = run_folder(output)
        assert folders.run_status(run_dir) in ("failed", "interrupted"), n
        assert not (run_dir / liveness.LOCK_FILE).exists(), n
        if checkpoints.latest(run_dir / "checkpoints") is not None:
            assert f"Then resume it: tk run --resume {run_dir}" in last, n
            if resumed < 1:  # resuming each would take minutes; one shows that the folder continues
                assert "Test metrics" in ok("run", "--resume", run_dir)
                resumed += 1
        else:
            assert "start it again: tk run toy" in last, n
    assert resumed >= 1
