"""The docs cannot rot: every hook, key and command is documented, and the tutorial's code runs.

Regenerate docs/cli.md with: python tests/test_docs.py
"""

import glob
import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
FILE_BLOCK = re.compile(r"<!-- file: (?P<name>\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)
BASH_BLOCK = re.compile(r"```bash\n(?P<body>.*?)```", re.S)


def render_cli_reference() -> str:
    from toolkit.cli import cli

    parts = ["# CLI reference\n", "Generated from `tk --help`; `tests/test_docs.py` keeps it equal.\n"]
    commands = [("tk", [])] + [(f"tk {name}", [name]) for name in sorted(cli.commands)]
    for title, args in commands:
        result = CliRunner().invoke(cli, [*args, "--help"], prog_name="tk", terminal_width=100)
        parts.append(f"## {title}\n\n```\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def test_cli_reference_equals_help():
    assert (DOCS / "cli.md").read_text() == render_cli_reference(), "run: python tests/test_docs.py"


def test_every_command_has_json_and_a_section_in_json_md():
    from toolkit.cli import cli

    with_json = {name for name, command in cli.commands.items() if any(p.name == "as_json" for p in command.params)}
    assert with_json == set(cli.commands), f"commands without --json: {sorted(set(cli.commands) - with_json)}"
    text = (DOCS / "json.md").read_text()
    sections = dict(re.findall(r"^## `tk (.+?) --json`\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    assert set(sections) == with_json | {"list --runs"}, "docs/json.md: one section per command with --json"
    for name, body in sections.items():
        schema = f"tk.{name.replace(' --', '-')}/1"
        assert f"`\"{schema}\"`" in body, f"docs/json.md: the section of tk {name} does not name {schema}"


def test_every_hook_is_documented_with_its_exact_signature():
    from toolkit import hookspecs

    text = (DOCS / "hooks.md").read_text()
    hooks = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("tk_")]
    assert hooks
    for hook in hooks:
        signature = str(inspect.signature(hook)).replace("'", "")
        assert f"### {hook.__name__}\n" in text, f"{hook.__name__} missing from docs/hooks.md"
        assert f"{hook.__name__}{signature}" in text, f"docs/hooks.md: signature of {hook.__name__} differs"


def test_every_task_key_is_documented_with_its_default():
    from toolkit.config import CORE_SETTINGS
    from toolkit.plugins import PluginManager

    text = (DOCS / "tasks-toml.md").read_text()
    declared = PluginManager().load().settings()
    assert {"fast_dropout", "resume_point_seconds"} <= declared.keys()
    for name, setting in {**CORE_SETTINGS, **declared}.items():
        row = re.search(rf"^\| `{re.escape(name)}` \|(.*)$", text, re.M)
        assert row, f"{name} missing from docs/tasks-toml.md"
        if setting.plugin:
            assert f"`{setting.plugin}`" in row[1], f"{name}: its row does not name the plugin {setting.plugin}"
        if setting.default is not None:
            shown = str(setting.default).lower() if isinstance(setting.default, bool) else setting.default
            shown = json.dumps(list(shown)) if isinstance(shown, tuple) else shown  # as TOML writes a list
            shown = re.sub(r"e-0(\d)", r"e-\1", str(shown))  # 2e-05 is written 2e-5
            assert shown in row[1], f"{name}: its row does not show the default {setting.default!r}"


def test_architecture_tree_lists_every_module():
    text = (DOCS / "architecture.md").read_text()
    tree = text.split("```")[1]
    listed, stack = set(), []
    for line in tree.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or not match[2].endswith((".py", "/")):
            continue
        depth = len(match[1]) // 2
        stack[depth:] = [match[2].rstrip("/")]
        if match[2].endswith(".py"):
            listed.add("/".join(stack))
    actual = {str(p.relative_to(REPO)) for folder in ("toolkit", "plugins") for p in (REPO / folder).rglob("*.py")
              if not (p.name == "__init__.py" and p.stat().st_size == 0)}
    assert listed == actual, f"missing from the tree: {sorted(actual - listed)}; not in the code: {sorted(listed - actual)}"


def test_plugins_import_only_the_plugin_api():
    import ast

    for path in (REPO / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name == "toolkit" or (name.startswith("toolkit.") and name != "toolkit.api"):
                    raise AssertionError(f"{path.relative_to(REPO)} imports {name}; plugins import toolkit.api only")


def test_every_plugin_api_name_is_documented():
    from toolkit import api

    text = (DOCS / "hooks.md").read_text()
    section = text.split("## The plugin API", 1)[1]
    for name in api.__all__:
        assert re.search(rf"`{name}[`(]", section), f"toolkit.api.{name} is not documented in docs/hooks.md"


def test_every_error_case_in_the_table_has_a_test():
    rows = re.findall(r"^\| (.+?) \| .+? \| `(tests/\S+?)::(\w+)` \|$", (DOCS / "errors.md").read_text(), re.M)
    assert len(rows) >= 15
    for case, path, test in rows:
        assert re.search(rf"def {test}\(", (REPO / path).read_text()), f"{case}: {path}::{test} does not exist"


def trec_folder(tmp_path, shared_root):
    real = shared_root / "extra" / "trec"
    if real.is_dir():
        return real
    folder = tmp_path / "trec-data"  # the same format, made up, when ../shared is absent
    folder.mkdir()
    words = {"ABBR": "stand for", "DESC": "how why", "ENTY": "what film", "HUM": "who person",
             "LOC": "where city", "NUM": "how many"}
    for name, n in (("train_5500.label", 400), ("TREC_10.label", 120)):
        lines = [f"{label}:x {words[label]} question {i} ?" for i in range(n) for label in [list(words)[i % 6]]]
        (folder / name).write_text("\n".join(lines), encoding="latin-1")
    return folder


@pytest.mark.slow
def test_tutorial_plugin_installs_and_runs(tmp_path, monkeypatch):
    from tests.helpers import SHARED_DATA
    from toolkit.cli import cli

    text = (DOCS / "tutorial-dataset-plugin.md").read_text()
    project = tmp_path / "tk-trec"
    project.mkdir()
    for block in FILE_BLOCK.finditer(text):
        (project / block["name"]).write_text(block["body"])
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--target", str(site), str(project)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.chdir(project)
    monkeypatch.setenv("TK_TASKS", str(project / "tasks.toml"))
    data = trec_folder(tmp_path, SHARED_DATA)

    sys.modules.pop("tk_trec", None)
    from test_tk_trec import test_trec_keeps_the_contract

    (tmp_path / "kit").mkdir()
    test_trec_keeps_the_contract(tmp_path / "kit")
    # the same contract test for the plugin listed in tasks.toml rather than installed (the page's second form)
    listed = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if '.load(("tk_trec",)' in block)
    with monkeypatch.context() as patch:
        patch.setenv("TK_DISABLE_PLUGINS", "trec")  # the installed entry point, which the listed module repeats
        (tmp_path / "listed").mkdir()
        (tmp_path / "listed" / "train_5500.label").write_text(
            "\n".join(f"{label}:x question {i} ?" for i, label in enumerate(["ABBR", "DESC", "ENTY", "HUM", "LOC",
                                                                            "NUM"] * 3)), encoding="latin-1")
        code = compile("from toolkit.plugins import PluginManager\nfrom toolkit.testing import check_dataset_plugin\n"
                       + listed, "tutorial-dataset-plugin.md", "exec")
        exec(code, {"__file__": str(project / "test_listed.py"), "tmp_path": tmp_path / "listed"})  # noqa: S102 the page's

    commands = [line for block in BASH_BLOCK.finditer(text) for line in block["body"].splitlines()
                if line.startswith("tk ")]
    assert [c.split()[1] for c in commands] == ["list", "check", "analyze-lengths", "run", "predict"]
    for command in commands:
        args = shlex.split(command.replace("../shared/data/extra/trec", str(data)))[1:]
        args = [next(iter(glob.glob(a)), a) if "*" in a else a for a in args]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        if args[0] == "list":
            assert "package tk-trec 0.1.0" in result.output
        if args[0] == "run":
            assert "ABBR" in result.output and "accuracy" in result.output
        if args[0] == "predict":
            assert result.stdout.split()[0] in ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


def test_model_plugin_page_runs(tmp_path, monkeypatch, tiny_model):
    from toolkit.plugins import PluginManager

    text = (DOCS / "model-plugin.md").read_text()
    blocks = {b["name"]: b["body"] for b in FILE_BLOCK.finditer(text)}
    (tmp_path / "my_models.py").write_text(blocks["my_models.py"])
    monkeypatch.setenv("MY_MODEL_DIR", str(tiny_model))
    pm = PluginManager().load(("my_models",), tmp_path)
    info = pm.model("my-bert")
    model = pm.hook.tk_load_model(model=info, labels=("a", "b", "c"))
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert pm.hook.tk_load_tokenizer(model=info) is not None


def test_engine_example_in_hooks_md_trains_through_the_core_loop(project):
    """The step strategy of docs/hooks.md, as a third-party engine: the core loop trains a complete run with it."""
    text = (DOCS / "hooks.md").read_text()
    blocks = {b["name"]: b["body"] for b in FILE_BLOCK.finditer(text)}
    (project / "my_engine.py").write_text(blocks["my_engine.py"])
    tasks = project / "tasks.toml"
    tasks.write_text(tasks.read_text().replace('plugins = ["toy_plugin"]', 'plugins = ["toy_plugin", "my_engine"]'))
    result = CliRunner().invoke(__import__("toolkit.cli", fromlist=["cli"]).cli,
                                ["run", "toy", "--set", "engine=my-steps", "--set", "epochs=2", "--output", "runs"])
    assert result.exit_code == 0, result.output
    assert "Engine: my-steps (set by the task)" in result.output
    run_dir = next((project / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["training"]["strategy"] == "my-steps" and manifest["training"]["global_steps"] == 2 * 20
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 2


if __name__ == "__main__":
    (DOCS / "cli.md").write_text(render_cli_reference())
    print("wrote docs/cli.md")
