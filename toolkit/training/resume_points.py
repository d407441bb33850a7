"""Resume points written on a background thread, so training never waits for the disk.

One format for every strategy: ``training_state.pt`` holds the weights, the
optimizer and schedule, every process's random state, the step, the number
of processes, and the best epoch's weights where they differ. The state is
copied on the device first (fast: it is the device's own memory); a second
thread moves the copy to the CPU on its own CUDA stream and writes it as a
checkpoint that is whole or absent (``checkpoints.write``: a staging
folder, fsynced, renamed into place).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from toolkit.training import checkpoints

STATE_FILE = checkpoints.TRAINING_STATE


def snapshot(value: Any) -> Any:
    """A copy of every tensor in a nested dict/list, still on its device."""
    return _map_tensors(value, lambda tensor: tensor.detach().clone())


def to_cpu(value: Any) -> Any:
    return _map_tensors(value, lambda tensor: tensor.cpu())


def _map_tensors(value: Any, change: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return change(value)
    if isinstance(value, dict):
        return {key: _map_tensors(item, change) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(item, change) for item in value)
    return value


class CheckpointWriter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, name: str, state: dict[str, Any], policy_state: dict[str, Any]) -> None:
        """Start writing ``state`` (a snapshot the caller no longer changes) as checkpoint ``name``."""
        self.wait()
        ready = torch.cuda.Event() if torch.cuda.is_available() else None
        if ready is not None:
            ready.record()
        self._thread = threading.Thread(target=self._write, args=(name, state, policy_state, ready), daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:  # a one-line TkError from checkpoints.write, or a bug's own exception
            error, self._error = self._error, None
            raise error

    def _write(self, name: str, state: dict[str, Any], policy_state: dict[str, Any], ready: Any) -> None:
        try:
            if ready is not None:
                side = torch.cuda.Stream()
                side.wait_event(ready)  # the snapshot's copies were queued before this event
                with torch.cuda.stream(side):
                    state = to_cpu(state)
            else:
                state = to_cpu(state)
            checkpoints.write(self.folder, name, lambda staged: torch.save(state, staged / STATE_FILE), policy_state)
            checkpoints.prune(self.folder)
        except BaseException as error:  # reported on the training thread by wait()
            self._error = error


def load(path: Path) -> dict[str, Any]:
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
