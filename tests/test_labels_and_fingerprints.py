"""Labels by value, two classes to train on, a framed data fingerprint required on resume, swapped columns."""

import json

import pytest

from tests.helpers import fails_with, ok
from toolkit.errors import TkError


def write_csv(path, rows):
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    return path


def test_one_and_one_point_zero_are_one_class_even_beside_a_word(tmp_path):
    values = ["1", "1.0", "0", "0.0"]
    rows = [(f"film number {i} was {'good' if i % 2 else 'bad'}", values[i % 4]) for i in range(60)]
    data = write_csv(tmp_path / "mixed.csv", rows + [("odd one", "n/a")])
    said = ok("check", "--data", data)
    classes = next(line for line in said.splitlines() if "classes" in line and "as loaded" in line)
    assert "0 30 " in classes and "1 30 " in classes and "1.0" not in classes and "0.0" not in classes


def test_label_names_by_value():
    from plugins.datasets.files import _name

    assert [_name(v) for v in ("1", "1.0", 1.0, " 1.0 ", "0.0", "2.50", 2.5, "n/a", "v1.0")] == [
        "1", "1", "1", "1", "0", "2.5", "2.5", "n/a", "v1.0"]


def test_a_training_subset_of_one_class_is_refused(tmp_path):
    rows = [(f"text {i} {'spam' if i % 2 else 'ham'}", "spam" if i % 2 else "ham") for i in range(80)]
    data = write_csv(tmp_path / "two.csv", rows)
    result = fails_with("train_size = 1 leaves training rows of one class only", "run", "--data", data,
                        "--set", "train_size=1", "--set", "epochs=1", "--output", tmp_path / "runs")
    assert "a classifier needs at least two classes" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_validation_size_zero_and_swapped_columns_are_one_line_errors(tmp_path):
    data = write_csv(tmp_path / "d.csv", [(f"t{i}", i % 2) for i in range(40)])
    fails_with("key 'validation_size' must be above 0, got 0", "check", "--data", data, "--set", "validation_size=0")
    fails_with("column 'label' cannot be both the text and the label", "check", "--data", data,
               "--set", "text_column=label", "--set", "label_column=label")
    # Swapped: 40 distinct "labels" in 40 rows are texts; the run is refused before any work, by run and check.
    swap = ("--data", data, "--set", "text_column=label", "--set", "label_column=text")
    fails_with("column 'text' has 40 distinct values in 40 training rows", "check", *swap)
    fails_with("column 'text' has 40 distinct values in 40 training rows", "run", *swap, "--output", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_split_left_empty_by_repeated_texts_is_refused_before_training(tmp_path):
    # Two texts repeated 60 times: validation rows all repeat a training text and are left out (no leakage).
    data = write_csv(tmp_path / "d.csv", [(["a b c", "d e f"][i % 2], i % 2) for i in range(60)])
    fails_with("no validation rows are left: all 10 repeat a text", "run", "--data", data,
               "--set", "validation_size=10", "--set", "eval_size=10", "--output", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_the_fingerprint_frames_each_row():
    import datasets

    from toolkit.runs.artifacts import fingerprint

    def of(rows):
        return fingerprint({"train": datasets.Dataset.from_dict({"text": [t for _, t in rows],
                                                                   "label": [l for l, _ in rows]})})["train"]["sha256"]

    one = [("1", "good film"), ("0", "bad\n1\tworse")]
    other = [("1", "good film\n0\tbad"), ("1", "worse")]
    assert of(one) != of(other)
    assert fingerprint({"train": datasets.Dataset.from_dict({"text": ["a"], "label": ["1"]})}, framed=False) != \
        fingerprint({"train": datasets.Dataset.from_dict({"text": ["a"], "label": ["1"]})})


def test_a_resume_without_a_recorded_fingerprint_is_refused():
    from toolkit.runs.resume import check_fingerprint

    with pytest.raises(TkError, match="records no data fingerprint"):
        check_fingerprint({"task": {"name": "x"}}, {"train": {"rows": 1, "sha256": "ab"}}, "x.csv")
    check_fingerprint({"data_fingerprint": {"train": {"rows": 1}}}, {"train": {"rows": 1}}, "x.csv")  # the same


def test_a_run_recorded_with_the_old_fingerprint_still_matches_its_data():
    import datasets

    from toolkit.runs.artifacts import fingerprint, same_fingerprint

    splits = {"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["1", "0"]})}
    assert same_fingerprint(fingerprint(splits, framed=False), splits, fingerprint(splits))
    assert not same_fingerprint(json.loads(json.dumps(fingerprint(splits, framed=False)).replace('"rows": 2', '"rows": 3')),
                                splits, fingerprint(splits))
