import pytest

from toolkit import hookimpl
from toolkit.errors import TkError
from toolkit.plugins import PluginManager
from toolkit.records import DatasetInfo

BUILTINS = {"imdb", "sentiment140", "bert", "minilm", "trainer", "metrics", "lengths"}


class ImdbAgain:
    @hookimpl
    def tk_register_datasets(self, register):
        register(DatasetInfo("imdb", ("a", "b")))


def test_builtins_come_through_entry_points():
    pm = PluginManager().load()
    origins = {p.name: p.origin for p in pm.plugins()}
    assert BUILTINS <= origins.keys()
    assert all(origins[name] == "built-in" for name in BUILTINS)
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
    with pytest.raises(TkError, match="Unknown dataset 'imbd'. Did you mean 'imdb'.*Available datasets: imdb, sentiment140"):
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
