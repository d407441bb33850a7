"""--json: one JSON document on stdout; progress, notes and warnings on stderr (docs/json.md).

While a command runs with --json, ``sys.stdout`` is stderr: the progress bar, the epoch table, notes and
any ``print`` of a library or plugin reach the terminal, not the pipe, and ``emit`` alone writes to the
real stdout. On an error nothing reaches stdout: one line on stderr and exit code 1, as without --json.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from typing import Any

import click

from toolkit.saving import safe_json

VERSION = 1  # raised when a field changes meaning or goes away; new fields keep it
STDOUT = "tk.json_stdout"  # the real stdout, in the Click context's meta while stdout is redirected


def json_option(command):
    """Adds --json to ``command`` (place it under the command's other options): with it, the command
    runs with stdout sent to stderr and prints its result with ``emit``."""

    @click.option("--json", "as_json", is_flag=True,
                  help="Print one JSON document on stdout (docs/json.md); the rest goes to stderr.")
    @functools.wraps(command)
    def with_json(*args, **kwargs):
        if not kwargs["as_json"]:
            return command(*args, **kwargs)
        click.get_current_context().meta[STDOUT] = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            return command(*args, **kwargs)

    return with_json


def schema_name(command: str) -> str:
    return f"tk.{command}/{VERSION}"


def emit(command: str, payload: dict[str, Any]) -> None:
    """Print the command's JSON document, its schema name first; strict JSON (NaN and infinities as null,
    as in the files tk writes), so ``jq`` and every other parser read it."""
    stdout = click.get_current_context().meta.get(STDOUT, sys.stdout)
    document = safe_json({"schema": schema_name(command), **payload})
    click.echo(json.dumps(document, indent=2, default=str, allow_nan=False), file=stdout)
