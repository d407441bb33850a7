"""A throwaway PostgreSQL server for a test: its own cluster in a temporary folder, on a free port, stopped after.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user Debian's package
creates. Without PostgreSQL's binaries (apt-get install postgresql) or psycopg the test skips.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def binaries() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1:]), None)
    return Path(found).resolve().parent if found else None  # resolved: a link in /usr/local/bin has no createdb


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server():
    """Yields the URL of a database `tk` that user `tk` may use without a password, on 127.0.0.1.

    The cluster's folder is made in the system's temporary folder, not pytest's: as root, pytest's is private
    to root, and the `postgres` user could not reach its own files there."""
    pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]': SQLAlchemy's PostgreSQL driver")
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); the PostgreSQL storage test needs it")
    folder = Path(tempfile.mkdtemp(prefix="tk-test-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # postgres will not run as root: hand the folder to its own user
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()

    def run(*command):
        done = subprocess.run([*as_owner, *command], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{Path(command[0]).name} failed: {done.stderr.strip()[-2000:]}"

    try:
        run(bin_dir / "initdb", "-D", data, "-U", "tk", "--auth=trust", "-E", "UTF8")
        run(bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "start",
            "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1")
        try:
            run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "tk", "tk")
            yield f"postgresql://tk@127.0.0.1:{port}/tk"
        finally:
            run(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
