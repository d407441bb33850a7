"""The `tk` group and what every command shares: the session (tasks file, plugins), TkError turned into
one line (here only), --tasks anywhere on the line, the libraries quietened."""

from __future__ import annotations

import os
from functools import cached_property

import click

from toolkit.config import parse_assignment
from toolkit.errors import TkError, user_message
from toolkit.hub import HubUnreachable, offline_advice
from toolkit.memory import reuse_freed_memory
from toolkit.plugins import PluginManager
from toolkit.runs.loader import INCOMPLETE_FLAG, NotComplete
from toolkit.tasks_file import (
    Config,
    find_tasks_file,
    hoist_tasks_option,
    local_plugins,
    missing_tasks_file,
    parse_config,
    read_toml,
)
from toolkit.training import distributed


class Session:
    """What every command shares: the tasks file and the plugin manager, loaded on first use.

    The plugins come first: the local ones named in tasks.toml declare task
    keys that its tasks may use.
    """

    def __init__(self, tasks_file: str | None) -> None:
        self.tasks_path = find_tasks_file(tasks_file)
        self.tasks_named = bool(tasks_file or os.environ.get("TK_TASKS"))  # not found by looking
        self.skip_teardown = False  # set by skip_interpreter_teardown(); main() acts on it

    def has_tasks_file(self) -> bool:
        """Whether there is a tasks file to read. One named by --tasks or TK_TASKS must exist: a typo in its name
        would otherwise read as a file with no tasks ("No task 'sms'. Tasks in nosuch.toml: none")."""
        if self.tasks_named and not self.tasks_path.exists():
            raise missing_tasks_file(self.tasks_path)
        return self.tasks_path.exists()

    @cached_property
    def raw(self) -> dict:
        return read_toml(self.tasks_path)

    @cached_property
    def pm(self) -> PluginManager:
        local = local_plugins(self.raw, self.tasks_path) if self.tasks_path.exists() else ()
        return PluginManager().load(local, self.tasks_path.resolve().parent)

    @cached_property
    def config(self) -> Config:
        return parse_config(self.raw, self.tasks_path, self.pm.settings())


pass_session = click.make_pass_decorator(Session)


class TkGroup(click.Group):
    """Turns TkError into a short message and exit code 1, in one place; --tasks may follow the command."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_tasks_option(list(args)))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # not click's "Aborted!" (exit 1): what the command left, and exit 130
            click.echo(interrupted_line(ctx.invoked_subcommand), err=True)
            ctx.exit(130)
        except HubUnreachable as error:
            advice = offline_advice(ctx.obj.pm.models()) if error.about == "model" else ""
            raise_for_this_process(ctx, error, user_message(error) + advice)
        except TkError as error:
            raise_for_this_process(ctx, error, user_message(error) + incomplete_hint(self, ctx, error))
        except OSError as error:
            said = cache_problem(error)
            if said is None:
                raise
            raise click.ClickException(said) from None


def raise_for_this_process(ctx, error: TkError, message: str):
    """Exit 1 with tk's one-line error; under torchrun, once for the processes that share it."""
    line = distributed.error_line(message, error)
    if line is None:
        ctx.exit(1)
    raise click.ClickException(line) from None


# what a Ctrl-C leaves, by command; every file tk writes is written whole or not at all (toolkit.saving)
LEFT_BY_INTERRUPT = {
    "export": "nothing was written (an export is put in place only once it is checked)",
    "evaluate": "no evaluation was saved",
    "analyze-lengths": "no histogram was written",
    "audit": "audit.csv and any --write copy are each written whole or not at all; run it again for both",
    "report": "no page was written",
    "check": "nothing is written",
    "predict": "nothing is written",
}


def interrupted_line(command: str | None) -> str:
    """One line for a command stopped by Ctrl-C (tk run, cv and tune say their own first)."""
    left = LEFT_BY_INTERRUPT.get(command or "", "a file it was writing is left as it was (tk writes files whole "
                                                "or not at all)")
    return f"Interrupted: tk {command or ''} stopped; {left}."


def incomplete_hint(group: click.Group, ctx: click.Context, error: TkError) -> str:
    """For a run that is not complete, the way to use it anyway: only where the command has --allow-incomplete."""
    command = group.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
    takes_it = command is not None and any(param.name == "allow_incomplete" for param in command.params)
    causes = [error]
    while isinstance(causes[-1].__cause__, TkError):
        causes.append(causes[-1].__cause__)
    if takes_it and any(isinstance(cause, NotComplete) for cause in causes):
        return f" (To use it anyway, at your own risk: {INCOMPLETE_FLAG}.)"
    return ""


def cache_problem(error: OSError) -> str | None:
    """An OSError on the caches the libraries keep under HOME (datasets, the Hub, matplotlib), in words."""
    path = getattr(error, "filename", None)
    if not path:
        return None
    home = os.path.expanduser("~")
    roots = [os.environ.get(name) for name in ("HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME", "MPLCONFIGDIR")]
    if not any(root and str(path).startswith(root) for root in [*roots, home]):
        return None
    return (f"Cannot write the libraries' cache at {path} ({error.strerror}): HOME ({home}) or the cache folder is "
            "not writable. Point the caches at a folder you can write, e.g. HF_HOME=/tmp/hf XDG_CACHE_HOME=/tmp/cache "
            "tk ...")


@click.group(cls=TkGroup)
@click.option("--tasks", "tasks_file", metavar="PATH",
              help="The tasks file (default: $TK_TASKS, else ./tasks.toml, else the one shipped with tk).")
@click.version_option(package_name="tk-toolkit")
@click.pass_context
def cli(ctx, tasks_file):
    """tk: fine-tune and evaluate BERT-family text classifiers from a tasks.toml file."""
    if not isinstance(ctx.obj, Session):  # main() passes the session it loaded plugin commands with
        ctx.obj = Session(tasks_file)
    quiet_libraries()
    file_size_limit_as_error()
    reuse_freed_memory()


QUIET_LIBRARIES = {
    "TOKENIZERS_PARALLELISM": "true",  # the Rust tokenizers use every core
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # tk draws its own progress bar
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


def quiet_libraries() -> None:
    """Set before the libraries are imported (lazily, by the commands), so `tk --help` stays fast."""
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)


def file_size_limit_as_error() -> None:
    """Past ``ulimit -f`` the kernel sends SIGXFSZ, which kills tk mid-write with no message. Ignored,
    the write fails with EFBIG instead, and tk says which file and what to do (folders.saving_error)."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def parse_overrides(assignments: tuple[str, ...]) -> dict:
    return dict(parse_assignment(text) for text in assignments)


def skip_interpreter_teardown() -> None:
    """For a command that has written all it will: exit without tearing torch and transformers' modules down,
    which takes about a second (0.4 s for torch alone), a fifth of a one-text tk predict. Marked on this
    invocation's session, so only the main() that made it acts on it (tests invoke commands in-process, and
    must never exit), and only when the command succeeded."""
    context = click.get_current_context(silent=True)
    session = context.find_object(Session) if context is not None else None
    if session is not None:
        session.skip_teardown = True
