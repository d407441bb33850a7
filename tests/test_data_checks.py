import datasets
import pytest

from toolkit.config import TaskConfig
from toolkit.data.checks import check_splits, normalise
from toolkit.data.splits import make_splits
from toolkit.data.tokens import encode_texts
from toolkit.errors import TkError

LABELS = ("neg", "pos")


def dataset(texts, labels):
    return datasets.Dataset.from_dict({"text": texts, "label": labels},
                                      features=datasets.Features({"text": datasets.Value("string"),
                                                                  "label": datasets.ClassLabel(names=list(LABELS))}))


def findings(report):
    return {f.check: f for f in report.findings}


def test_checks_find_duplicates_leakage_conflicts_and_html():
    train = dataset(["Good film", "good   FILM", "Good film", "bad <br /> film", "  ", "same words"],
                    [1, 1, 1, 0, 0, 0])
    test = dataset(["Good film", "new text", "Same words"], [1, 0, 1])
    report = check_splits(datasets.DatasetDict(train=train, test=test), "d", LABELS)
    found = findings(report)
    assert found["duplicates_exact"].count == 1
    assert found["duplicates_normalised"].count == 2
    assert found["leakage_exact"].count == 1
    assert found["leakage_normalised"].count == 2
    assert found["html"].count == 1 and "such as <br />" in found["html"].message
    conflicts = [f for f in report.findings if f.check == "label_conflicts"]
    assert conflicts == []  # same labels within train; the cross-split conflict is leakage
    assert "rows [0, 2]" in found["duplicates_exact"].examples[0]


def test_same_text_different_labels_is_a_conflict():
    report = check_splits(datasets.DatasetDict(train=dataset(["x y", "X  y", "z"], [0, 1, 1])), "d", LABELS)
    assert findings(report)["label_conflicts"].count == 1


def test_clean_data_has_no_warnings():
    texts = [f"text {i}" for i in range(20)]  # ten rows per class: not rare
    report = check_splits(datasets.DatasetDict(train=dataset(texts, [i % 2 for i in range(20)])), "d", LABELS)
    assert report.warnings == []


def test_normalise_ignores_case_space_and_tags():
    assert normalise("  Good<br />FILM\n") == normalise("good film")


def task(**values):
    return TaskConfig(name="t", dataset="d", model="m", **values)


def big(n=400):
    return dataset([f"text number {i}" for i in range(n)], [i % 2 for i in range(n)])


def test_splits_are_disjoint_stratified_and_reproducible():
    source = datasets.DatasetDict(train=big(), test=dataset([f"test {i}" for i in range(100)], [i % 2 for i in range(100)]))
    config = task(train_size=200, validation_size=50, eval_size=40, seed=3)
    first, second = make_splits(source, config, []), make_splits(source, config, [])
    assert [len(first[s]) for s in ("train", "validation", "test")] == [200, 50, 40]
    assert not set(first["train"]["text"]) & set(first["validation"]["text"])
    assert first["train"]["text"] == second["train"]["text"]
    assert sum(first["validation"]["label"]) == 25  # stratified: half of each class


def test_train_size_larger_than_the_data():
    with pytest.raises(TkError, match="train_size = 1000 is larger than the 350 training rows"):
        make_splits(datasets.DatasetDict(train=big(), test=big(50)), task(train_size=1000, validation_size=50), [])


def test_selecting_on_test_warns():
    notes = []
    test = dataset([f"held out {i}" for i in range(60)], [i % 2 for i in range(60)])
    splits = make_splits(datasets.DatasetDict(train=big(), test=test), task(validation_size=50, select_on="test"), notes)
    assert any("optimistic" in n for n in notes)
    assert splits["validation"]["text"] == splits["test"]["text"]


def test_test_rows_seen_in_training_are_left_out():
    notes = []
    train = big(200)
    test = dataset(["text number 5", "brand new", "another new"], [1, 0, 1])
    splits = make_splits(datasets.DatasetDict(train=train, test=test), task(validation_size=20), notes)
    assert "text number 5" not in splits["test"]["text"]
    assert any("left out 1 rows" in n for n in notes)


WORDS = "the a movie film plot actor scene story it was".split()


@pytest.mark.parametrize("truncation,kept", [
    ("head", WORDS[:6]),
    ("tail", WORDS[4:]),
    ("head+tail", WORDS[:1] + WORDS[5:]),  # a quarter of the 6-token budget from the start, the rest from the end
])
def test_truncation_strategies_with_a_real_tokenizer(tiny_model, truncation, kept):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    encoded = encode_texts(tokenizer, [" ".join(WORDS), "good film"], max_length=8, truncation=truncation)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert tokens == ["[CLS]", *kept, "[SEP]"]
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][1]) == ["[CLS]", "good", "film", "[SEP]"]
    assert encoded["length"] == [8, 4]
