"""The import graph of tk's own modules: no circles, and an import inside a function says why it is there.

Every import counts here, wherever it sits (inside a function, under ``if TYPE_CHECKING``): an import
moved into a function to dodge a circle still leaves the circle in the design.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNCOMMENTED_INSIDE_FUNCTIONS: set[str] = set()  # modules allowed an import inside a function without a comment


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> list[tuple[str, ast.stmt]]:
    """(imported tk module, statement) for every import of a tk module in ``path``. ``from toolkit.runs import
    tracking`` imports the module toolkit.runs.tracking; ``from toolkit.runs.folders import set_status`` the
    module toolkit.runs.folders."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            found += [(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module, node)
                      for alias in node.names]
    return found


def graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    paths = {module_name(path): path for path in sorted((ROOT / "toolkit").rglob("*.py"))}
    modules = set(paths)
    edges = {name: {target for target, _ in imports_of(path, modules) if target != name} for name, path in paths.items()}
    return edges, paths


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_two_modules_import_each_other_even_through_others():
    edges, _ = graph()
    assert circles(edges) == []


def test_the_circle_finder_finds_a_circle_through_a_third_module():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(edges) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_an_import_inside_a_function_says_why_on_its_line():
    """Only an optional or heavy dependency belongs inside a function (tk --help must not import torch),
    and its line says which: everything else is imported at the top of the module."""
    edges, paths = graph()
    modules = set(paths)
    unexplained = []
    for name, path in paths.items():
        if str(path.relative_to(ROOT)) in UNCOMMENTED_INSIDE_FUNCTIONS:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for _, node in imports_of(path, modules):
            if node.col_offset > 0 and not _under_type_checking(path, node) and "#" not in lines[node.lineno - 1]:
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unexplained == []


def _under_type_checking(path: Path, node: ast.stmt) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
               and any(child is node or (getattr(child, "lineno", None) == node.lineno) for child in ast.walk(block))
               for block in ast.walk(tree))
