"""A real `tk serve` process on a free port, and a small HTTP client for it (standard library only)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

STARTUP_SECONDS = 120  # loading torch and the model on a busy 2-core machine


class Server:
    def __init__(self, folder, *options, cwd=None, env=None):
        self.log = Path(cwd or ".") / f"serve-{os.getpid()}-{time.monotonic_ns()}.log"
        self.handle = open(self.log, "w")
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "toolkit", "serve", str(folder), "--port", "0",
                                         *map(str, options)], stdout=self.handle, stderr=subprocess.STDOUT,
                                        cwd=cwd, env=environment)
        self.url = self._wait_for_url()
        self._wait_until_healthy()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            found = re.search(r"(?:at |\"url\": \")(http://[^\s\"]+?:\d+)", self.output())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"tk serve exited with {self.process.returncode}: {self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"tk serve did not start: {self.output()}")

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"tk serve never answered /health: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method, path, body=None, token=None, headers=None, timeout=60):
        """(status, parsed JSON or text). ``body``: bytes as sent, or an object sent as JSON."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw, kind = response.status, response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as error:
            status, raw, kind = error.code, error.read(), error.headers.get("content-type", "")
        return status, (json.loads(raw) if "json" in kind else raw.decode())

    def stop(self, timeout=60) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.handle.close()
