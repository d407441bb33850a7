"""Results never overwrite each other; a run is claimed atomically; a zombie holds no run."""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import fails_with
from toolkit.errors import TkError
from toolkit import saving
from toolkit.runs import liveness


def test_files_saved_at_once_under_one_name_all_survive(tmp_path):
    path = tmp_path / "all-20261204-155143.json"
    saved, start = [], threading.Barrier(8)

    def save(n):
        start.wait()
        saved.append(saving.create_json(path, {"n": n}))

    threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(saved)) == 8 and sorted(json.loads(p.read_text())["n"] for p in saved) == list(range(8))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left



def holding_flock(lock):
    """Another process that holds the run's flock (as a live tk run does) and writes nothing to the file."""
    code = ("import fcntl, os, sys, time; d = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(d, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_run_is_claimed_atomically(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = run_dir / liveness.LOCK_FILE
    lock.write_text(json.dumps({"pid": 999_999_999, "host": socket.gethostname(), "since": "then"}))  # looks stale
    other = holding_flock(lock)
    try:
        with pytest.raises(TkError, match="is running now"):
            liveness.acquire(run_dir)  # the file says stale, but a live process holds it
        assert lock.exists()
    finally:
        other.kill()
        other.wait()
    liveness.acquire(run_dir)  # the holder is gone: claimed
    assert json.loads(lock.read_text())["pid"] == __import__("os").getpid()
    liveness.release(run_dir)
    assert not lock.exists()


def test_a_zombie_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while liveness._alive(child.pid) and time.time() < deadline:  # not reaped: a zombie once it exits
        time.sleep(0.05)
    assert open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    lock = {"pid": child.pid, "host": socket.gethostname(), "process_start": liveness._start_time(child.pid)}
    assert liveness.holder(lock) == "stale"
    child.wait()


def test_a_resume_of_a_run_held_by_a_zombie_is_not_refused(project):
    from tests.test_survival import fake_run

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(1)
    run_dir = fake_run(project, lock={"pid": child.pid, "host": socket.gethostname(), "since": "now",
                                      "process_start": liveness._start_time(child.pid)})
    result = fails_with("", "run", "--resume", run_dir)
    assert "is running now" not in result.output
    child.wait()
