"""Every source the built-in dataset plugins read, on small files made here."""

import csv
import json
import tarfile

import datasets
import pytest

from toolkit.data.loading import load_with_labels
from toolkit.data.sources import resolve_source
from toolkit.errors import TkError
from toolkit.records import DataSource

REVIEWS = {("train", "pos"): ["A great film.", "Loved it."], ("train", "neg"): ["Dull.", "Awful <br /> acting."],
           ("test", "pos"): ["Wonderful!"], ("test", "neg"): ["Terrible."]}


def load(pm, name, path):
    loaded = load_with_labels(pm, pm.dataset(name), DataSource(path, "test"))
    return loaded.splits, loaded.notes


def refused(pm, name, path, text, message):
    """A ``name`` data file holding ``text`` fails to load with a TkError matching ``message``."""
    path.write_text(text)
    with pytest.raises(TkError, match=message):
        load(pm, name, path)


def write_acl(root):
    for (split, label), texts in REVIEWS.items():
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(text)
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    return root / "aclImdb"


def assert_imdb(splits):
    assert len(splits["train"]) == 4 and len(splits["test"]) == 2
    rows = dict(zip(splits["train"]["text"], splits["train"]["label"]))
    assert rows["A great film."] == 1 and rows["Dull."] == 0


def test_imdb_acl_folder(pm, tmp_path):
    splits, _ = load(pm, "imdb", write_acl(tmp_path))
    assert_imdb(splits)


def test_imdb_acl_archive(pm, tmp_path):
    folder = write_acl(tmp_path / "src")
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="aclImdb")
    splits, _ = load(pm, "imdb", archive)
    assert_imdb(splits)


def test_imdb_hub_layout(pm, tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    (tmp_path / "imdb" / "plain_text").mkdir(parents=True)
    for split in ("train", "test"):
        rows = [(t, 1 if lab == "pos" else 0) for (s, lab), texts in REVIEWS.items() if s == split for t in texts]
        datasets.Dataset.from_dict({"text": [r[0] for r in rows], "label": [r[1] for r in rows]},
                                   features=features).to_parquet(
            tmp_path / "imdb" / "plain_text" / f"{split}-00000-of-00001.parquet")
    splits, _ = load(pm, "imdb", tmp_path / "imdb")
    assert_imdb(splits)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_imdb_single_table_file(pm, tmp_path, suffix):
    rows = [{"review": t, "label": lab} for (_, lab), texts in REVIEWS.items() for t in texts]
    path = tmp_path / f"reviews.{suffix}"
    if suffix == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["review", "label"])
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        datasets.Dataset.from_list(rows).to_parquet(path)
    splits, _ = load(pm, "imdb", path)
    assert len(splits["train"]) == 6
    assert sorted(set(splits["train"]["label"])) == [0, 1]


def test_csv_without_label_column_names_the_columns(pm, tmp_path):
    refused(pm, "imdb", tmp_path / "reviews.csv", "text,stars\nGood,5\nBad,1\n",
            r"no label column found by name \(tk looks for label, .*\). Columns: text, stars.")


def test_non_utf8_csv_is_a_clear_error(pm, tmp_path):
    path = tmp_path / "reviews.csv"
    good = "".join(f"review {i} was fine,pos\n" for i in range(2000)).encode()  # the parser reads blocks
    path.write_bytes(b"text,label\n" + good + "Caf\xe9 was great,pos\nBad,neg\n".encode("latin-1"))
    # where a person finds it in the file, not the parser's offset within its block
    with pytest.raises(TkError, match=rf"not UTF-8 text \(line 2,002, byte {len(good) + 14:,}: 0xe9"):
        load(pm, "imdb", path)
    wide = tmp_path / "excel-unicode.csv"  # Excel's 'Unicode text': UTF-16 with its byte-order mark
    wide.write_bytes(("text,label\n" + "".join(f"review {i},pos\n" for i in range(50))).encode("utf-16"))
    with pytest.raises(TkError, match=r"not UTF-8 text .*iconv -f utf-16 -t utf-8"):
        load(pm, "imdb", wide)


RAW_ROWS = [("0", "1", "Mon Apr 06", "NO_QUERY", "u1", "sad day \xe9"), ("4", "2", "Mon Apr 06", "NO_QUERY", "u2", "yay"),
            ("0", "3", "d", "q", "u3", "meh"), ("4", "4", "d", "q", "u4", "great")]


def write_raw(path, rows):
    with open(path, "w", newline="", encoding="latin-1") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)


def test_sentiment140_raw_latin1_files_drop_neutral(pm, tmp_path):
    write_raw(tmp_path / "training.1600000.processed.noemoticon.csv", RAW_ROWS)
    write_raw(tmp_path / "testdata.manual.2009.06.14.csv", RAW_ROWS + [("2", "5", "d", "q", "u5", "just a tweet")])
    splits, notes = load(pm, "sentiment140", tmp_path)
    assert splits["train"]["text"][0] == "sad day \xe9"
    assert splits["train"]["label"] == [0, 1, 0, 1]
    assert len(splits["test"]) == 4
    assert any("left out 1 rows labelled 2" in n for n in notes)


def test_sentiment140_polarity_text_csv(pm, tmp_path):
    path = tmp_path / "train-100k.csv"
    path.write_text("polarity,text\n0,sad\n4,happy\n0,bad\n4,good\n")
    splits, _ = load(pm, "sentiment140", path)
    assert splits["train"]["label"] == [0, 1, 0, 1]


def test_label_outside_mapping_quotes_rows(pm, tmp_path):
    refused(pm, "sentiment140", tmp_path / "train.csv", "polarity,text\n0,sad\n4,happy\n1,what\n0,bad\n",
            r"outside the mapping: 1 \(e.g. row 3: 1\)")


def test_single_class_training_set_is_refused(pm, tmp_path):
    refused(pm, "sentiment140", tmp_path / "train.csv", "polarity,text\n0,sad\n0,bad\n0,awful\n",
            "every training row is labelled 'negative'")


def test_source_precedence(monkeypatch, tmp_path):
    (tmp_path / "cli").mkdir()
    (tmp_path / "task").mkdir()
    (tmp_path / "mirror" / "imdb").mkdir(parents=True)
    monkeypatch.setenv("TK_DATA_DIR", str(tmp_path / "mirror"))
    assert resolve_source("imdb", str(tmp_path / "cli"), "task", tmp_path).origin == "--data"
    assert resolve_source("imdb", None, "task", tmp_path).path == tmp_path / "task"
    assert resolve_source("imdb", None, None, tmp_path).path == tmp_path / "mirror" / "imdb"
    assert resolve_source("sentiment140", None, None, tmp_path).path is None  # not mirrored: the Hub
    monkeypatch.delenv("TK_DATA_DIR")
    assert resolve_source("imdb").origin == "the Hub"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_text_column_of_numbers_is_read_as_text_with_a_note(pm, tmp_path, suffix):
    path = tmp_path / f"numbers{suffix}"
    table = datasets.Dataset.from_dict({"text": [7, 12, 3, 40], "label": ["pos", "neg", "pos", "neg"]})
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    splits, notes = load(pm, "toy", path)
    assert splits["train"]["text"] == ["7", "12", "3", "40"]
    assert ("train: the text column holds numbers (int64), not words; they are read as text (e.g. '7'). "
            "Check that it is the right column.") in notes


@pytest.mark.parametrize("rows, message", [
    ([{"text": {"a": 1}, "label": "pos"}, {"text": {"a": 2}, "label": "neg"}],
     r"the text column of the train split holds objects, not text \(e.g. row 1: \{'a': 1\}\). "
     "Each row's text must be a string."),
    ([{"text": "good", "label": "pos"}, {"text": ["bad"], "label": "neg"}],
     r"the text column of the train split holds lists, not text \(e.g. row 2: \['bad'\]\)"),
    ([{"text": "good", "label": {"a": "pos"}}, {"text": "bad", "label": {"a": "neg"}}],
     r"the label column of the train split holds objects \(e.g. row 1: \{'a': 'pos'\}\). Each row needs one label "
     "value"),
])  # label lists are multi-label data: tests/test_multilabel.py
def test_jsonl_objects_or_lists_for_text_or_label_are_refused(pm, tmp_path, rows, message):
    refused(pm, "toy", tmp_path / "rows.jsonl", "".join(json.dumps(row) + "\n" for row in rows), message)
