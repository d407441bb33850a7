"""The `tk` command line: parse, call the engine, print.

The group and the session live in ``group``; the commands, by what they work on, in ``training`` (run,
list, sweep, compare), ``data`` (check, analyze-lengths), ``using`` (predict, evaluate, report),
``deploy`` (serve, export), ``trust`` (cv, audit) and ``tune``; this package puts them together and
holds the entry point.
"""

from __future__ import annotations

import os
import sys

from toolkit.cli import data, deploy, training, trust, tune, using  # noqa: F401  (registers the commands)
from toolkit.cli.group import Session, cli, quiet_libraries
from toolkit.errors import TkError


def main() -> None:
    """Entry point: plugin commands are added here, at start-up, never at import."""
    quiet_libraries()  # before the plugins load: a plugin that imports datasets would fix its bars on
    session = Session(_tasks_option(sys.argv[1:]))
    try:
        session.pm.hook.tk_register_commands(cli=cli)
    except TkError:
        pass  # the command itself will report the problem with the tasks file
    try:
        cli(prog_name="tk", obj=session)
    except SystemExit as done:
        if session.skip_teardown and done.code in (0, None):
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except OSError:  # a closed pipe (tk predict ... | head -1): the reader has what it wanted
                pass
            os._exit(0)
        raise


def _tasks_option(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--tasks" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--tasks="):
            return arg.split("=", 1)[1]
    return None
