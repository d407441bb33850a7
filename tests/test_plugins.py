import sys
from pathlib import Path

import pytest

from toolkit import hookimpl
from toolkit.errors import TkError
from toolkit.plugins import PluginManager
from toolkit.records import DatasetInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The built-in plugins, as pyproject.toml declares them: the tests load them from the installed entry points
BUILTINS = set(tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
               ["project"]["entry-points"]["tk"])


class ImdbAgain:
    @hookimpl
    def tk_register_datasets(self, register):
        register(DatasetInfo("imdb", ("a", "b")))


def test_builtins_come_through_entry_points():
    pm = PluginManager().load()
    origins = {p.name: p.origin for p in pm.plugins()}
    assert {name for name, origin in origins.items() if origin == "built-in"} == BUILTINS
    assert {"imdb", "sentiment140"} <= pm.datasets().keys()
    assert {"bert-uncased", "bert-cased", "minilm"} <= pm.models().keys()
    assert pm.datasets()["imdb"].labels == ("neg", "pos")


def test_nothing_is_loaded_before_load():
    assert PluginManager().plugins() == []


def test_duplicate_dataset_names_both_plugins():
    pm = PluginManager().load()
    pm.register(ImdbAgain(), "imdb-again")
    try:
        with pytest.raises(TkError, match=r"Two plugins register the dataset 'imdb': 'imdb'.*'imdb-again'|'imdb-again'.*'imdb'"):
            pm.datasets()
    finally:
        pm.unregister("imdb-again")
    assert pm.datasets()["imdb"].plugin == "imdb"


def test_disable_plugins_by_name(monkeypatch):
    monkeypatch.setenv("TK_DISABLE_PLUGINS", "imdb, bert")
    pm = PluginManager().load()
    assert "imdb" not in pm.datasets()
    assert "bert-uncased" not in pm.models()
    assert "sentiment140" in pm.datasets()


def test_local_module_from_tasks_toml(pm):
    origins = {p.name: p.origin for p in pm.plugins()}
    assert origins["toy_plugin"].startswith("local module")
    assert "toy" in pm.datasets()


def test_unknown_names_list_what_exists():
    pm = PluginManager().load()
    with pytest.raises(TkError, match="Unknown dataset 'imbd'. Did you mean 'imdb'.*Available datasets: files, imdb, sentiment140"):
        pm.dataset("imbd")
    with pytest.raises(TkError, match="Unknown model 'minlm'. Did you mean 'minilm'"):
        pm.model("minlm")


def test_missing_local_module_is_a_clear_error(tmp_path):
    with pytest.raises(TkError, match="Cannot import plugin module 'nope_plugin'"):
        PluginManager().load(("nope_plugin",), tmp_path)


def test_trace_plugins_logs_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("TK_TRACE_PLUGINS", "1")
    pm = PluginManager().load()
    pm.hook.tk_label_mapping(dataset=pm.dataset("imdb"))
    assert "tk_label_mapping" in capsys.readouterr().err


class HelloCommand:
    @hookimpl
    def tk_register_commands(self, cli):
        import click

        @cli.command()
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")


def test_a_plugin_adds_a_cli_command():
    import click
    from click.testing import CliRunner

    pm = PluginManager().load()
    pm.register(HelloCommand(), "hello")
    group = click.Group("tk")
    pm.hook.tk_register_commands(cli=group)
    result = CliRunner().invoke(group, ["hello"])
    assert result.exit_code == 0 and result.output == "hello from a plugin\n"


@pytest.mark.parametrize("entry, message", [
    ("../../x", "tasks.toml 'plugins': '../../x' is not a module name. List Python module names"),
    ("", "tasks.toml 'plugins': '' is not a module name."),
    ("broken", "Plugin module 'broken' listed in tasks.toml 'plugins' has a syntax error: "),
    ("failing", "Plugin module 'failing' listed in tasks.toml 'plugins' failed to import: ZeroDivisionError: "),
])
def test_bad_plugin_entry_is_one_line_error_and_help_still_works(project, monkeypatch, capsys, entry, message):
    from tests.helpers import fails_with
    from toolkit.cli import main

    (project / "broken.py").write_text("def f(:\n    pass\n")
    (project / "failing.py").write_text("x = 1 / 0\n")
    (project / "tasks.toml").write_text((project / "tasks.toml").read_text().replace(
        'plugins = ["toy_plugin"]', f'plugins = ["toy_plugin", "{entry}"]'))
    monkeypatch.setattr("sys.argv", ["tk", "--help"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 0 and "Usage: tk" in capsys.readouterr().out
    result = fails_with(message, "list")
    if entry == "broken":
        assert "broken.py, line 1)" in result.output


def test_local_plugins_are_loaded_by_path_and_cannot_shadow_libraries(project, tmp_path_factory):
    import subprocess
    import sys

    (project / "tasks.toml").write_text((project / "tasks.toml").read_text().replace(
        'plugins = ["toy_plugin"]', 'plugins = ["toy_plugin", "datasets"]'))
    (project / "datasets.py").write_text("from toolkit import hookimpl\nLOCAL = True\n")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    code = ("import sys; from pathlib import Path; from toolkit.tasks_file import load_config; "
            "from toolkit.plugins import PluginManager; p = Path(sys.argv[1]); "
            "pm = PluginManager().load(load_config(p / 'tasks.toml').plugins, p); "
            "import datasets; assert str(p) not in sys.path; "
            "print(datasets.__file__, sys.modules['tk_local_plugins.datasets'].LOCAL, "
            "sorted(x.name for x in pm.plugins() if x.origin.startswith('local')))")
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", code, str(project)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout and "True ['datasets', 'toy_plugin']" in out.stdout


def test_local_plugin_package_may_import_its_own_modules(tmp_path):
    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "helper.py").write_text("NAME = 'from-helper'\n")
    (package / "__init__.py").write_text(
        "from toolkit import hookimpl\nfrom toolkit.records import DatasetInfo\nfrom .helper import NAME\n\n"
        "@hookimpl\ndef tk_register_datasets(register):\n    register(DatasetInfo(NAME, ('a', 'b')))\n")
    pm = PluginManager().load(("my_pkg",), tmp_path)
    assert pm.datasets()["from-helper"].plugin == "my_pkg"


def test_loading_every_builtin_plugin_leaves_torch_unimported():
    """Plugins load on every command, tk --help included: torch's import (1-2 s) belongs to the commands that
    compute (a plugin-API name that imported torch at the top once made tk --help take 2.3 s)."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from toolkit.cli import cli; "
            "result = CliRunner().invoke(cli, ['--help']); assert result.exit_code == 0, result.output; "
            "from toolkit.plugins import PluginManager; PluginManager().load(); "
            "print(sorted(name for name in ('torch', 'transformers', 'datasets') if name in sys.modules))")
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_local_plugin_that_imports_datasets_first_leaves_its_bars_off(tmp_path):
    """tk turns the libraries' bars off before it loads the plugins: one that imports datasets at its top
    would otherwise fix them on, and tk check would print 'Map: 100%' lines."""
    import os
    import subprocess
    import sys

    (tmp_path / "tasks.toml").write_text('plugins = ["bars_plugin"]\n')
    (tmp_path / "bars_plugin.py").write_text(
        "import datasets\nfrom toolkit.api import DatasetInfo, LabelMapping, hookimpl\n\n"
        "@hookimpl\ndef tk_register_datasets(register):\n    register(DatasetInfo('bars', ('a', 'b')))\n\n"
        "@hookimpl\ndef tk_label_mapping(dataset):\n"
        "    return LabelMapping({'a': 0, 'b': 1}) if dataset.name == 'bars' else None\n\n"
        "@hookimpl\ndef tk_load_dataset(dataset, source):\n    if dataset.name != 'bars':\n        return None\n"
        "    def rows(split):\n"
        "        return datasets.Dataset.from_dict({'text': [f'{split} text {i}' for i in range(60)],\n"
        "                                           'label': ['a', 'b'] * 30})\n"
        "    return datasets.DatasetDict({'train': rows('train'), 'test': rows('test')})\n")
    env = {key: value for key, value in os.environ.items() if "PROGRESS" not in key and "VERBOSITY" not in key}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-m", "toolkit", "check", "bars"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "class_balance" in done.stdout or "classes" in done.stdout, done.stdout
    assert "Map" not in done.stderr and "Map" not in done.stdout, done.stderr
