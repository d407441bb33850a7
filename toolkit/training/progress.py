"""How the engine reports to a person: a progress bar, the epoch table, notes.

The engine never imports Click; the CLI passes its own ``echo``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable
from typing import Any

from toolkit.records import EpochRecord

EPOCH_HEADER = f"{'epoch':>5}  {'train loss':>10}  {'val loss':>9}  {'val acc':>8}  {'val f1':>6}  {'seconds':>7}"


def format_epoch(record: EpochRecord, best: bool = False) -> str:
    train = "" if record.train_loss is None else f"{record.train_loss:.4f}"
    mark = "  *" if best else ""
    return (f"{record.epoch:>5}  {train:>10}  {record.validation_loss:>9.4f}  {record.accuracy:>8.4f}  "
            f"{record.f1:>6.4f}  {record.seconds:>7.1f}{mark}")


def draws_a_bar() -> bool:
    """A terminal, or a notebook (tqdm.auto draws a widget there); not a log file or a pipe, where a bar's
    redraws would become lines of spaces."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def fixed_bar_width() -> int | None:
    """None: the bar follows the terminal's width. A terminal that reports no width (a pseudo-terminal nobody
    sized, as under `script`) made tqdm draw a bar of width 0, nothing at all: 80 columns there."""
    try:
        return None if os.get_terminal_size(sys.stderr.fileno()).columns > 0 else 80
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # not a terminal: tqdm decides
        return None


class Progress:
    """Progress bar over training steps plus one table row per finished epoch."""

    def __init__(self, echo: Callable[[str], Any] = print, bar: bool = True) -> None:
        self.echo = echo
        self.show_bar = bar
        self._bar = None

    def note(self, text: str) -> None:
        self._write(text)

    def start(self, total_steps: int, done_steps: int = 0) -> None:
        self._write(EPOCH_HEADER)
        self._open_bar(total_steps, "step", done_steps)

    def count(self, total: int, unit: str) -> None:
        """A bar over ``total`` items of work that is not training (texts being scored), no epoch table."""
        self._open_bar(total, unit)

    def _open_bar(self, total: int, unit: str, initial: int = 0) -> None:
        if self.show_bar:
            from tqdm.auto import tqdm

            width = fixed_bar_width()
            self._bar = tqdm(total=total, initial=initial, unit=unit, leave=False, file=sys.stderr,
                             ncols=width, dynamic_ncols=width is None, disable=not draws_a_bar())

    def advance(self, done: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def epoch(self, record: EpochRecord) -> None:
        self._write(format_epoch(record))

    # As a listener of the training loop's events (toolkit.training.events).
    def on_start(self, total_steps: int, done_steps: int) -> None:
        self.start(total_steps, done_steps)

    def on_step(self, global_step: int) -> None:
        self.advance()

    def on_epoch(self, record: EpochRecord) -> None:
        self.epoch(record)

    def on_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.clear()
        try:
            self.echo(text)
        except BrokenPipeError:  # the reader went away (tk run | head): the run goes on, unheard
            self.echo = discard_output()
        if self._bar is not None:
            self._bar.refresh()


def discard_output() -> Callable[[str], None]:
    """After stdout's reader has gone: stdout to /dev/null (later prints, and Python's last flush, would raise
    again), a line on stderr, and an echo that says nothing. A run killed by its pipe lost its training."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # no file descriptor (a test's captured stdout)
        pass
    try:
        print("tk: the output's reader has gone (a closed pipe); the run goes on, and its folder gets everything.",
              file=sys.stderr)
    except OSError:
        pass
    return lambda text: None


def quiet_library_progress() -> None:
    """The libraries' own bars and load reports off (``Map``, ``Filter``, ``Loading weights``): tk draws its
    own bar. The environment variables the CLI sets work only before the libraries are imported; this works
    after too (a notebook, a test session, a plugin that imported them first)."""
    import datasets
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    disable_progress_bars()
    logging.disable_progress_bar()
    logging.set_verbosity_error()


@contextlib.contextmanager
def library_bars_off():
    """transformers' own progress bars ('Loading weights') off for a moment, then as they were: for loading a
    saved model from the Python API, where tk does not own the caller's settings."""
    from transformers.utils import logging

    was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            logging.enable_progress_bar()
