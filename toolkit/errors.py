"""The one error type that means "tell the user, no traceback needed"."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TkError(Exception):
    """A problem the user can fix: the CLI prints the message and exits 1.

    Anything else that escapes is a bug in tk or a plugin and keeps its traceback.
    """


def suggest(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest valid name, or '' if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> TkError:
    """The catalogue-style lookup error: says what exists and what is closest."""
    choices = sorted(choices)
    available = ", ".join(choices) if choices else "(none)"
    return TkError(f"Unknown {kind} '{name}'.{suggest(name, choices)} Available {kind}s: {available}.")


def user_message(error: BaseException) -> str:
    """The message of a TkError and of the TkErrors it was raised from, outermost first.

    Context is added by chaining (``raise TkError("task 'x', key 'model'") from error``),
    never by gluing strings, so each layer says only what it knows.
    """
    parts = [str(error)]
    cause = error.__cause__
    while isinstance(cause, TkError):
        parts.append(str(cause))
        cause = cause.__cause__
    return ": ".join(part.rstrip(":") for part in parts if part)
