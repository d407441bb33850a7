import json
import time

from click.testing import CliRunner

from toolkit.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_help_on_every_command():
    for command in [[]] + [[name] for name in cli.commands]:
        result = invoke(*command, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_list_shows_tasks_datasets_models_plugins(project):
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for expected in ("toy3", "imdb", "sentiment140", "minilm", "bert-cased", "toy_plugin", "local module",
                     "built-in", "tk_load_dataset"):
        assert expected in result.output
    with open(project / "tasks.toml", "a") as tasks:  # a task that reads long texts as windows says so
        tasks.write('\n[tasks.windows]\ndataset = "toy"\nmodel = "tiny"\nlong_text = "chunks"\nstride = 16\n')
    assert "max_length 64, long texts as windows (stride 16, pooling logits), " in invoke("list").output
    with open(project / "tasks.toml", "a") as tasks:  # the default stride, a quarter of max_length, as a number
        tasks.write('\n[tasks.windows2]\ndataset = "toy"\nmodel = "tiny"\nlong_text = "chunks"\nmax_length = 40\n')
    assert "max_length 40, long texts as windows (stride 10, pooling logits)" in invoke("list").output


def test_list_runs_says_when_the_folder_does_not_exist(project):
    (project / "empty").mkdir()
    assert invoke("list", "--runs", "--output", project / "empty").output.strip() == f"No runs in {project / 'empty'}."
    typo = invoke("list", "--runs", "--output", project / "rnus")
    assert typo.exit_code == 0 and "(no such folder: a typo in --output?)" in typo.output


def test_run_prints_epoch_table_and_test_metrics(project):
    result = invoke("run", "toy", "--set", "epochs=2", "--output", project / "out")
    assert result.exit_code == 0, result.output
    assert "train loss" in result.output and "val loss" in result.output
    assert "Test metrics" in result.output and "accuracy" in result.output
    runs = list((project / "out").iterdir())
    assert len(runs) == 1
    assert json.loads((runs[0] / "config.json").read_text())["task"]["epochs"] == 2


def test_run_unknown_task_is_a_short_error(project):
    result = invoke("run", "toyy")
    assert result.exit_code == 1
    assert "Did you mean 'toy'" in result.output
    assert "Traceback" not in result.output


def test_run_bad_set_is_a_short_error(project):
    result = invoke("run", "toy", "--set", "epoch=2")
    assert result.exit_code == 1
    assert "unknown key 'epoch'. Did you mean 'epochs'" in result.output


def test_missing_data_path(project):
    result = invoke("run", "toy", "--data", project / "nowhere")
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_hub_unreachable_fails_fast_with_offline_ways(project):
    started = time.perf_counter()
    model_from_hub = invoke("run", "toy", "--set", 'model="bert-uncased"')
    data_from_hub = invoke("analyze-lengths", "imdb", "--model", "minilm")
    assert time.perf_counter() - started < 20
    for result, what, hints in ((model_from_hub, "bert-base-uncased", ("model folder", "minilm")),
                                (data_from_hub, "stanfordnlp/imdb", ("--data", "TK_DATA_DIR"))):
        assert result.exit_code == 1
        assert "Cannot reach the Hugging Face Hub to download" in result.output and what in result.output
        for hint in hints:
            assert hint in result.output
    assert "--data" not in model_from_hub.output  # the data is local already: its ways would not help
    assert "minilm" not in data_from_hub.output


def test_analyze_lengths_json(project):
    result = invoke("analyze-lengths", "toy", "--model", "tiny", "--data", project / "toy-data", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)["models"]["tiny"]  # warnings from libraries go to stderr
    assert stats["count"] == 200
    assert 5 <= stats["mean"] <= 40
    assert stats["recommended_max_length"] % 8 == 0
    assert stats["recommended_max_length"] >= stats["p95"]


def test_analyze_lengths_gives_a_short_recommendation_its_own_row(project):
    short = project / "short.csv"  # three or four words a text: the recommendation falls below 32
    short.write_text("text,label\n" + "".join(f"good film {i},pos\nbad film {i} here,neg\n" for i in range(30)))
    result = invoke("analyze-lengths", "toy", "--model", "tiny", "--data", short, "--json")
    stats = json.loads(result.stdout)["models"]["tiny"]
    recommended = stats["recommended_max_length"]
    assert recommended < 32 and stats["truncated_share"][str(recommended)] == 0
    text = invoke("analyze-lengths", "toy", "--model", "tiny", "--data", short).output
    assert f"cut at {recommended} " in text and "cut at 32 " in text, text
    assert "chunks at" not in text and "padded to N" in text  # every text fits one window: no chunks rows
    assert stats["windows"]  # --json keeps every length's numbers


def test_a_progress_bar_has_a_width_on_a_terminal_that_reports_none(monkeypatch):
    """A pseudo-terminal nobody sized (as under `script`) reports 0 columns, and tqdm drew a bar of that width:
    nothing at all. tk gives such a bar 80 columns; on a sized terminal the bar follows the terminal."""
    import fcntl
    import os
    import pty
    import struct
    import sys
    import termios

    from toolkit.training.progress import Progress

    master, terminal = pty.openpty()
    assert os.get_terminal_size(terminal).columns == 0
    stream = os.fdopen(terminal, "w")
    monkeypatch.setattr(sys, "stderr", stream)
    progress = Progress(lambda text: None)
    progress.count(20, "text")
    assert progress._bar.ncols == 80 and not progress._bar.dynamic_ncols and not progress._bar.disable
    progress.close()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # now 100 columns
    progress.count(20, "text")
    assert progress._bar.dynamic_ncols and progress._bar.ncols in (99, 100)  # tqdm keeps a column free
    progress.close()
    stream.close()
    os.close(master)
