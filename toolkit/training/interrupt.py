"""Ctrl-C / SIGTERM anywhere in a run: inside the training loop the first stops at a safe point (after the
current step), anywhere else (data preparation, evaluation, saving) at once; a second one always at once."""

from __future__ import annotations

import contextlib
import signal
import threading

_requested = threading.Event()
_safe_points = threading.Event()  # set while a training loop checks interrupt_requested() each step


class RunInterrupted(Exception):
    """Raised by the training loop at a safe point after the first Ctrl-C or SIGTERM."""

    def __init__(self, step: int | None = None) -> None:
        super().__init__(f"interrupted at step {step}" if step is not None else "interrupted")
        self.step = step


class EndedEarly(Exception):
    """Raised by a listener of the run's epochs (tk tune's pruner) to end the run after the epoch it was shown:
    not an error and not an interruption; the run is recorded with the epochs it finished."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(f"ended after epoch {epoch}: {reason}")
        self.epoch, self.reason = epoch, reason


def interrupt_requested() -> bool:
    return _requested.is_set()


@contextlib.contextmanager
def graceful_interrupts(note=print):
    """For a whole run: SIGINT/SIGTERM become KeyboardInterrupt, or a safe stop inside ``safe_points()``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        if _requested.is_set() or not _safe_points.is_set():
            _requested.set()
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
        _safe_points.clear()


@contextlib.contextmanager
def safe_points():
    """Within this block (the engine's training loop) the first signal only asks for a stop at the next step.
    A stop asked for while the loop had no step left to take (its last evaluation or checkpoint) stops here."""
    _safe_points.set()
    try:
        yield
    finally:
        _safe_points.clear()
    if _requested.is_set():
        raise RunInterrupted()
