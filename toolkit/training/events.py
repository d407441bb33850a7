"""What the training loop tells the rest of tk: events, each handed to every listener that has its method.

Listeners (the progress bar and epoch table, trackers, tk tune's pruner)
define any of ``on_start(total_steps, done_steps)``, ``on_step(global_step)``,
``on_epoch(record)``, ``on_checkpoint(path)`` and ``on_end()``. A listener may
end the run after an epoch by raising (``EndedEarly``); ``on_end`` is always
called, also when training stops with an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NAMES = ("start", "step", "epoch", "checkpoint", "end")


class Events:
    def __init__(self, listeners: Iterable[Any]) -> None:
        self.listeners = [listener for listener in listeners if listener is not None]

    def emit(self, name: str, *args: Any) -> None:
        assert name in NAMES, name
        for listener in self.listeners:
            method = getattr(listener, f"on_{name}", None)
            if method is not None:
                method(*args)
