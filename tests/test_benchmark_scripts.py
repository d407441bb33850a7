"""The benchmark scripts are not run in CI (they take minutes to hours), so nothing else would notice a tk name
they import going away: benchmarks/speed.py imported a renamed helper inside a function and failed only when run."""

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def tk_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every ``from toolkit... import name`` or ``from plugins... import name`` in the
    file, at any depth (imports inside functions included)."""
    return [(node.module, alias.name) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
            and node.module.split(".")[0] in ("toolkit", "plugins") for alias in node.names]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_every_tk_name_a_benchmark_imports_exists(path):
    missing = []
    for module, name in tk_imports(path):
        found = importlib.import_module(module)
        if not hasattr(found, name):
            try:  # a submodule imported by name: from toolkit.runs import liveness
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"from {module} import {name}")
    assert not missing, f"{path.name} imports names tk no longer has: {missing}"
