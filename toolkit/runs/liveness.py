"""Is a run alive? ``RUN/run.lock`` names the process that runs it (pid, host, start time).

Written when a run starts or resumes, removed when it ends however it ends
(complete, failed, interrupted). A ``kill -9`` or a power cut leaves it
behind: a lock whose process is gone (or is a zombie, or whose pid now
belongs to another process, told apart by its start time) is stale, and the
run can be resumed. The process that runs holds an exclusive ``flock`` on
the file for as long as it runs (the kernel drops it when the process dies),
so claiming a run is one atomic step: two resumes at once cannot both win.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from toolkit.errors import TkError
from toolkit.saving import saving_error
from toolkit.training.checkpoints import latest

LOCK_FILE = "run.lock"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name start at field 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Killed but not yet reaped by its parent: it runs nothing and holds no lock (state Z in /proc/PID/stat)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "process_start": _start_time(pid),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}


def read_lock(run_dir: Path) -> dict[str, Any] | None:
    try:
        lock = json.loads((run_dir / LOCK_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: cut short by a kill while it was written
    return lock if isinstance(lock, dict) else {}


def holder(lock: dict[str, Any] | None) -> str:
    """'live', 'stale', 'elsewhere' (another host: tk cannot tell) or 'none'."""
    if lock is None:
        return "none"
    if not lock or not isinstance(lock.get("pid"), int):
        return "stale"
    if lock.get("host") != socket.gethostname():
        return "elsewhere"
    if lock["pid"] == os.getpid():
        return "live"
    if not _alive(lock["pid"]):
        return "stale"
    recorded, now = lock.get("process_start"), _start_time(lock["pid"])
    if recorded and now and recorded != now:
        return "stale"  # the pid was reused by another process
    return "live"


_held: dict[Path, int] = {}  # run folder -> the descriptor whose flock claims it, while this process runs it


def acquire(run_dir: Path) -> None:
    """Claim ``run_dir`` for this process, atomically (an exclusive flock on run.lock); refuse when another
    live process holds it."""
    lock = run_dir / LOCK_FILE
    for _ in range(10):  # the file can be removed between our open and our flock: open it again
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise saving_error(lock, error) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            refuse_if_held(run_dir)  # names the process when the file says who
            raise TkError(f"{run_dir} is running now (another tk process holds {lock}); wait for it to end, "
                          "or stop it first (Ctrl-C), then resume.") from None
        if _same_file(descriptor, lock):
            break
        os.close(descriptor)
    else:
        raise TkError(f"{run_dir}: could not claim {lock}; another tk process keeps replacing it. Try again.")
    try:
        _claim(run_dir, descriptor)
    except BaseException:
        os.close(descriptor)  # the flock goes with it
        raise
    _held[run_dir.resolve()] = descriptor


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.fstat(descriptor).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _claim(run_dir: Path, descriptor: int) -> None:
    """With the flock held: refuse a lock another live process wrote (an older tk, another host), then write ours."""
    lock = read_lock(run_dir)
    state = holder(lock)
    if state == "elsewhere" or (state == "live" and lock.get("pid") != os.getpid()):
        refuse_if_held(run_dir)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(this_process()).encode(), 0)
    except OSError as error:
        raise saving_error(run_dir / LOCK_FILE, error) from None


def refuse_if_held(run_dir: Path) -> None:
    lock = read_lock(run_dir)
    state = holder(lock)
    if state == "live":
        raise TkError(f"{run_dir} is running now (process {lock['pid']} on this machine, since {lock.get('since')}); "
                      "wait for it to end, or stop it first (Ctrl-C or kill PID), then resume.")
    if state == "elsewhere":
        raise TkError(f"{run_dir} is marked running on host {lock.get('host')} (process {lock.get('pid')}, since "
                      f"{lock.get('since')}); tk cannot tell from here whether it is alive. If it is not, delete "
                      f"{run_dir / LOCK_FILE} and resume again.")


def release(run_dir: Path) -> None:
    """Remove the lock if this process holds it (best effort: the run's outcome matters more). Removed while
    the flock is still held, so a process waiting on the old file sees it gone and opens the new one."""
    descriptor = _held.pop(run_dir.resolve(), None)
    lock = read_lock(run_dir)
    if lock and lock.get("pid") == os.getpid() and lock.get("host") == socket.gethostname():
        try:
            (run_dir / LOCK_FILE).unlink()
        except OSError:
            pass
    if descriptor is not None:
        os.close(descriptor)


def shown_status(run_dir: Path, status: str) -> str:
    """The status ``tk list --runs`` shows: a 'running' run whose process is gone is 'stale'."""
    if status != "running":
        return status
    state = holder(read_lock(run_dir))
    if state == "live":
        return "running"
    if state == "elsewhere":
        return f"running on {read_lock(run_dir).get('host')}?"

    return "stale (resumable)" if latest(run_dir / "checkpoints") is not None else "stale (start again)"
