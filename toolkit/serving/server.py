"""Running tk serve: the model loaded and warmed up, a socket bound, uvicorn in one process or --workers N."""

from __future__ import annotations

import copy
import os
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.errors import TkError
from toolkit.runs.exported import load_run_or_export
from toolkit.serving.limits import ServeSettings
from toolkit.training.device import use_bf16

GRACEFUL_SECONDS = 30  # SIGTERM: how long requests already received may take to be answered
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def load_model(folder: Path) -> Any:
    """The run (tk predict's loading path, and its refusals of an incomplete or damaged run), warmed up so that
    the first request does not pay for the first forward pass."""
    model = load_run_or_export(folder, bare=True)
    keep_cpu_kernels(model)
    model.probabilities(["warm-up"])
    return model


def keep_cpu_kernels(model: Any) -> None:
    """tk's bf16 CPU path swaps in oneDNN layers with bf16 copies of the weights at each call, which a one-call
    tk predict pays once and a server would pay per batch. Entered here for the life of the process, the same
    layers score every batch (predict_probabilities' own entry then changes nothing), so the answers stay
    tk predict's."""
    network = getattr(model, "model", None)  # None for an ONNX export
    if network is None or not use_bf16(model.task.bf16) or next(network.parameters()).device.type != "cpu":
        return
    from toolkit.evaluation.cpu_inference import fused_cpu_inference  # torch: imported when used, not at tk's start

    held = fused_cpu_inference(network)
    held.__enter__()  # never exited: the server holds the model until it exits
    model.held_kernels = held


def app_from_environment() -> Any:
    """uvicorn's app factory in each --workers process: the settings come from the parent's environment."""
    from toolkit.serving.app import create_app  # starlette: imported when used, not at tk's start

    settings = ServeSettings.from_environment()
    return create_app(load_model(Path(settings.folder)), settings)


def check_host(host: str) -> None:
    """--host is an address of this machine, or a name that resolves to one: tried on a free port (0) before
    anything else is said, so that a typo is refused in one line, not after the no-token warning of a host
    that is not loopback (the real bind, on --port, comes once the model is loaded)."""
    if not host.strip():  # bind() reads "" as every interface: most likely a variable that expanded to nothing
        raise TkError("--host is empty; give an address: --host 127.0.0.1 (this machine only) or --host 0.0.0.0 "
                      "(every interface; then set --token).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError as error:  # socket.gaierror (a name that does not resolve) is one too
        raise TkError(f"--host {host}: cannot listen there ({error.strerror or error}): it is not an address of "
                      "this machine. Use --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface; "
                      "then set --token).") from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and with it on, each response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        # the host was checked (check_host): what fails here is the port (in use, or one only root may take)
        raise TkError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)  # the --workers processes accept on it
    return sock


def serve(settings: ServeSettings, host: str, port: int, workers: int,
          listening: Callable[[dict[str, Any]], None], access_log: bool = False) -> None:
    """Serve until SIGTERM or Ctrl-C; then answer the requests already received and return (exit code 0).
    ``listening`` is told where (url, labels, ...) once the port is open and the model loaded; ``access_log``
    writes one line per request to stderr."""
    import uvicorn

    model = load_model(Path(settings.folder))  # refused here, before the port opens, as tk predict refuses it
    sock = bind(host, port)
    port = sock.getsockname()[1]
    options = dict(log_config=logging_config(access_log), log_level=None, access_log=access_log,
                   timeout_graceful_shutdown=GRACEFUL_SECONDS, lifespan="on", server_header=False)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if workers == 1:
        from toolkit.serving.app import create_app  # starlette: imported when used, not at tk's start

        server = uvicorn.Server(uvicorn.Config(create_app(model, settings), **options))
        listening(described(settings, url, model, workers))
        with drained_signals_exit_cleanly():
            server.run(sockets=[sock])
        return
    about = described(settings, url, model, workers)
    del model  # each worker loads its own
    from uvicorn.supervisors import Multiprocess

    settings.to_environment()
    with tempfile.TemporaryDirectory(prefix="tk-serve-metrics-") as counts:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = counts
        config = uvicorn.Config("toolkit.serving.server:app_from_environment", factory=True, workers=workers,
                                **options)
        listening(about)
        Multiprocess(config, [sock]).run()


def logging_config(access_log: bool) -> dict[str, Any]:
    """uvicorn's own logging, quieter: its start-up chatter off (tk prints where it serves), warnings and errors
    kept, and with ``access_log`` one timestamped line per request, on stderr so that --json's stdout stays
    one document."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"]["fmt"] = '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s'
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else "WARNING"
    return config


def described(settings: ServeSettings, url: str, model: Any, workers: int) -> dict[str, Any]:
    return {"url": url, "folder": settings.folder, "backend": getattr(model, "backend", "pytorch"),
            "labels": list(model.labels), "workers": workers, "pid": os.getpid(), "token": settings.token is not None}


class drained_signals_exit_cleanly:
    """uvicorn drains on SIGTERM / SIGINT, then raises the signal again for the handler it found: a handler that
    does nothing lets tk exit 0 (a drained shutdown is a success) instead of dying by the signal."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self) -> None:
        self.previous = {sig: signal.signal(sig, lambda number, frame: None) for sig in self.SIGNALS}

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
