"""tk serve, tk export: from a run to a service (docs/deploy.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from toolkit.cli.group import cli, pass_session
from toolkit.cli.json_output import emit, json_option
from toolkit.cli.params import FiniteRange
from toolkit.cli.using import existing_run
from toolkit.errors import TkError
from toolkit.runs.export import export_run
from toolkit.runs.exported import export_of
from toolkit.serving.limits import ServeSettings
from toolkit.serving.server import LOOPBACK, check_host
from toolkit.serving.server import serve as run_server


def require(modules: tuple[str, ...], extra: str, command: str) -> None:
    """A missing optional library is a one-line error that names the extra to install."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise TkError(f"{command} needs {', '.join(missing)}, not installed; install it with: "
                      f"pip install 'tk-toolkit[{extra}]'")


def positive(kind):
    return click.IntRange(min=1) if kind is int else FiniteRange(min=0)


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 listens on every interface (then set a token).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one (printed at start).")
@click.option("--token", envvar="TK_SERVE_TOKEN", metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' on every endpoint but /health (default: "
                   "$TK_SERVE_TOKEN; none).")
@click.option("--workers", default=1, show_default=True, type=positive(int),
              help="Processes, each with its own copy of the model, sharing the port.")
@click.option("--max-batch", default=32, show_default=True, type=positive(int),
              help="Texts in one forward pass, gathered from the requests waiting.")
@click.option("--max-wait-ms", default=5.0, show_default=True, type=positive(float),
              help="How long a request may wait for others to share its forward pass.")
@click.option("--max-texts", default=256, show_default=True, type=positive(int),
              help="Texts in one request; more is refused with 413.")
@click.option("--max-body", "max_body_bytes", default=1_048_576, show_default=True, type=positive(int),
              help="Bytes in one request body; more is refused with 413.")
@click.option("--onnx", is_flag=True,
              help="Serve the run's ONNX export (RUN/onnx, else RUN/onnx-int8; tk export writes them) instead of "
                   "its PyTorch model. RUN may also be an export folder itself (tk serve RUN/onnx-int8).")
@click.option("--access-log", is_flag=True,
              help="Log each request to stderr: time, client address, request line, status.")
@json_option
def serve(run_dir, host, port, token, workers, max_batch, max_wait_ms, max_texts, max_body_bytes, onnx, access_log,
          as_json):
    """Serve the model saved in RUN over HTTP: POST /predict, GET /health, /ready, /metadata, /metrics."""
    require(("uvicorn", "starlette", "prometheus_client"), "serve", "tk serve")
    folder = export_of(existing_run(run_dir)) if onnx else existing_run(run_dir)
    if token is not None and not token.strip():
        raise TkError("The token (--token or TK_SERVE_TOKEN) is empty; give a token, or leave --token and "
                      "TK_SERVE_TOKEN unset to serve without one.")
    if token is None and "TK_SERVE_TOKEN" in os.environ:  # click reads an empty variable as unset
        raise TkError("TK_SERVE_TOKEN is set but empty (a variable that expanded to nothing?): serving would need "
                      "no token. Give it a token, or unset it to serve without one.")
    check_host(host)  # a host this machine cannot listen on is refused before the warning below
    if host not in LOOPBACK and token is None:
        click.echo(f"WARNING: listening on {host} without a token: anyone who can reach this machine can use "
                   "the model. Set --token (or TK_SERVE_TOKEN), or put it behind a proxy that authenticates.",
                   err=True)
    settings = ServeSettings(str(folder), token, max_batch, max_wait_ms, max_texts, max_body_bytes)

    def listening(about: dict) -> None:
        if as_json:  # one document as soon as the port is open: a script reads the URL (--port 0) from it
            emit("serve", about)
        else:
            click.echo(f"Serving {about['folder']} ({about['backend']}, labels: {', '.join(about['labels'])}) at "
                       f"{about['url']}" + (f" with {workers} worker processes" if workers > 1 else "")
                       + f"; POST {about['url']}/predict. Ctrl-C or SIGTERM stops it (requests received are answered "
                       "first).", err=True)

    run_server(settings, host, port, workers, listening, access_log)
    click.echo(f"Stopped serving {folder}.", err=True)  # after the drain: a log shows the end was deliberate


@cli.command(name="export")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--format", "export_format", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="The format to write.")
@click.option("--quantize", type=click.Choice(["int8"]), help="Quantize the weights to int8 (ONNX Runtime's dynamic "
              "quantization; default: float32).")
@click.option("--output", type=click.Path(path_type=Path), metavar="PATH",
              help="The folder to write (default: RUN/onnx, or RUN/onnx-int8 with --quantize int8).")
@click.option("--check-data", metavar="FILE", help="Check the export on every row of this file (default: the run's "
              "test rows, as tk evaluate scores them).")
@click.option("--min-agreement", default=0.99, show_default=True, type=FiniteRange(0, 1),
              help="The share of checked rows on which the export must give the run's answer, or nothing is written.")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Fuse attention, LayerNorm and GELU into ONNX Runtime's operators (faster; the file then runs "
              "in ONNX Runtime only). --no-fuse keeps standard ONNX operators for other runtimes.")
@json_option
@pass_session
def export(session, run_dir, export_format, quantize, output, check_data, min_agreement, fuse, as_json):
    """Export the model saved in RUN to ONNX, checked against the run's own model before it is written."""
    require(("onnx", "onnxruntime", "onnxscript"), "export", "tk export")
    existing_run(run_dir)
    if check_data is not None and not Path(check_data).exists():
        raise TkError(f"--check-data: {check_data} does not exist. Check the path, or leave --check-data out to "
                      "check on the run's test rows.")
    manifest = export_run(session.pm, run_dir, quantize, output, check_data, min_agreement, click.echo, fuse)
    if as_json:
        emit("export", manifest)
    else:
        click.echo(f"Wrote {manifest['folder']}")
