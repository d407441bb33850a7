"""problem = "multi-label": label lists, several 0/1 columns, sigmoid and BCE, thresholds tuned per label,
metrics equal to scikit-learn's, the baseline and its warnings, tk check, tk predict, tk evaluate, pipeline."""

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

from plugins.metrics import tk_compute_metrics
from tests.helpers import fails_with, ok, quiet
from toolkit.config import build_task, with_overrides
from toolkit.data.loading import load_with_labels
from toolkit.data.multilabel import apply_multilabel_mapping, strata
from toolkit.errors import TkError
from toolkit.evaluation.baseline import compare_multilabel
from toolkit.evaluation.inference import predict_probabilities
from toolkit.evaluation.multilabel import predict_sets
from toolkit.evaluation.pooling import pool, pool_rows
from toolkit.evaluation.report import format_metrics
from toolkit.evaluation.thresholds import best_threshold, tune_thresholds
from toolkit.longdocs import predict_long
from toolkit.plugins import PluginManager
from toolkit.records import DatasetInfo, DataSource, LabelMapping
from toolkit.runs.pipeline import prepare, run_task
from toolkit.runs.saved import load_run
from toolkit.tasks_file import load_config
from toolkit.testing import multilabel_keyword_rows
from toolkit.training import policy

LABELS = ("neg", "pos", "question")


def write_jsonl(path, rows, key="labels"):
    path.write_text("".join(json.dumps({"text": text, key: labels}) + "\n" for text, labels in rows), encoding="utf-8")
    return path


def load(pm, path, **keys):
    task = build_task("t", {"dataset": "files", "model": "minilm", "problem": "multi-label", **keys}, "test",
                      tuple(pm.settings().values()))
    loaded = load_with_labels(pm, pm.dataset("files"), DataSource(path, "test", path.parent), task)
    return loaded.dataset, loaded.splits, loaded.notes


@pytest.fixture
def files_pm(tmp_path):
    return PluginManager().load((), tmp_path)


# -- metrics, thresholds and the baseline on fixed arrays ------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, k = 120, int(rng.integers(3, 7))
    truth = (rng.random((n, k)) < 0.3).astype(np.float32)
    truth[:, k - 1] = 0  # a label no row has: left out of the macro averages
    probabilities = np.clip(0.55 * truth + 0.5 * rng.random((n, k)), 0, 1)
    thresholds = rng.uniform(0.3, 0.7, k)
    names = tuple(f"l{j}" for j in range(k))
    metrics = tk_compute_metrics(truth, probabilities, names, True, None, "multi-label", thresholds)
    predicted = probabilities >= thresholds
    present = [j for j in range(k - 1) if truth[:, j].any()]
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted, average="micro", zero_division=0))
    assert metrics["f1_macro"] == pytest.approx(f1_score(truth, predicted, average="macro", labels=present,
                                                         zero_division=0))
    assert metrics["hamming_loss"] == pytest.approx(hamming_loss(truth, predicted))
    assert metrics["accuracy"] == metrics["subset_accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    for j, name in enumerate(names):
        row = metrics["per_class"][name]
        assert (row["precision"], row["recall"], row["f1-score"], row["support"]) == pytest.approx(
            (precision[j], recall[j], f1[j], support[j]))
        assert row["threshold"] == pytest.approx(thresholds[j])
    assert metrics["classes_absent"] == [names[-1]]
    assert metrics["per_class"]["macro avg"]["labels"] == len(present)
    for name in ("f1", "f1_macro", "hamming_loss"):
        low, high = metrics[f"{name}_ci"]
        assert low <= metrics[name] <= high and metrics[f"{name}_ci_method"] in ("bca", "percentile")
    assert metrics["accuracy_ci_method"] == "wilson"
    per_epoch = tk_compute_metrics(truth, probabilities, names, False, None, "multi-label", thresholds)
    assert per_epoch == {key: pytest.approx(metrics[key]) for key in per_epoch}


def test_macro_f1_over_a_label_with_one_row_takes_the_percentile_interval():
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 3)) < 0.4).astype(np.float32)
    truth[:, 2] = 0
    truth[7, 2] = 1  # one row carries the third label: a resample lacks it about a third of the time
    probabilities = np.clip(0.5 * truth + 0.55 * rng.random((200, 3)), 0, 1)
    metrics = tk_compute_metrics(truth, probabilities, ("a", "b", "c"), True, None, "multi-label", None)
    assert metrics["f1_macro_ci_method"] == "percentile"
    assert metrics["f1_ci_method"] == "bca"  # micro F1 pools the counts: no class drops out of it
    truth[8:10, 2] = 1
    again = tk_compute_metrics(truth, probabilities, ("a", "b", "c"), True, None, "multi-label", None)
    assert again["f1_macro_ci_method"] == "bca"


def test_thresholds_against_hand_computed_values():
    # candidates 0.9 .. 0.2 give F1 2/4, 4/5, 4/6, 6/7, 6/8, 6/9: 0.4 wins, halfway to the next value down
    assert best_threshold([1, 1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.4, 0.3, 0.2]) == pytest.approx(0.35)
    # 0.9 and 0.2 tie at F1 2/3: the higher threshold (fewer labels) wins
    assert best_threshold([1, 0, 0, 1], [0.9, 0.6, 0.5, 0.2]) == pytest.approx(0.75)
    # every row positive: predicting all is F1 1; the threshold is the lowest probability itself
    assert best_threshold([1, 1], [0.3, 0.6]) == pytest.approx(0.3)
    # equal probabilities are one candidate: 0.7 predicts both rows (F1 2/3), not one of them
    assert best_threshold([1, 0, 0], [0.7, 0.7, 0.2]) == pytest.approx(0.45)
    assert best_threshold([0, 0], [0.9, 0.1]) is None
    truth = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]])
    probabilities = np.array([[0.9, 0.9, 0.8], [0.8, 0.6, 0.1], [0.7, 0.5, 0.2], [0.4, 0.6, 0.3],
                              [0.3, 0.1, 0.9], [0.2, 0.2, 0.4]])
    thresholds, untuned = tune_thresholds(truth, probabilities, min_positives=1)
    # label 0 is the first case above; label 1: 0.9 (F1 2/4), 0.6 (two rows, 2/6), 0.5 (4/7), 0.2 (6/8),
    # 0.1 (6/9): 0.2 wins, halfway to 0.1; label 2 has no positive row: 0.5, named
    assert thresholds.tolist() == pytest.approx([0.35, 0.15, 0.5]) and untuned == [2]
    # by default a label needs 5 positive validation rows: 3 are too few to tune on (noise), so 0.5 stays
    assert tune_thresholds(truth, probabilities)[0].tolist() == [0.5, 0.5, 0.5]
    assert tune_thresholds(np.tile(truth, (2, 1)), np.tile(probabilities, (2, 1)))[1] == [2]  # 6 positives: tuned
    predicted = predict_sets(probabilities, thresholds)
    assert predicted[:, 0].tolist() == [True, True, True, True, False, False]
    assert predicted[:, 1].tolist() == [True, True, True, True, False, True]


def test_baseline_and_warnings_for_a_model_that_predicts_no_label():
    truth = np.zeros((40, 3))
    truth[:10, 0] = truth[5:15, 1] = 1
    silent = np.zeros_like(truth, dtype=bool)
    found = compare_multilabel(truth, silent, LABELS, np.zeros(3))
    baseline = found["baseline"]
    assert baseline["labels"] == [] and baseline["accuracy"] == pytest.approx(25 / 40)
    assert baseline["hamming_loss"] == pytest.approx(20 / 120) and baseline["f1"] == 0
    text = " ".join(found["warnings"])
    assert "predicts no label at all for 100.0% of the 40 rows" in text
    assert "never predicts 2 label(s) that the scored rows have: neg, pos" in text
    assert "does not beat always predicting no label" in text and "Hamming loss" in text
    right = truth > 0
    assert compare_multilabel(truth, right, LABELS, np.zeros(3))["warnings"] == []
    majority = compare_multilabel(np.ones((4, 3)), np.ones((4, 3), bool), LABELS)["baseline"]
    assert majority["labels"] == list(LABELS) and majority["source"] == "scored split"


def test_report_text_names_the_multilabel_numbers():
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 10, dtype=np.float32)
    probabilities = np.clip(truth * 0.8 + 0.1, 0, 1)
    metrics = tk_compute_metrics(truth, probabilities, ("a", "b"), True, None, "multi-label", np.array([0.5, 0.3]))
    metrics.update(compare_multilabel(truth, predict_sets(probabilities, [0.5, 0.3]), ("a", "b"), np.zeros(2)))
    text = format_metrics(metrics)
    for part in ("f1 (micro)", "subset accuracy", "hamming loss", "baseline: always no label", "threshold",
                 "0.300"):
        assert part in text, text


def test_losses_and_pooling(tiny_model):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3)
    model.config.problem_type = "multi_label_classification"
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    out = model(input_ids=ids, attention_mask=(ids > 0).long(), labels=labels)
    task = build_task("t", {"dataset": "-", "model": "-", "problem": "multi-label"}, "test")
    ours = policy.training_loss(out.logits, labels, task)
    assert ours.shape == () and ours.item() == pytest.approx(out.loss.item(), rel=1e-6)  # BCEWithLogits, batch mean
    p = np.array([[0.9, 0.2], [0.4, 0.6]])
    y = np.array([[1, 0], [0, 0]])
    expected = -(np.log(0.9) + np.log(0.8) + np.log(0.6) + np.log(0.4)) / 4
    assert policy.validation_loss(y, p) == pytest.approx(expected)
    sigmoid = np.array([[0.5, 1 / (1 + np.exp(-2))]])
    assert policy.probabilities_of(np.array([[0.0, 2.0]]), task) == pytest.approx(sigmoid)
    windows = np.array([[0.9, 0.1], [0.2, 0.3], [0.5, 0.5]])
    labels_out, pooled = pool_rows(np.array([[1, 0], [1, 0], [0, 1]]), windows, [0, 0, 1], "max")
    assert pooled == pytest.approx(np.array([[0.9, 0.3], [0.5, 0.5]]))  # not renormalised: labels are separate
    assert labels_out.tolist() == [[1, 0], [0, 1]]
    assert pool(windows, [0, 0, 1], "max") == pytest.approx(np.array([[0.9 / 1.2, 0.3 / 1.2], [0.5, 0.5]]))


def test_strata_keep_rare_labels_and_merge_lone_rows():
    labels = np.array([[1, 0, 0]] * 6 + [[1, 1, 0]] * 3 + [[0, 0, 1]] + [[0, 0, 0]] * 4)
    keys = strata(labels)
    assert len(set(keys[6:9].tolist())) == 1 and keys[6] != keys[0]  # rows with the rarer label 1 stay together
    assert keys[9] in keys[:9].tolist() + keys[10:].tolist()  # a lone stratum is merged, so stratifying works


# -- reading the data ------------------------------------------------------------------------------


def test_jsonl_lists_csv_separators_and_flag_columns(files_pm, tmp_path):
    write_jsonl(tmp_path / "tags.jsonl", [("good film", ["pos"]), ("why bad", ["question", "neg"]), ("plain", []),
                                          ("fine", ["pos"])])
    dataset, splits, _ = load(files_pm, tmp_path / "tags.jsonl", validation_size=1)
    assert dataset.labels == LABELS
    assert np.asarray(splits["train"]["label"]).tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0]]

    with open(tmp_path / "tags.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["text", "tags"], ["a", "x|y"], ["b", ""], ["c", '["y", "z|w"]'], ["d", " z "]])
    dataset, splits, _ = load(files_pm, tmp_path / "tags.csv", label_column="tags", label_separator="|")
    assert dataset.labels == ("x", "y", "z", "z|w")  # a JSON list in a cell is read as that list
    assert np.asarray(splits["train"]["label"]).tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1],
                                                            [0, 0, 1, 0]]

    with open(tmp_path / "flags.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["comment", "toxic", "spam", "id"], ["a", 1, 0, 7], ["b", 0, 0, 8],
                                      ["c", 1, 1, 9]])
    dataset, splits, _ = load(files_pm, tmp_path / "flags.csv", text_column="comment",
                              label_columns=["spam", "toxic"])
    assert dataset.labels == ("spam", "toxic")  # the columns' order, not sorted
    assert np.asarray(splits["train"]["label"]).tolist() == [[0, 1], [0, 0], [1, 1]]


def test_label_mapping_drops_values_not_rows():
    import datasets

    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"],
                                                                    "label": [["x", "skip"], ["skip"]]})})
    mapped = apply_multilabel_mapping(raw, DatasetInfo("d", ("x", "y")), LabelMapping({"x": 0, "y": 1, "skip": None}),
                                      every_label=False)
    assert np.asarray(mapped.value["train"]["label"]).tolist() == [[1, 0], [0, 0]]
    assert "left out of the rows' label lists" in mapped.notes[0]


def test_a_plugins_label_lists_go_through_its_own_mapping(pm, tmp_path):
    """A dataset plugin's label lists: refused by a single-label task, with the fix; with no task (tk check)
    or a multi-label one, each value goes through the plugin's tk_label_mapping."""
    path = write_jsonl(tmp_path / "rows.jsonl", [("good", ["pos"]), ("mixed", ["neg", "pos"])], key="label")
    dataset, source = pm.dataset("toy"), DataSource(path, "test")
    single = build_task("t", {"dataset": "toy", "model": "tiny"}, "test")
    with pytest.raises(TkError, match=r"holds lists \(e.g. row 1: \['pos'\]\): several labels per text. Set "
                                      r"problem = \"multi-label\""):
        load_with_labels(pm, dataset, source, single)
    for task in (None, with_overrides(single, {"problem": "multi-label"})):
        splits = load_with_labels(pm, dataset, source, task).splits
        assert np.asarray(splits["train"]["label"]).tolist() == [[0, 1], [1, 1]]


def test_clear_errors(files_pm, tmp_path):
    with open(tmp_path / "flags.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["text", "toxic", "spam"], ["a", 1, 0], ["b", "maybe", 1]])
    with pytest.raises(TkError, match=r"label column 'toxic' holds 'maybe' \(row 2\); each label column must hold 0 "
                                      r"or 1"):
        load(files_pm, tmp_path / "flags.csv", label_columns=["toxic", "spam"])
    with pytest.raises(TkError, match="no label column 'obscene'"):
        load(files_pm, tmp_path / "flags.csv", label_columns=["toxic", "obscene"])
    write_jsonl(tmp_path / "tags.jsonl", [("a", ["x"]), ("b", ["x"])])
    with pytest.raises(TkError, match="two labels or more"):
        load(files_pm, tmp_path / "tags.jsonl")
    write_jsonl(tmp_path / "tags.jsonl", [("a", ["x"]), ("b", ["y"])])
    with pytest.raises(TkError, match="no training row has the label 'z'"):
        load(files_pm, tmp_path / "tags.jsonl", labels=["x", "y", "z"])
    fails_with('holds lists (e.g. row 1: [\'x\']): several labels per text. Set problem = "multi-label"',
               "run", "--data", tmp_path / "tags.jsonl")
    fails_with('several 0/1 label columns make a multi-label task. Add problem = "multi-label"',
               "run", "--data", tmp_path / "flags.csv", "--set", 'label_columns=["toxic", "spam"]')
    fails_with("key 'positive_label': a multi-label task scores every label on its own", "run", "--data",
               tmp_path / "tags.jsonl", "--set", "problem=multi-label", "--set", "positive_label=x")


def test_check_reports_cooccurrence_rare_labels_and_rows_without_label(tmp_path):
    rows = ([(f"good why {i}", ["pos", "question"]) for i in range(12)] + [(f"bad {i}", ["neg"]) for i in range(3)]
            + [(f"plain {i}", []) for i in range(5)])  # distinct texts: repeated ones would leave no validation rows
    write_jsonl(tmp_path / "tags.jsonl", rows)
    report = json.loads(ok("check", "--data", tmp_path / "tags.jsonl", "--set", "problem=multi-label", "--set",
                           "batch_size=8", "--json"))  # a batch within its 15 training rows
    found = {f["check"]: f for f in report["findings"]}
    assert found["label_cooccurrence"]["examples"][0].startswith("pos + question: 12 rows")
    assert "neg (3 rows)" in found["rare_labels"]["message"] and found["rare_labels"]["level"] == "warning"
    assert found["rows_without_label"]["count"] == 5
    assert "pos and question" in found["labels_always_together"]["message"]
    assert "neg 3 (15.0%)" in found["label_counts"]["message"]


# -- end to end ----------------------------------------------------------------------------------


TWO = ("neg", "pos")
TASKS = """
[tasks.tags]
dataset = "files"
data = "tags"
model = "{model}"
problem = "multi-label"
max_length = 48
batch_size = 8
epochs = 5
learning_rate = 5e-3
validation_size = 40
seed = 1
patience = 0
"""


@pytest.fixture
def tags_project(tmp_path, tiny_model):
    folder = tmp_path / "tags"
    folder.mkdir()
    # Two labels: the tiny random BERT learns keyword labels one at a time, slowly; two fit in five epochs.
    write_jsonl(folder / "train.jsonl", multilabel_keyword_rows(280, TWO, seed=1, words=(2, 8)))
    write_jsonl(folder / "test.jsonl", multilabel_keyword_rows(80, TWO, seed=2, words=(2, 8)))
    (tmp_path / "tasks.toml").write_text(TASKS.format(model=tiny_model))
    return tmp_path


def test_train_and_evaluate_end_to_end(tags_project, engine):
    pm = PluginManager().load((), tags_project)
    task = with_overrides(load_config(tags_project / "tasks.toml", pm).task("tags"), {"engine": engine, "bf16": "off"})
    outcome = run_task(pm, task, output=tags_project / "runs", base=tags_project, progress=quiet())
    metrics, run_dir = outcome.metrics, outcome.run_dir
    assert outcome.status == "complete" and metrics["problem"] == "multi-label" and metrics["n"] == 80
    assert metrics["hamming_loss"] < metrics["baseline"]["hamming_loss"], metrics
    assert metrics["f1"] > 0.6, metrics["f1"]
    assert all(0 <= row["f1_macro"] <= 1 for row in metrics["history"])

    # The saved thresholds are those tuned on the validation split with the saved model.
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["tk_thresholds"] == metrics["thresholds"]
    saved = load_run(run_dir)
    validation = prepare(pm, task, None, tags_project, quiet()).tokenized["validation"]
    tuned, _ = tune_thresholds(np.asarray(validation["labels"]), predict_probabilities(saved.model, validation))
    assert saved.thresholds.tolist() == pytest.approx(tuned.tolist(), abs=1e-6)

    # predictions.csv, tk predict and pipeline(top_k=None) all say the same.
    with open(run_dir / "predictions.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [row["text"] for row in rows[:5]]
    answers = json.loads(ok("predict", run_dir, "--json", *texts))["predictions"]
    mine = saved.probabilities(texts)
    for row, answer, p in zip(rows, answers, mine):
        expected = [name for j, name in enumerate(TWO) if p[j] >= saved.thresholds[j]]
        assert sorted(json.loads(row["predicted"])) == sorted(answer["labels"]) == sorted(expected)
        assert answer["probabilities"]["pos"] == pytest.approx(float(p[1]), abs=1e-4)
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(run_dir / "model"), top_k=None, truncation=True)
    for scores, p in zip(classify(texts), mine):
        assert {s["label"]: s["score"] for s in scores} == pytest.approx(dict(zip(TWO, p.tolist())), abs=1e-5)
    assert [answer["labels"] for answer in predict_long(run_dir, texts)] == [a["labels"] for a in answers]
    text = ok("predict", run_dir, texts[0])
    assert all(name in text for name in answers[0]["labels"]) or "(no label)" in text

    # tk evaluate on the recorded data scores the same rows with the saved thresholds.
    output = ok("evaluate", run_dir)
    assert "subset accuracy" in output and "threshold" in output
    evaluated = json.loads(next((run_dir / "evaluations").glob("test-*.json")).read_text())
    for name in ("f1", "f1_macro", "hamming_loss", "accuracy"):
        assert evaluated[name] == pytest.approx(metrics[name], abs=1e-6), name
    assert evaluated["baseline"]["source"] == "training split"
    page = (run_dir / "report.html").read_text()
    assert "Per-label scores" in page and "subset accuracy" in page
    assert "top_k=None" in (run_dir / "model" / "README.md").read_text()


def test_chunks_windows_carry_their_texts_label_sets(tags_project):
    pm = PluginManager().load((), tags_project)
    task = with_overrides(load_config(tags_project / "tasks.toml", pm).task("tags"),
                          {"long_text": "chunks", "max_length": 6, "stride": 1})
    prepared = prepare(pm, task, None, tags_project, quiet())
    validation = prepared.tokenized["validation"]
    assert len(validation) > len(prepared.splits["validation"])  # several windows for some texts
    texts_labels, _ = pool_rows(validation["labels"], np.zeros((len(validation), 2)), validation["document"])
    assert texts_labels.tolist() == np.asarray(prepared.splits["validation"]["label"]).tolist()


def test_a_single_label_task_on_a_saved_multilabel_model_goes_back_to_softmax(tiny_model):
    from transformers import AutoConfig

    from toolkit.runs.prepared import set_problem

    config = AutoConfig.from_pretrained(tiny_model)
    config.problem_type, config.tk_thresholds = "multi_label_classification", {"a": 0.3}
    model = type("Model", (), {"config": config})()
    set_problem(model, build_task("t", {"dataset": "-", "model": "-"}, "test"))
    assert config.problem_type is None and not hasattr(config, "tk_thresholds")
    set_problem(model, build_task("t", {"dataset": "-", "model": "-", "problem": "multi-label"}, "test"))
    assert config.problem_type == "multi_label_classification"


def test_check_warns_when_labels_look_like_unsplit_lists(tmp_path):
    """A multi-label file read as single-label, or split with the wrong separator, trains compound labels
    ('billing|urgent') with no error: tk check says what to set."""
    rows = [(f"{text} ({i})", label) for i in range(10) for text, label in (
        ("refund please now", "billing|urgent"), ("card charged twice", "billing"),
        ("site is down", "outage|urgent"), ("login broken", "outage"))]
    path = tmp_path / "tags.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    output = ok("check", "--data", path)  # single-label: 4 classes, 2 of them lists
    assert "2 of 4 labels contain '|'" in output and 'set problem = "multi-label" and label_separator = "|"' in output
    output = ok("check", "--data", path, "--set", "problem=multi-label")  # the default separator is ','
    assert 'set label_separator = "|"' in output, output
    output = ok("check", "--data", path, "--set", "problem=multi-label", "--set", "label_separator=|")
    assert "label_separator" not in output
