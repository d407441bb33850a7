"""Helpers shared by the test modules (fixtures live in conftest.py)."""

import contextlib
import inspect
import json
import os
import signal
from pathlib import Path

from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.config import with_overrides
from toolkit.runs.pipeline import run_task
from toolkit.tasks_file import load_config
from toolkit.training.progress import Progress

TESTS = Path(__file__).parent
SHARED_DATA = TESTS.parent.parent / "shared" / "data"

TOY_TASKS = """
plugins = ["toy_plugin"]

[defaults]
model = "tiny"
max_length = 64
batch_size = 8
epochs = 4
learning_rate = 2e-3
validation_size = 40
seed = 1
patience = 5

[tasks.toy]
dataset = "toy"
data = "toy-data"

[tasks.toy3]
dataset = "toy3"
data = "toy3-data"
epochs = 6
"""


def tk(*args):
    """Invoke the CLI; a traceback (an exception other than a clean exit) fails the test."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def runner() -> CliRunner:
    """A CliRunner whose ``result.stdout`` is stdout alone and ``result.stderr`` stderr (click 8.2+ does that
    by default; 8.1, the floor, only with mix_stderr=False)."""
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


def tk_json(*args, exit_code=0):
    """Invoke the CLI with --json: stdout must be one JSON document. Returns (document, stderr)."""
    result = runner().invoke(cli, [str(a) for a in args] + ["--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result.stderr


def ok(*args):
    """Invoke the CLI and expect exit code 0; returns stdout."""
    result = tk(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails_with(message, *args):
    result = tk(*args)
    assert result.exit_code == 1, result.output
    assert message in result.output, result.output
    return result


def reseal(run_dir):
    """Record a run folder's checksums again after a test edited its files on purpose (tk would refuse it)."""
    from toolkit.runs.loader import record_checksums

    record_checksums(run_dir)
    return run_dir


def quiet():
    return Progress(lambda text: None, bar=False)


def toy_task(project, name="toy", **overrides):
    return with_overrides(load_config(project / "tasks.toml").task(name), overrides)


def train_toy(pm, project, output="runs", progress=None, **overrides):
    """tk run of the toy task with ``overrides``; returns the outcome."""
    return run_task(pm, toy_task(project, **overrides), output=project / output, base=project,
                    progress=progress or quiet())


class InterruptAt(Progress):
    """Sends this process a real SIGTERM at a given training step."""

    def __init__(self, step):
        super().__init__(echo=lambda text: None, bar=False)
        self.step, self.seen = step, 0

    def advance(self):
        self.seen += 1
        if self.seen == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def toy_environment(root, tiny_model):
    """What the autouse isolated_env fixture sets, for module-scoped fixtures (which cannot use it): the toy
    model, no Hub, no user data dir or tasks file, ``root`` as the current folder."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TK_TOY_MODEL", str(tiny_model))
        patch.setenv("HF_HUB_OFFLINE", "1")
        for name in ("TK_DATA_DIR", "TK_TASKS", "TK_DISABLE_PLUGINS"):
            patch.delenv(name, raising=False)
        patch.chdir(root)
        yield


def as_trained(probabilities, run_dir):
    """A run's saved-model probabilities with its calibration temperature undone: the best epoch's model as
    trained (tk run divides the head by model/config.json's tk_temperature; docs/metrics.md#calibration)."""
    from toolkit.evaluation.calibration import scaled

    temperature = json.loads((Path(run_dir) / "model" / "config.json").read_text()).get("tk_temperature")
    return probabilities if temperature is None else scaled(probabilities, 1 / temperature, multi_label=False)

