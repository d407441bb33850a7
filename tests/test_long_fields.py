"""CSV and TSV files with fields over Python's csv limit, and files of one huge line."""

import tracemalloc

import pytest

from tests.helpers import fails_with, ok
from toolkit.data.files import SNIFF_CHARS, _sniff


def rows(delimiter):
    return "".join(f"short text {i}{delimiter}{'spam' if i % 2 else 'ham'}\n" for i in range(60))


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_a_field_over_131072_characters_is_read(tmp_path, suffix, delimiter):
    path = tmp_path / f"long{suffix}"
    long_text = "word " * 40_000  # 200,000 characters: over csv's default field_size_limit
    path.write_text(f"text{delimiter}label\n{long_text}{delimiter}spam\n" + rows(delimiter))
    said = ok("check", "--data", path)
    assert "files: train 61 rows" in said
    assert "files: train 61 rows" in ok("check", "--data", path, "--set", "header=true")


def test_a_file_of_one_huge_line_is_sniffed_in_bounded_memory_and_refused_in_one_line(tmp_path):
    path = tmp_path / "oneline.csv"
    path.write_text("text,label" + "x" * 30_000_000)
    tracemalloc.start()
    try:
        _sniff(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * SNIFF_CHARS  # the file is 30 MB; the sniff reads 1 Mi characters of it
    result = fails_with("oneline.csv: the file has a header row (text, labelxxx", "check", "--data", path)
    assert len(result.output) < 400
