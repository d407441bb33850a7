"""Random damage in every file of a finished run folder: every command gives a one-line error or the
intact run's answer, never a traceback or a number from the damaged run."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import reseal, runner
from tests.test_run_loader import finished, tasks_file  # noqa: F401  (the module's finished run)
from toolkit.cli import cli

WRONG_TYPES = [[], "text", 42, None, {"x": 1}, [1, 2], True]


def run_files(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def damage(path, kind, where, garbage, wrong):
    data = path.read_bytes()
    cut = int(where * len(data))
    if kind == "truncate":
        path.write_bytes(data[:cut])
    elif kind == "garbage":
        path.write_bytes(data[:cut] + garbage + data[cut + len(garbage):])
    elif kind == "delete":
        path.unlink()
    elif kind == "wrong type" and path.suffix == ".json":
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        if isinstance(value, dict) and value:
            key = sorted(value)[cut % len(value)]
            value[key] = wrong
        else:
            value = wrong
        path.write_text(json.dumps(value))
    else:  # a non-JSON file: its bytes reversed from ``where`` on
        path.write_bytes(data[:cut] + data[cut:][::-1])


def answers(run_dir, intact, tasks):
    """Each command's (exit code, stdout, stderr) on ``run_dir``."""
    commands = {
        "predict": ["predict", run_dir, "good film", "a bad film", "--json"],
        "evaluate": ["--tasks", tasks, "evaluate", run_dir, "--json"],
        "compare": ["compare", run_dir, intact, "--json"],
        "report": ["report", run_dir, "--output", run_dir.parent / "page.html", "--json"],
        "list": ["list", "--runs", "--output", run_dir.parent, "--json"],
    }
    found = {}
    for name, args in commands.items():
        result = runner().invoke(cli, [str(a) for a in args])
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
        assert "Traceback" not in result.stderr, (name, result.stderr)
        found[name] = (result.exit_code, result.stdout, result.stderr)
    return found


def comparable(name, stdout):
    """What must not change when a run answers: the numbers, without timings and paths."""
    document = json.loads(stdout)
    if name == "predict":
        return document["predictions"]
    if name == "evaluate":
        return {k: v for k, v in document["metrics"].items() if k not in ("seconds", "texts_per_second", "run")}
    if name == "compare":
        return [{k: v for k, v in row.items() if k not in ("label", "run_dir")} for row in document["runs"]]
    return None


def one_line_error(name, exit_code, stderr):
    assert exit_code == 1, (name, exit_code, stderr)
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), (name, stderr)
    return lines[-1]


@pytest.fixture(scope="module")
def reference(finished, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("reference")
    intact = shutil.copytree(finished, root / "intact")
    found = answers(intact, finished, tasks_file(finished))
    assert all(code == 0 for code, _, _ in found.values()), found
    return {name: comparable(name, out) for name, (_, out, _) in found.items()}


DAMAGE = dict(kind=st.sampled_from(["truncate", "garbage", "wrong type", "delete", "reverse"]),
              where=st.floats(0, 1), garbage=st.binary(min_size=1, max_size=64), wrong=st.sampled_from(WRONG_TYPES))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(index=st.integers(0, 10_000), **DAMAGE)
def test_damage_anywhere_gives_an_error_or_the_intact_answer(finished, reference, tmp_path_factory, index, kind,  # noqa: F811
                                                             where, garbage, wrong):
    run_dir = shutil.copytree(finished, tmp_path_factory.mktemp("damaged") / "run")
    files = run_files(run_dir)
    name = files[index % len(files)]
    damage(run_dir / name, kind, where, garbage, wrong)
    for command, (code, stdout, stderr) in answers(run_dir, finished, tasks_file(finished)).items():
        if command in ("list", "report"):
            assert code in (0, 1), (command, stderr)
            if code:
                one_line_error(command, code, stderr)
            continue
        if code == 0:  # it answered: the intact run's answer, to the last digit
            assert comparable(command, stdout) == reference[command], (name, kind, command)
        else:
            one_line_error(command, code, stderr)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(index=st.integers(0, 10_000), **DAMAGE)
def test_damage_the_checksums_cannot_see_is_still_no_traceback(finished, tmp_path_factory, index, kind, where,  # noqa: F811
                                                               garbage, wrong):
    """Damage recorded again in checksums.json (a run saved before tk kept them, or damage made before they were
    written): the loader's own checks and the model's give one-line errors, never a traceback."""
    run_dir = shutil.copytree(finished, tmp_path_factory.mktemp("resealed") / "run")
    files = [name for name in run_files(run_dir) if name != "checksums.json"]
    name = files[index % len(files)]
    damage(run_dir / name, kind, where, garbage, wrong)
    reseal(run_dir)
    for command, (code, _, stderr) in answers(run_dir, finished, tasks_file(finished)).items():
        if code:
            one_line_error(command, code, stderr)
