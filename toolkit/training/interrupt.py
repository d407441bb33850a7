"""Ctrl-C / SIGTERM during training: the first stops at a safe point, the second at once."""

from __future__ import annotations

import contextlib
import signal
import threading

_requested = threading.Event()


class RunInterrupted(Exception):
    """Raised by the training loop at a safe point after the first Ctrl-C or SIGTERM."""

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step = step


def interrupt_requested() -> bool:
    return _requested.is_set()


@contextlib.contextmanager
def graceful_interrupts(note=print):
    """Within this block the first SIGINT/SIGTERM asks for a safe stop; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        if _requested.is_set():
            raise KeyboardInterrupt
        _requested.set()
        note("\nStopping after this step (press Ctrl-C again to stop at once)...")

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    _requested.clear()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested.clear()
