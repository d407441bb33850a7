"""Tracebacks of the second adversarial round from the environment and the command line: one line each."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import fails_with, tk, train_toy
from toolkit.runs.endings import start_again
from toolkit.testing import write_keyword_dataset


def test_an_unwritable_home_is_one_line_with_the_fix(tmp_path):
    (tmp_path / "a-file").write_text("")
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(40)))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME",
                                                             "MPLCONFIGDIR", "TRANSFORMERS_CACHE")}
    env["HOME"] = str(tmp_path / "a-file" / "home")  # under a file: nothing can be created there
    result = subprocess.run([sys.executable, "-m", "toolkit", "check", "--data", str(data)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Cannot write the libraries' cache") and "HF_HOME=" in last


def test_a_command_line_text_that_is_not_utf8_is_one_line(pm, project):
    outcome = train_toy(pm, project, epochs=1)
    text = b"caf\xe9 film".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes
    for extra in ((), ("--json",)):
        fails_with("Text 1 is not UTF-8 text (byte 0xe9 at character 3)", "predict", outcome.run_dir, text, *extra)


@pytest.mark.parametrize("where, data, said", [
    ("--data sms.csv", "sms.csv", "tk run --data sms.csv"),
    (None, None, "tk run toy"),
])
def test_start_again_names_a_command_that_exists(project, where, data, said):
    from tests.helpers import toy_task

    assert start_again(toy_task(project), data, where) == said


@pytest.mark.parametrize("name, content", [("latin.csv", b"text,label\ncaf\xe9 ok,1\nbad,0\n"),
                                           ("broken.jsonl", b'{"text": "a", "label": 1}\n{"text": broken\n'),
                                           ("fake.parquet", b"PAR1garbage")])
def test_a_file_the_reader_refuses_is_tks_line_alone(tmp_path, name, content):
    """datasets logs its own "Failed to read file ..." before tk's error: only tk's line is printed."""
    (tmp_path / name).write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "toolkit", "check", "--data", str(tmp_path / name)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and f"{name}: " in lines[0], result.stderr


def test_a_json_lines_line_that_does_not_parse_is_named_by_its_line_number_from_1(tmp_path):
    """pyarrow says 'in row 2' here: rows from 0, the blank line not counted. An editor shows line 4."""
    good = '{"text": "a fine film", "label": "pos"}\n'
    (tmp_path / "bad.jsonl").write_text(good + "\n" + good + '{"text": "broken, "label": "neg"}\n' + good * 3)
    result = fails_with("bad.jsonl: cannot read it as json: JSON parse error on line 4: Missing a comma", "check",
                        "--data", tmp_path / "bad.jsonl")
    assert "row" not in result.output and "fix the line named" in result.output, result.output


@pytest.mark.parametrize("name, content, kind", [
    ("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "a PNG image"),
    ("ls", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, "a program"),
    ("sheet.csv", b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)), "a ZIP archive; an .xlsx workbook is one"),
    ("control.csv", b"\x1b[2J\x07\x01\x02,\x03\x1b]0;x\x07\n" * 20, "it is full of control characters"),
])
def test_a_binary_file_given_as_data_is_said_to_be_binary_and_none_of_its_bytes_are_printed(tmp_path, name, content,
                                                                                            kind):
    (tmp_path / name).write_bytes(content)
    for command in ("check", "run"):
        result = fails_with(f"{name}: this file looks binary ({kind}), not text. tk reads CSV, TSV and JSON Lines "
                            "text files and Parquet files", command, "--data", tmp_path / name)
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", result.output), repr(result.output)


def test_a_file_in_no_format_tk_reads_names_the_formats(tmp_path):
    """TREC's raw lines (COARSE:fine question) are not CSV: the parser's complaint, then what tk reads."""
    (tmp_path / "raw.label").write_text("ABBR:exp What is AIDS ?\n" * 3 + "NUM:date When , then ?\n")
    result = subprocess.run([sys.executable, "-m", "toolkit", "check", "--data", str(tmp_path / "raw.label")],
                            capture_output=True, text=True, timeout=300, check=False)  # the exit code is asserted
    assert result.returncode == 1 and "Expected 1 fields in line 4, saw 2. tk reads CSV, TSV, JSON Lines and " \
        "Parquet files (docs/your-data.md): fix the line named, or convert the file" in result.stderr, result.stderr


def test_a_missing_test_file_says_where_a_relative_path_is_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_keyword_dataset(tmp_path / "data")
    result = tk("check", "--data", "data/train.csv", "--set", "test_data=holdout.csv")
    assert result.exit_code == 1
    assert f"test_data: {tmp_path / 'holdout.csv'} is not a file. Check the path; a relative path is read " \
        f"from {tmp_path}." in result.output


def test_analyze_lengths_in_a_read_only_folder_names_its_own_option(project, monkeypatch):
    import errno

    from toolkit import saving

    def read_only(source, target):
        raise PermissionError(errno.EACCES, "Permission denied", str(target))

    monkeypatch.setattr(saving.os, "replace", read_only)  # the tests run as root, where chmod stops nothing
    result = fails_with("Cannot write the histogram lengths-toy.png (Permission denied). Pass --histogram PATH",
                        "analyze-lengths", "toy", "--model", "tiny")
    assert "--output" not in result.output


def test_a_run_of_your_file_without_a_checkpoint_says_how_to_start_it_again(tmp_path):
    from toolkit.runs import folders
    from toolkit.runs.resume import check_resumable
    from toolkit.saving import write_json

    run_dir = tmp_path / "sms-1"
    run_dir.mkdir()
    write_json(run_dir / "config.json", {"task": {"name": "sms"}, "start_again": "tk run --data sms.csv"})
    folders.set_status(run_dir, "failed")
    with pytest.raises(Exception, match=r"Start it again: tk run --data sms.csv$"):
        check_resumable(run_dir)


@pytest.mark.parametrize("command,where,said", [
    (("evaluate", "run"), "toolkit.cli.using.load_run_or_export", "Interrupted: tk evaluate stopped; no evaluation was saved."),
    (("export", "run"), "toolkit.cli.deploy.export_run", "Interrupted: tk export stopped; nothing was written"),
    (("analyze-lengths", "toy", "--model", "tiny"), "toolkit.cli.data.load_named",
     "Interrupted: tk analyze-lengths stopped; no histogram was written."),
    (("audit", "run"), "toolkit.cli.trust.run_audit", "Interrupted: tk audit stopped;"),
])
def test_ctrl_c_on_any_command_is_one_line_and_exit_130(project, monkeypatch, command, where, said):
    import importlib

    from tests.helpers import runner
    from toolkit.cli import cli

    (project / "run").mkdir()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module, name = where.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    monkeypatch.setattr("toolkit.cli.deploy.require", lambda *args: None)  # onnx need not be installed here
    result = runner().invoke(cli, list(command))
    assert result.exit_code == 130, result.output
    assert said in result.stderr and "Aborted" not in result.output and "Traceback" not in result.output


def test_a_csv_separated_by_tabs_or_semicolons_says_so_and_no_line_is_named_where_none_is(tmp_path):
    rows = [("text", "label"), ("hello there, friend", "ham"), ("win cash now", "spam"), ("see you", "ham")] * 3
    (tmp_path / "tabs.csv").write_text("".join(f"{t}\t{l}\n" for t, l in rows) + "a, b, c\tham\n")
    (tmp_path / "semi.csv").write_text("".join(f"{t};{l}\n" for t, l in rows) + "a, b, c;ham\n")
    fails_with("tabs.csv: this file looks tab-separated, not comma-separated: name it .tsv", "check", "--data",
               tmp_path / "tabs.csv")
    fails_with("semi.csv: this file looks semicolon-separated, not comma-separated", "check", "--data",
               tmp_path / "semi.csv")
    (tmp_path / "fake.parquet").write_text("text,label\nhello,ham\nbye,spam\n")
    result = fails_with("fake.parquet: cannot read it as parquet", "check", "--data", tmp_path / "fake.parquet")
    assert "fix the line named" not in result.output and "convert the file" in result.output


def test_predict_warns_when_its_file_starts_with_a_csv_header(pm, project):
    from tests.helpers import runner
    from toolkit.cli import cli

    outcome = train_toy(pm, project, epochs=1)
    (project / "rows.csv").write_text("text,label\na great film,pos\nan awful film,neg\n")
    (project / "plain.txt").write_text("a great film\ntext, then more text\n")
    result = runner().invoke(cli, ["predict", str(outcome.run_dir), "--file", "rows.csv"])
    assert result.exit_code == 0, result.output
    assert "--file rows.csv: its first line looks like a CSV header (text,label)" in result.stderr
    assert "use tk evaluate RUN --data FILE" in result.stderr and len(result.stdout.splitlines()) == 3
    result = runner().invoke(cli, ["predict", str(outcome.run_dir), "--file", "plain.txt"])
    assert result.exit_code == 0 and "CSV header" not in result.stderr
