"""Files a user names for tk to write (report --output, analyze-lengths --histogram, audit --write): one rule,
so that none writes over the data, a tk folder's own files, or a file of another kind."""

import json

import pytest

from tests.helpers import fails_with, ok
from toolkit.errors import TkError
from toolkit.runs.corrections import write_corrected
from toolkit.runs.user_files import check_output_file

TK_PAGE = '<!DOCTYPE html><html><head><meta name="generator" content="tk"></head></html>'
DATA = "text,label\n" + "".join(f"a fine text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40))


def fake_run(folder, data):
    """What the check reads of a run: its status and the data its config.json records."""
    folder.mkdir()
    (folder / "status.json").write_text('{"status": "complete"}')
    (folder / "config.json").write_text(json.dumps({"data": str(data.resolve())}))
    (folder / "metrics.json").write_text('{"accuracy": 0.9}')
    return folder


def refused(message, path, *args, **kwargs):
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(TkError, match=message):
        check_output_file(path, *args, **kwargs)
    assert (path.read_bytes() if path.is_file() else None) == before


def test_the_rule_refuses_data_tk_files_and_files_of_another_kind(tmp_path):
    data = tmp_path / "sms.csv"
    data.write_text(DATA)
    run = fake_run(tmp_path / "run", data)
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    refused("is the data file itself; tk never overwrites your data", data, "--output", "html", data=[data])
    refused("is the data file itself", link, "--output", "html", data=[data])  # through a link too
    refused("is a file of the tk folder .*run, which needs it", run / "metrics.json", "--output", "html")
    refused("already exists and is not a report tk wrote", data, "--output", "html")
    refused(r"--histogram .*h.txt: tk writes a PNG image there; name the file .png", tmp_path / "h.txt",
            "--histogram", "png")  # a new file too: a PNG named .txt would open as garbage
    png_named_html = tmp_path / "old.html"
    png_named_html.write_bytes(b"\x89PNG\r\n")
    refused("is not a report tk wrote", png_named_html, "--output", "html")
    own_page = tmp_path / "plan.html"  # a user's own page: HTML, but not tk's
    own_page.write_text("<!DOCTYPE html><html><body>My hand-written plan</body></html>")
    refused("is not a report tk wrote", own_page, "--output", "html")
    own_picture = tmp_path / "family.png"
    own_picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    refused("is not a histogram tk wrote", own_picture, "--histogram", "png")
    refused("already exists; tk does not write over it. Name a new file, or remove it first", data, "--write")
    refused("is a folder", tmp_path, "--output", "html")

    earlier = tmp_path / "report.html"
    earlier.write_text(TK_PAGE)
    check_output_file(earlier, "--output", "html")  # an earlier report may be replaced
    (run / "report.html").write_text(TK_PAGE)
    check_output_file(run / "report.html", "--output", "html", tk_names=("report.html",), own=[run])  # its own
    other = fake_run(tmp_path / "other-run", data)
    (other / "report.html").write_text(TK_PAGE)  # another tk folder's report (a tune's, say): not this run's
    refused("is a file of the tk folder .*other-run", other / "report.html", "--output", "html",
            tk_names=("report.html",), own=[run])
    check_output_file(tmp_path / "new.png", "--histogram", "png", data=[data])  # a new file


def test_report_histogram_and_audit_refuse_before_writing(project, tmp_path):
    data = tmp_path / "sms.csv"
    data.write_text(DATA)
    run = fake_run(tmp_path / "run", data)
    before = data.read_bytes()
    fails_with("--output sms.csv is the data file itself; tk never overwrites your data", "report", run,
               "--output", "sms.csv")
    fails_with("is a file of the tk folder", "report", run, "--output", run / "metrics.json")
    fails_with("--histogram sms.csv is the data file itself", "analyze-lengths", "--data", data, "--model", "tiny",
               "--histogram", "sms.csv")
    other = tmp_path / "other.csv"
    other.write_text("mine\n")
    with pytest.raises(TkError, match="--write .*other.csv already exists; tk does not write over it"):
        write_corrected(run, other, [], relabel=False, multi_label=False)
    with pytest.raises(TkError, match="is the data file itself; tk never overwrites your data"):
        write_corrected(run, data, [], relabel=False, multi_label=False)
    assert data.read_bytes() == before and other.read_text() == "mine\n"
    assert json.loads((run / "metrics.json").read_text()) == {"accuracy": 0.9}
    ok("analyze-lengths", "--data", data, "--model", "tiny", "--histogram", "h.png")
    ok("analyze-lengths", "--data", data, "--model", "tiny", "--histogram", "h.png")  # its own earlier histogram
