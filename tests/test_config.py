from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import fails_with
from toolkit.config import parse_assignment, with_overrides
from toolkit.errors import TkError
from toolkit.tasks_file import load_config, parse_config

REPO_TASKS = Path(__file__).parent.parent / "tasks.toml"


def write(tmp_path, text):
    path = tmp_path / "tasks.toml"
    path.write_text(text)
    return path


def refused(tmp_path, text, message):
    """tasks.toml ``text`` fails to load with a TkError matching ``message``."""
    with pytest.raises(TkError, match=message):
        load_config(write(tmp_path, text))


def test_shipped_tasks_have_the_reference_settings():
    config = load_config(REPO_TASKS)
    imdb = config.task("imdb-bert")
    assert (imdb.max_length, imdb.batch_size, imdb.epochs, imdb.learning_rate, imdb.weight_decay) == (
        128, 16, 3, 2e-5, 0.01)
    assert (imdb.train_size, imdb.eval_size, imdb.seed) == (2000, 500, 42)
    tweets = config.task("sentiment140-bert-cased")
    assert (tweets.max_length, tweets.epochs, tweets.model) == (70, 2, "bert-cased")
    assert {"imdb-minilm", "sentiment140-minilm", "imdb-bert-cased", "sentiment140-bert"} <= set(config.tasks)


def test_malformed_toml_names_file_line_and_column(tmp_path):
    refused(tmp_path, "[tasks.a]\ndataset = \n", r"tasks.toml: not valid TOML: .*line 2")


def test_a_key_or_table_given_twice_names_the_file_the_key_both_lines_and_the_fix(tmp_path):
    """tomllib says only 'Cannot overwrite a value (at line 5, column 11)': no key, no table, no first line."""
    path = write(tmp_path, '[tasks.a]\ndataset = "imdb"\nmodel = "minilm"\nepochs = 2\nepochs = 3\n')
    result = fails_with(f"Error: {path}, line 5: the key 'epochs' is set twice in [tasks.a] (first on line 4); TOML "
                        "allows each key once in a table. Delete the line you do not mean.\n", "--tasks", path,
                        "check", "a")
    assert result.output.count("\n") == 1
    # a list over several lines: tomllib names the line where the value ends, the message the key's
    write(tmp_path, '[tasks.a]\ndataset = "imdb"\nlabels = ["x", "y"]\nlabels = [\n  "x",\n  "y",\n]\n')
    fails_with("line 4: the key 'labels' is set twice in [tasks.a] (first on line 3)", "--tasks", path, "check", "a")
    write(tmp_path, '[tasks.a]\ndataset = "imdb"\n\n[tasks.b]\ndataset = "imdb"\n\n[ tasks . "a" ]\nmodel = "x"\n')
    fails_with(f"{path}, line 7: the table [tasks.a] appears twice (first on line 1); TOML allows each table once. "
               "Merge the two into one [tasks.a] table.", "--tasks", path, "check", "a")


def test_unknown_key_suggests_the_closest(tmp_path):
    refused(tmp_path, '[tasks.a]\ndataset = "imdb"\nmodel = "minilm"\nepoch = 2\n',
            r"tasks.toml: task 'a': unknown key 'epoch'. Did you mean 'epochs'\?")


def test_wrong_type_names_task_and_key(tmp_path):
    refused(tmp_path, '[tasks.a]\ndataset = "imdb"\nmodel = "minilm"\nepochs = "three"\n',
            r"task 'a': key 'epochs' must be an integer, got 'three'")


@pytest.mark.parametrize("assignment,said", [
    ("labels=ham,spam", """key 'labels' must be a list of strings, got 'ham,spam'. Write it as labels = ["ham", "spam"]"""),
    ("labels=3", "key 'labels' must be a list of strings, got 3."),
    ("label_columns=spam", """key 'label_columns' must be a list of strings, got 'spam'. Write it as label_columns = ["spam"] """
                           """in the task, or --set 'label_columns=["spam"]'."""),
])
def test_list_keys_are_type_checked_from_set_and_tasks_toml(tmp_path, assignment, said):
    from tests.helpers import fails_with

    (tmp_path / "tasks.toml").write_text('[tasks.sms]\ndataset = "files"\ndata = "sms.csv"\nmodel = "minilm"\n')
    fails_with(said, "check", "sms", "--set", assignment)
    (tmp_path / "tasks.toml").write_text('[tasks.sms]\ndataset = "files"\nmodel = "minilm"\nlabels = "ham,spam"\n')
    fails_with("tasks.toml: task 'sms': key 'labels' must be a list of strings, got 'ham,spam'", "list")


def test_bool_is_not_an_integer(tmp_path):
    refused(tmp_path, '[tasks.a]\ndataset = "imdb"\nmodel = "minilm"\nbatch_size = true\n', "batch_size")


def test_bad_choice_lists_the_valid_ones(tmp_path):
    refused(tmp_path, '[tasks.a]\ndataset = "imdb"\nmodel = "minilm"\ntruncation = "tial"\n',
            r"'head', 'tail', 'head\+tail'.*Did you mean 'tail'")


@pytest.mark.parametrize("value,error", [('"auto"', None), ("256", None), ('"big"', "must be one of 'auto'"),
                                         ("0", "must be above 0"), ("true", "must be an integer or a string")])
def test_eval_batch_size_is_a_number_of_rows_or_auto(tmp_path, value, error):
    text = f'[tasks.a]\ndataset = "imdb"\nmodel = "minilm"\neval_batch_size = {value}\n'
    if error:
        refused(tmp_path, text, error)
    else:
        assert str(load_config(write(tmp_path, text)).task("a").eval_batch_size) == value.strip('"')


@pytest.mark.parametrize("line", ["learning_rate = inf", "learning_rate = nan", "weight_decay = nan",
                                  "warmup_ratio = -inf"])
def test_non_finite_numbers_are_refused(tmp_path, line):
    key = line.split()[0]
    refused(tmp_path, f'[tasks.a]\ndataset = "imdb"\nmodel = "minilm"\n{line}\n',
            rf"tasks.toml: task 'a': key '{key}' must be a finite number, got")


def test_non_finite_set_values_are_refused():
    task = load_config(REPO_TASKS).task("imdb-minilm")
    with pytest.raises(TkError, match="key 'learning_rate' must be a finite number, got nan"):
        with_overrides(task, dict([parse_assignment("learning_rate=nan")]))


def test_seed_and_shares_out_of_range_are_refused(tmp_path):
    task = load_config(REPO_TASKS).task("imdb-minilm")
    with pytest.raises(TkError, match=r"key 'seed' must be between 0 and 4294967295 \(2\*\*32 - 1\), got 4294967296"):
        with_overrides(task, {"seed": 2**32})
    assert with_overrides(task, {"seed": 2**32 - 1}).seed == 2**32 - 1
    with pytest.raises(TkError, match="key 'seed' must not be negative"):
        with_overrides(task, {"seed": -1})
    with pytest.raises(TkError, match="key 'warmup_ratio' is a share and must be between 0 and 1, got 1.5"):
        with_overrides(task, {"warmup_ratio": 1.5})
    assert with_overrides(task, {"warmup_ratio": 1}).warmup_ratio == 1


def test_defaults_are_shared_and_overridable(tmp_path):
    path = write(tmp_path, '[defaults]\nepochs = 5\nmodel = "minilm"\n[tasks.a]\ndataset = "imdb"\n'
                           '[tasks.b]\ndataset = "imdb"\nepochs = 1\n')
    config = load_config(path)
    assert config.task("a").epochs == 5 and config.task("b").epochs == 1


def test_missing_dataset_key(tmp_path):
    refused(tmp_path, '[tasks.a]\nmodel = "minilm"\n', "task 'a' has no 'dataset' key")


def test_unknown_task_suggests(tmp_path):
    config = load_config(REPO_TASKS)
    with pytest.raises(TkError, match="no task 'imdb-mini'. Did you mean 'imdb-minilm'"):
        config.task("imdb-mini")


def test_set_overrides_are_typed_and_checked():
    task = load_config(REPO_TASKS).task("imdb-minilm")
    changed = with_overrides(task, dict([parse_assignment("epochs=1"), parse_assignment("learning_rate=1e-4"),
                                         parse_assignment("truncation=head+tail")]))
    assert (changed.epochs, changed.learning_rate, changed.truncation) == (1, 1e-4, "head+tail")
    with pytest.raises(TkError, match="must be above 0"):
        with_overrides(task, {"epochs": 0})
    with pytest.raises(TkError, match="expected key=value"):
        parse_assignment("epochs")


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.integers(), st.text(max_size=8), st.booleans(),
                                                      st.floats(allow_nan=False), st.none()), max_size=5))
def test_random_task_tables_give_a_config_or_a_tkerror(table):
    try:
        task = parse_config({"tasks": {"t": table}}, Path("tasks.toml")).task("t")
    except TkError as error:
        assert str(error).startswith("tasks.toml: task 't'"), error  # names the file and the task
        return
    assert {"dataset", "model"} <= table.keys()
    described = task.describe()
    assert all(described[key] == value for key, value in table.items()), "a value was changed on the way in"


@given(st.text(max_size=40))
def test_random_set_arguments_give_a_value_or_a_tkerror(text):
    task = load_config(REPO_TASKS).task("imdb-minilm")
    try:
        key, value = parse_assignment(text)
        changed = with_overrides(task, {key: value})
    except TkError as error:
        assert "--set" in str(error), error  # says where the bad value came from
        return
    assert changed.describe()[key] == value


def test_a_named_tasks_file_that_is_missing_is_said_by_every_command(project, monkeypatch):
    """--tasks or TK_TASKS naming no file: every command says so, not "No task 'toy'. Tasks in nosuch.toml: none"."""
    from tests.helpers import fails_with, tk

    missing = "nosuch.toml: no such file. Pass --tasks PATH or run tk where tasks.toml is."
    mine = project / "toy-data" / "train.csv"
    commands = [("check", "toy"), ("analyze-lengths", "toy"), ("check", "--data", mine), ("run", "toy"),
                ("run", "--data", mine), ("sweep", "toy", "--grid", "epochs=1,2"), ("list",)]
    for command in commands:
        result = fails_with(missing, "--tasks", "nosuch.toml", *command)
        assert "No task" not in result.output
    monkeypatch.setenv("TK_TASKS", "nosuch.toml")
    for command in commands:
        fails_with(missing, *command)
    assert not (Path.cwd() / "runs").exists()
    monkeypatch.delenv("TK_TASKS")
    assert tk("check", "toy").exit_code == 0  # found by looking: ./tasks.toml
