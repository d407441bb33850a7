import json
import re

import datasets
import numpy as np
import pytest

from toolkit.config import TaskConfig
from toolkit.data.checks import check_splits
from toolkit.data.hashes import normalise
from toolkit.data.splits import make_splits
from toolkit.data.tokens import cut_flags, encode_texts
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
    assert "1 row repeats an earlier text exactly (1 distinct text appears more than once)" in \
        found["duplicates_exact"].message
    # "good   FILM" equals "Good film" only once case and spacing are ignored: counted once, not under both
    assert found["duplicates_normalised"].count == 1 and "rows 1, 2 and 3" in found["duplicates_normalised"].examples[0]
    assert found["leakage_exact"].count == 1
    assert found["leakage_normalised"].count == 1 and "test row 3" in found["leakage_normalised"].examples[0]
    assert found["html"].count == 1 and "such as <br />" in found["html"].message
    conflicts = [f for f in report.findings if f.check == "label_conflicts"]
    assert conflicts == []  # same labels within train; the cross-split conflict is leakage
    assert "rows 1 and 3" in found["duplicates_exact"].examples[0]


def test_html_examples_never_cut_a_tag_or_entity():
    """30 characters either side of the first remnant would end inside &quot; and start inside &nbsp;: the cut
    moves outside them, and "..." marks both cuts."""
    text = "c" * 10 + "&nbsp;" + "a" * 27 + "<br />" + "b" * 27 + "&quot;x" + " and more"
    train = dataset([text] + [f"plain {i}" for i in range(5)], [0, 1, 0, 1, 0, 1])
    (example,) = findings(check_splits(datasets.DatasetDict(train=train), "d", LABELS))["html"].examples
    assert example.split(": ", 1)[1] == "..." + repr("a" * 27 + "<br />" + "b" * 27) + "..."


def test_characters_broken_by_a_wrong_decoding_are_flagged_with_their_rows():
    """Sentiment140's train-100k holds 'ï¿½' (U+FFFD's UTF-8 bytes read as Latin-1) and 'eclÃ©tico' (é so read);
    tk check flagged HTML remnants but not these."""
    texts = ["she\u00ef\u00bf\u00bds not well", "poco ecl\u00c3\u00a9tico", "it\u00e2\u20ac\u2122s fine",
             "a \ufffd here", "caf\u00e9 is fine", "S\u00c3O PAULO"]
    train = dataset(texts, [0, 1, 0, 1, 0, 1])
    found = findings(check_splits(datasets.DatasetDict(train=train), "d", LABELS))["broken_characters"]
    assert found.count == 4 and found.level == "warning"  # not 'café', nor Portuguese 'SÃO'
    assert found.message.startswith("train: 4 texts (66.7%) hold characters broken by a wrong decoding, such as "
                                    "'\u00ef\u00bf\u00bd'")
    assert [example.split(":")[0] for example in found.examples] == ["row 1", "row 2", "row 3"]  # EXAMPLES


def test_same_text_different_labels_is_a_conflict():
    report = check_splits(datasets.DatasetDict(train=dataset(["x y", "X  y", "z"], [0, 1, 1])), "d", LABELS)
    assert findings(report)["label_conflicts"].count == 1


def test_conflicting_texts_that_start_alike_are_shown_apart_with_their_rows():
    """Two texts whose first 80 characters are the same used to look identical in the examples."""
    start = "Noshit party was great !! Working on a new track now .... and it's raining in Amsterdam "
    texts = [start + "#copy5", "other", start + "#copy9", start + "#copy5", start + "#copy9"]
    report = check_splits(datasets.DatasetDict(train=dataset(texts, [0, 0, 0, 1, 1])), "d", LABELS)
    conflicts = findings(report)["label_conflicts"]
    assert conflicts.count == 2
    assert conflicts.examples == [
        "rows 1 (neg) and 4 (pos): 'Noshit party was great !! Working on a n'...'g in Amsterdam #copy5'",
        "rows 3 (neg) and 5 (pos): 'Noshit party was great !! Working on a n'...'g in Amsterdam #copy9'"]
    different = check_splits(datasets.DatasetDict(train=dataset(["a b", "A  b", "c d", "C d"], [1, 0, 0, 1])), "d",
                             LABELS)  # each row's own label, in row order: not the labels sorted
    assert findings(different)["label_conflicts"].examples == ["rows 1 (pos) and 2 (neg): 'a b'",
                                                               "rows 3 (neg) and 4 (pos): 'c d'"]


def test_clean_data_has_no_warnings():
    texts = [f"text {i}" for i in range(20)]  # ten rows per class: not rare
    report = check_splits(datasets.DatasetDict(train=dataset(texts, [i % 2 for i in range(20)])), "d", LABELS)
    assert report.warnings == []


def test_counts_that_reach_a_thousand_have_separators():
    """12,500 as the rest of tk prints counts, not 12500; row numbers stay as the file numbers them."""
    texts = [f"same &amp; text {i % 1250}" for i in range(2500)] + [f"other {i}" for i in range(1500)]
    labels = [0] * 1250 + [1] * 1250 + [i % 2 for i in range(1500)]  # each repeated text: once neg, once pos
    report = check_splits(datasets.DatasetDict(train=dataset(texts, labels)), "d", LABELS)
    found = findings(report)
    assert "train: 2,500 texts (62.5%) hold HTML remnants" in found["html"].message
    assert "train, as loaded: classes neg 2,000 (50.0%), pos 2,000 (50.0%)" == found["class_balance"].message
    skewed = findings(check_splits(datasets.DatasetDict(train=dataset(["a"] * 90 + ["b"] * 10, [0] * 90 + [1] * 10)),
                                   "d", LABELS))["class_balance"]
    assert skewed.level == "warning" and skewed.message.endswith(
        "; the smallest class has 10 rows, 11.1% of the largest's 90 (a warning under 20%)")
    assert "1,250 rows repeat an earlier text exactly (1,250 distinct texts" in found["duplicates_exact"].message
    assert "train: 1,250 texts appear with different labels" in found["label_conflicts"].message
    assert found["html"].count == 2500  # the numbers themselves stay numbers (tk check --json)
    assert re.match(r"rows (\d+) and (\d+):", found["duplicates_exact"].examples[0])  # no separators in row numbers


def test_normalise_ignores_case_space_and_tags():
    assert normalise("  Good<br />FILM\n") == normalise("good film")


def task(**values):
    return TaskConfig(name="t", dataset="d", model="m", **values)


def big(n=400):
    return dataset([f"text number {i}" for i in range(n)], [i % 2 for i in range(n)])


def test_splits_are_disjoint_stratified_and_reproducible():
    source = datasets.DatasetDict(train=big(), test=dataset([f"test {i}" for i in range(100)], [i % 2 for i in range(100)]))
    config = task(train_size=200, validation_size=50, eval_size=40, seed=3)
    first, second = make_splits(source, config).splits, make_splits(source, config).splits
    assert [len(first[s]) for s in ("train", "validation", "test")] == [200, 50, 40]
    assert not set(first["train"]["text"]) & set(first["validation"]["text"])
    assert first["train"]["text"] == second["train"]["text"]
    assert sum(first["validation"]["label"]) == 25  # stratified: half of each class


def test_a_single_row_class_leaves_every_other_class_stratified():
    """A typo label on one row used to switch stratification off for every class; now only that row is drawn
    apart, every other class keeps its share of validation, and a note says so."""
    names = ["a", "b", "c", "d", "e", "pyhton"]
    labels = [i % 5 for i in range(200)] + [5]
    source = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(201)], "label": labels},
                                         features=datasets.Features({"text": datasets.Value("string"),
                                                                     "label": datasets.ClassLabel(names=names)})),
        test=dataset([f"test {i}" for i in range(20)], [i % 2 for i in range(20)]))
    for seed in (1, 2, 3):
        made = make_splits(source, task(validation_size=50, seed=seed))
        validation, notes = made.splits["validation"], made.notes
        counts = [validation["label"].count(c) for c in range(5)]
        assert all(9 <= count <= 11 for count in counts), counts  # 40 rows each, a quarter of them: 10
        assert ("validation: 1 class of a single row ('pyhton') cannot be stratified, so they were drawn together "
                "as one group; every other class is stratified.") in notes


@pytest.mark.parametrize("labels", [[i % 3 for i in range(300)],  # stratified
                                    [0] * 299 + [1]])  # one class besides a single row: datasets' seeded shuffle
def test_tk_draws_the_rows_datasets_train_test_split_draws(labels):
    """Rows carved or subset for a seed stay the ones earlier tk versions drew (a resume depends on it), though tk
    reads the label column at once where ``train_test_split`` reads it row by row."""
    from toolkit.data.splits import _stratified

    source = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(300)], "label": labels},
                                        features=datasets.Features({"text": datasets.Value("string"),
                                                                    "label": datasets.ClassLabel(num_classes=3)}))
    for size, seed in [(30, 0), (100, 7), (3, 42)]:
        ours, _ = _stratified(source, size, seed, "validation", task())
        stratify = {"stratify_by_column": "label"} if min(labels.count(c) for c in set(labels)) > 1 else {}
        theirs = source.train_test_split(test_size=size, seed=seed, **stratify)
        assert ours["test"]["text"] == theirs["test"]["text"] and ours["train"]["text"] == theirs["train"]["text"]


def test_a_held_out_test_split_far_larger_than_train_size_says_how_to_hold_out_fewer():
    made = make_splits(datasets.DatasetDict(train=big(60_000)), task(train_size=100, validation_size=50))
    splits, notes, advice = made.splits, made.notes, made.advice
    assert len(splits["test"]) == 12_000
    assert notes[0] == "The data has no test split: held out 12,000 training rows as the test split."
    assert advice == ("Scoring the 12,000 held-out test rows may take longer than training on train_size = 100; "
                      "eval_size = 5000 holds out 5,000 (accuracy's 95% interval then at most +/-1.4 points).",)
    assert not any("eval_size" in note for note in notes)  # advice, not a fact about the run: not recorded
    notes = make_splits(datasets.DatasetDict(train=big(60_000)), task(train_size=100)).notes
    assert "Validation: 500 of the 48,000 training rows (validation_size default: a tenth, at most 500)." in notes
    # 12,000 test rows for train_size 1,500: in proportion; 6,000 for 100: eval_size = 5000 would gain little
    for rows, train_size in ((60_000, 1500), (30_000, 100)):
        made = make_splits(datasets.DatasetDict(train=big(rows)), task(train_size=train_size, validation_size=50))
        assert made.advice == () and not any("eval_size" in note for note in made.notes)


def test_train_size_larger_than_the_data():
    with pytest.raises(TkError, match="train_size = 1000 is larger than the 350 training rows"):
        make_splits(datasets.DatasetDict(train=big(), test=big(50)), task(train_size=1000, validation_size=50))


def test_check_fails_where_tk_run_would_stop_when_splitting(project):
    """tk check exits 1 where tk run's own splitting (make_splits) would stop it, with tk run's reason and fix."""
    from tests.helpers import fails_with, tk_json

    reason = "train_size = 1000 is larger than the 160 training rows left after carving 40 validation rows. " \
             "Lower train_size or validation_size."
    result = fails_with(reason, "check", "toy", "--set", "train_size=1000")
    assert f"ERROR   tk run would stop when splitting this data: task 'toy': {reason}" in result.output
    assert "1 error, " in result.output and result.output.rstrip().endswith(reason)
    fails_with(f"task 'toy': {reason}", "run", "toy", "--set", "train_size=1000")  # tk run's own words
    document, stderr = tk_json("check", "toy", "--set", "train_size=1000", exit_code=1)  # the JSON, then the error
    (error,) = [f for f in document["findings"] if f["level"] == "error"]
    assert error["check"] == "splits" and reason in error["message"] and document["split_rows"] is None
    assert f"Error: tk run would stop when splitting this data: task 'toy': {reason}" in stderr


def test_selecting_on_test_warns():
    test = dataset([f"held out {i}" for i in range(60)], [i % 2 for i in range(60)])
    made = make_splits(datasets.DatasetDict(train=big(), test=test), task(validation_size=50, select_on="test"))
    splits = made.splits
    assert any("optimistic" in n for n in made.notes)
    assert splits["validation"]["text"] == splits["test"]["text"]


def test_test_rows_seen_in_training_are_left_out():
    train = big(200)
    test = dataset(["text number 5", "brand new", "another new"], [1, 0, 1])
    made = make_splits(datasets.DatasetDict(train=train, test=test), task(validation_size=20))
    assert "text number 5" not in made.splits["test"]["text"]
    assert any("left out 1 row whose text" in n for n in made.notes)
    assert made.left_out["test"]["rows"] == [1]  # the row as the test split numbers it


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


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_cut_flags_name_exactly_the_texts_that_lost_tokens(tiny_model, truncation):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    task = SimpleNamespace(max_length=8, truncation=truncation, reads_in_windows=False)
    texts = [" ".join(WORDS), " ".join(WORDS[:6]), " ".join(WORDS[:7]), "good film"]  # 10, 6, 7 and 2 words
    encoded = encode_texts(tokenizer, texts, task.max_length, truncation)
    assert encoded["length"] == [8, 8, 8, 4]  # the second fills max_length exactly and loses nothing
    assert cut_flags(tokenizer, texts, task, encoded["length"]) == [True, False, True, False]
    windows = SimpleNamespace(max_length=8, truncation="head", reads_in_windows=True)
    assert cut_flags(tokenizer, texts, windows, [8] * 4) == [False] * 4  # chunks read a text whole


def trained_tokenizer(kind: str, corpus: list[str]):
    """A small fast tokenizer of each family's kind, trained on ``corpus``, with its special tokens around a text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]
    if kind == "wordpiece":  # BERT
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=special)
    elif kind == "bytelevel-bpe":  # RoBERTa
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:  # sentencepiece-style unigram: ALBERT, XLM-R, DeBERTa-v2
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=special, unk_token="[UNK]")
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                                                 ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]")


@pytest.mark.parametrize("kind", ["wordpiece", "bytelevel-bpe", "unigram-metaspace"])
def test_tokenizing_only_a_long_texts_head_gives_the_whole_texts_tokens(kind):
    import random

    from toolkit.data.tokens import HEAD_CHARS_PER_TOKEN, head_token_ids

    rng = random.Random(0)
    words = ["film", "Café", "naïve", "don't", "re-watch", "10/10", "!!!", "plot,", "(actor)", "très", "über",
             "ending.", "Lorem", "ipsum", "x", "supercalifragilistic", "2,000", "😀", "\u00a0"]
    separators = [" ", " ", " ", "  ", "\n", "\t", " \n "]
    texts = ["".join(rng.choice(words) + rng.choice(separators) for _ in range(rng.randint(1, 250)))
             for _ in range(300)]
    texts += ["a" * 500,  # no space to cut at
              " " * 200 + "film " * 40,  # a head of spaces: its tokens do not reach max_length
              "film" + " " * 95 + "ending " * 30,  # the cut falls in a run of spaces
              "supercalifragilistic" * 5 + " plot" * 40]  # a long word across the cut
    tokenizer = trained_tokenizer(kind, texts)
    for max_length in (16, 64, 128):  # most heads far past max_length tokens; heads near it; heads short of it
        cut = sum(len(text) > HEAD_CHARS_PER_TOKEN * max_length for text in texts)
        assert cut > 20
        whole = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        assert head_token_ids(tokenizer, texts, max_length) == whole, max_length


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_a_multi_megabyte_line_is_cut_before_tokenizing(tiny_model, truncation):
    import time
    import tracemalloc

    from transformers import AutoTokenizer

    from toolkit.data.tokens import CHARS_PER_TOKEN, cut_long_texts

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    line = "good " + "film " * 1_000_000 + "bad"  # 5 MB on one line
    assert [len(t) for t in cut_long_texts([line, "short"], 8, "head")] == [8 * CHARS_PER_TOKEN, 5]
    started = time.perf_counter()
    tracemalloc.start()
    encoded = encode_texts(tokenizer, [line], max_length=8, truncation=truncation)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - started < 5 and peak < 20_000_000
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert len(tokens) == 8
    assert (tokens[1] == "good") == (truncation != "tail") and (tokens[-2] == "bad") == (truncation != "head")


def test_analyze_lengths_measures_huge_texts_on_their_start_and_says_so(tiny_model):
    import time

    from transformers import AutoTokenizer

    from toolkit.data.lengths import MAX_CHARS, format_report, token_lengths
    from toolkit.records import LengthStats

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = ["good film", "film " * 2_000_000]  # 10 MB on one line
    started = time.perf_counter()
    lengths, cut = token_lengths(tokenizer, texts)
    assert time.perf_counter() - started < 20
    assert cut == 1 and lengths[0] == 4 and lengths[1] == MAX_CHARS // 5 + 2
    stats = LengthStats("tiny", 2, 1.0, 1.0, 1.0, 1.0, 1.0, int(lengths.max()), 128, 0.95, 128, {128: 0.5},
                        {128: 0.5}, cut=1)
    report = format_report([stats])
    assert f"≥ {lengths.max():,}" in report  # tokens, counted as tk counts: 20,002
    assert "1 texts are longer than 100,000 characters and were measured on their first 100,000" in report


@pytest.mark.parametrize("keys,message", [
    # 400 rows, no test split: a fifth (80) held out, 320 left; train_size 200 needs its rows after validation
    ({"validation_size": 300, "train_size": 200}, "cannot carve 300 validation rows from 320 training rows (left "
     "after holding out 80 as the test split: a 20% share, as eval_size is not set) and keep train_size = 200. "
     "Lower validation_size to at "
     "most 120, or add training rows."),
    ({"eval_size": 390, "validation_size": 50, "train_size": 200}, "eval_size = 390 leaves too few of the 400 "
     "training rows for validation and training. Lower eval_size to at most 150,"),
    ({"eval_size": 399}, "eval_size = 399 leaves too few of the 400 training rows for validation and training. "
     "Lower eval_size to at most 398,"),  # 1 training row and 1 validation row are the least a run takes
    ({"eval_size": 300, "train_size": 95}, "eval_size = 300 leaves too few of the 400 training rows for validation "
     "and training. Lower eval_size to at most 295,"),  # 105 left: the default validation, a tenth, leaves 95
])
def test_split_errors_give_the_limit_that_works(keys, message):
    with pytest.raises(TkError) as error:
        make_splits(datasets.DatasetDict(train=big(400)), task(**keys))
    assert message in str(error.value)
    limit = int(message.split("at most ")[1].split(",")[0].split(".")[0])
    key = "validation_size" if "validation_size to" in message else "eval_size"
    splits = make_splits(datasets.DatasetDict(train=big(400)), task(**{**keys, key: limit})).splits  # the limit works
    assert len(splits["train"]) == keys.get("train_size", len(splits["train"])) >= 1


def test_near_duplicate_label_names_are_flagged_and_emacs_keys_are_no_html():
    from toolkit.data.label_names import near_duplicate_labels

    names = ("python", "pyhton", "javascript", "NUM:count", "NUM:code", "Bug", "bug ")
    labels = np.array([0] * 230 + [1] + [2] * 50 + [3] * 40 + [4] * 35 + [5] * 10 + [6] * 9)
    found = near_duplicate_labels(names, [labels])
    assert len(found) == 1 and found[0].level == "warning" and found[0].count == 2
    assert "'pyhton' (1 row) beside 'python' (230)" in found[0].message
    assert "'bug ' (9 rows) beside 'Bug' (10)" in found[0].message
    assert "NUM:c" not in found[0].message  # alike, but both common: two classes
    texts = ["Use M-< and M-> to move", "a <br /> b", "x &amp; y", "if a < b and c > d"]
    report = check_splits(datasets.DatasetDict(train=dataset(texts, [0, 1, 0, 1])), "d", LABELS)
    assert findings(report)["html"].count == 2


def test_label_names_mixing_codes_and_words_are_flagged():
    """A file whose rows say 'ham'/'spam' in some places and 0/1 in others: four classes, two of them codes."""
    from toolkit.data.label_names import numbers_beside_words

    [found] = numbers_beside_words(("0", "1", "ham", "spam"))
    assert found.check == "similar_labels" and found.level == "warning" and found.count == 2
    assert "label names mix whole numbers ('0', '1') and words ('ham', 'spam')" in found.message
    assert "tk would train 4 classes" in found.message
    assert numbers_beside_words(("1", "2", "3", "4", "5")) == []  # star ratings: numbers only
    assert numbers_beside_words(("ham", "spam")) == [] and numbers_beside_words(("NUM:count", "ABBR:exp")) == []


def test_check_lists_the_checks_that_found_nothing():
    from toolkit.data.findings import format_report

    test = dataset([f"another {i}" for i in range(40)], [i % 2 for i in range(40)])
    clean = check_splits(datasets.DatasetDict(train=big(), test=test), "d", LABELS)
    printed = format_report(clean)
    assert ("Checked, nothing found: exact duplicate texts, texts alike but for case, spaces or HTML, texts shared "
            "between splits, texts with conflicting labels, HTML remnants, characters broken by a wrong decoding, "
            "label names that look like lists, label names written two ways, rare classes or labels, classes missing "
            "from a split.") in printed
    dirty = check_splits(datasets.DatasetDict(train=dataset(["same", "same", "x <br /> y"], [0, 1, 0])), "d", LABELS)
    listed = format_report(dirty).splitlines()[-2]
    assert listed.startswith("Checked, nothing found: ") and "HTML remnants" not in listed
    assert "exact duplicate" not in listed and "conflicting" not in listed
    assert "HTML remnants" in clean.as_dict()["checked_clean"] and "HTML remnants" not in dirty.as_dict()["checked_clean"]


@pytest.mark.parametrize("setting, reason", [
    ("positive_label=pso", ("--set: task 'toy', key 'positive_label': 'pso' is not a label of dataset 'toy'. "
                            "Its labels: 'neg', 'pos'. Did you mean 'pos'?")),
    ("class_weights={pso=2}", "class_weights names 'pso', which the data does not have. Labels: neg, pos."),
])
def test_check_fails_on_a_setting_the_data_refutes_as_tk_run_does(project, setting, reason):
    """tk check runs tk run's own check of the settings against the data's labels (check_settings_on_data)."""
    from tests.helpers import fails_with

    result = fails_with(reason, "check", "toy", "--set", setting)
    assert f"ERROR   tk run would stop on this task's settings: {reason}" in result.output
    assert result.output.rstrip().endswith(reason)
    fails_with(reason, "run", "toy", "--set", setting, "--output", project / "runs")  # tk run's own words
    assert not (project / "runs").exists()  # refused before any run folder


def test_check_refuses_a_task_name_tk_run_refuses(project):
    from tests.helpers import fails_with

    with open(project / "tasks.toml", "a") as tasks:
        tasks.write('\n[tasks."a b"]\ndataset = "toy"\ndata = "toy-data"\n')
    reason = "Task name 'a b' cannot name a run folder"
    fails_with(reason, "check", "a b")
    fails_with(reason, "run", "a b", "--output", project / "runs")
    assert not (project / "runs").exists()


@pytest.mark.parametrize("setting, reason", [("model=tinny", "Unknown model 'tinny'. Did you mean 'tiny'?"),
                                             ("engine=eagr", "Unknown engine 'eagr'. Did you mean 'eager'?")])
def test_check_refuses_a_model_or_engine_tk_run_refuses(project, setting, reason):
    from tests.helpers import fails_with

    fails_with(reason, "check", "toy", "--set", setting)
    fails_with(reason, "run", "toy", "--set", setting, "--output", project / "runs")
    assert not (project / "runs").exists()


def test_a_batch_size_over_the_training_rows_is_refused_by_check_and_run(project):
    """Every step runs batch_size rows (padding fills a short batch), so a batch over the 160 training rows
    would cost memory in proportion to batch_size: refused before training, by tk check too. A batch of every
    row is allowed; eval_batch_size only slices the rows it scores, so a huge one is harmless."""
    from tests.helpers import fails_with, ok

    reason = ("task 'toy': batch_size = 99999999999 is larger than the 160 training rows: one batch would hold "
              "every row; set batch_size to at most 160, e.g. --set batch_size=16.")
    for batch_size in (161, 99999999999):
        fails_with(f"batch_size = {batch_size} is larger than the 160 training rows", "check", "toy",
                   "--set", f"batch_size={batch_size}")
    result = fails_with(reason, "run", "toy", "--set", "batch_size=99999999999", "--output", project / "runs")
    assert "Traceback" not in result.output and not (project / "runs").exists()
    ok("check", "toy", "--set", "batch_size=160")
    ok("run", "toy", "--set", "batch_size=160", "--set", "eval_batch_size=99999999999", "--set", "epochs=1",
       "--output", project / "runs")
    (run,) = (project / "runs").iterdir()
    assert json.loads((run / "status.json").read_text())["status"] == "complete"


def test_rows_left_out_for_a_shared_text_are_not_called_nothing_found():
    """tk check said 'test: left out 118 rows whose text is also in the training or validation data', then
    'Checked, nothing found: texts shared between splits' (the file's own splits share none)."""
    from toolkit.data.findings import CheckReport, found_nothing

    clean = CheckReport(dataset="d", rows={"train": 10}, findings=[])
    assert "texts shared between splits" in found_nothing(clean)
    carved = CheckReport(dataset="d", rows={"train": 10}, findings=[], left_out={"test": {"rows": [3, 7]}})
    assert "texts shared between splits" not in found_nothing(carved)


def test_each_warning_says_what_tk_run_does_with_its_rows_once():
    """A re-trial: 'None of them says whether tk run keeps, drops or fixes these rows, or what I should do.'"""
    from toolkit.data.findings import WHAT_TK_RUN_DOES, format_report

    train = dataset(["Good film", "good   FILM", "Good film", "bad <br /> film", "x", "y"], [1, 1, 1, 0, 0, 0])
    printed = format_report(check_splits(datasets.DatasetDict(train=train), "d", LABELS))
    for check in ("html", "duplicates"):
        assert printed.count(WHAT_TK_RUN_DOES[check]) == 1, printed  # duplicates: exact and case-blind, said once
    assert "tk run trains on the text as it is, markup included" in printed
