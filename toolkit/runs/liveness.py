"""Is a run alive? ``RUN/run.lock`` names the process that runs it (pid, host, start time).

Written when a run starts or resumes, removed when it ends however it ends
(complete, failed, interrupted). A ``kill -9`` or a power cut leaves it
behind: a lock whose process is gone (or whose pid now belongs to another
process, told apart by its start time) is stale, and the run can be resumed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from toolkit.errors import TkError

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
        return True  # someone else's process
    return True


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


def acquire(run_dir: Path) -> None:
    """Claim ``run_dir`` for this process; refuse when another live process holds it."""
    refuse_if_held(run_dir)
    lock = run_dir / LOCK_FILE
    lock.unlink(missing_ok=True)  # stale, or none
    try:
        descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise TkError(f"{run_dir} was claimed by another tk process just now; it is running there.") from None
    except OSError as error:
        from toolkit.runs.folders import saving_error

        raise saving_error(lock, error) from None
    try:
        os.write(descriptor, json.dumps(this_process()).encode())
    except OSError as error:
        os.close(descriptor)
        lock.unlink(missing_ok=True)
        from toolkit.runs.folders import saving_error

        raise saving_error(lock, error) from None
    os.close(descriptor)


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
    """Remove the lock if this process holds it (best effort: the run's outcome matters more)."""
    lock = read_lock(run_dir)
    if lock and lock.get("pid") == os.getpid() and lock.get("host") == socket.gethostname():
        try:
            (run_dir / LOCK_FILE).unlink()
        except OSError:
            pass


def shown_status(run_dir: Path, status: str) -> str:
    """The status ``tk list --runs`` shows: a 'running' run whose process is gone is 'stale'."""
    if status != "running":
        return status
    state = holder(read_lock(run_dir))
    if state == "live":
        return "running"
    if state == "elsewhere":
        return f"running on {read_lock(run_dir).get('host')}?"
    from toolkit.training.checkpoints import latest

    return "stale (resumable)" if latest(run_dir / "checkpoints") is not None else "stale (start again)"
