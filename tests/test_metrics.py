"""Metrics that are honest on any label set: macro over present classes, named positive class,
the majority-class baseline and its warnings, intervals that never collapse at 0 or 1, the report text."""

import re

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from plugins.metrics import tk_compute_metrics
from toolkit.data.checks import class_presence
from toolkit.evaluation.baseline import compare_with_baseline
from toolkit.evaluation.counts import metric_scores
from toolkit.evaluation.report import format_metrics


def one_hot(predictions, n_classes):
    probabilities = np.full((len(predictions), n_classes), 0.1 / n_classes)
    probabilities[np.arange(len(predictions)), predictions] = 0.9
    return probabilities


def scored(labels, predictions, names, majority=None, **extra):
    """What score() gives for a test report: the plugin's metrics plus the baseline comparison."""
    metrics = tk_compute_metrics(np.asarray(labels), one_hot(np.asarray(predictions), len(names)), names,
                                 confidence=True, **extra)
    metrics.update(compare_with_baseline(labels, predictions, names, majority))
    return metrics


@pytest.mark.parametrize("seed", range(6))
def test_macro_averages_equal_sklearn_over_the_present_classes(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(3, 12))
    true_classes = rng.choice(n_classes, size=int(rng.integers(2, n_classes)), replace=False)  # some absent
    labels = rng.choice(true_classes, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, n_classes, 200))  # some never true
    names = tuple(f"c{k}" for k in range(n_classes))
    metrics = tk_compute_metrics(labels, one_hot(predictions, n_classes), names, confidence=True)
    present = sorted(set(labels.tolist()))
    for key, sklearn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        assert metrics[key] == pytest.approx(sklearn(labels, predictions, labels=present, average="macro",
                                                     zero_division=0)), key
    assert metrics["f1_macro"] == metrics["f1"]
    assert metrics["f1_weighted"] == pytest.approx(f1_score(labels, predictions, average="weighted", zero_division=0))
    assert metrics["classes_absent"] == [f"c{k}" for k in range(n_classes) if k not in present]
    macro = metrics["per_class"]["macro avg"]
    assert macro["f1-score"] == pytest.approx(metrics["f1"]) and macro["classes"] == len(present)
    low, high = metrics["f1_ci"]  # the bootstrap resamples the same present-class macro average
    assert low <= metrics["f1"] <= high
    per_epoch = tk_compute_metrics(labels, one_hot(predictions, n_classes), names, confidence=False)
    assert per_epoch["f1"] == pytest.approx(metrics["f1"])


def test_a_perfect_model_scores_macro_f1_one_with_classes_absent():
    labels = np.arange(100) % 5  # classes 5..9 never occur
    metrics = scored(labels, labels, tuple(f"c{k}" for k in range(10)))
    assert metrics["f1"] == metrics["f1_macro"] == 1.0
    assert metrics["classes_absent"] == ["c5", "c6", "c7", "c8", "c9"]
    printed = format_metrics(metrics)
    assert "left out of the macro averages: c5, c6, c7, c8, c9" in printed
    rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if re.match(r"\s+c\d ", line)}
    assert rows["c0"][1:3] == ["1.000", "1.000"] and rows["c9"][1:4] == ["—", "—", "0"]  # no row: nothing measured


def test_binary_scores_name_their_positive_class_and_add_macro_f1():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    predictions = np.where(rng.random(300) < 0.8, labels, 1 - labels)
    default = scored(labels, predictions, ("neg", "pos"))
    assert default["positive_label"] == "pos"
    assert default["f1"] == pytest.approx(f1_score(labels, predictions, pos_label=1))
    assert default["f1_macro"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    chosen = scored(labels, predictions, ("neg", "pos"), positive_label=0)
    assert chosen["positive_label"] == "neg"
    assert chosen["f1"] == pytest.approx(f1_score(labels, predictions, pos_label=0))
    assert chosen["precision"] == pytest.approx(precision_score(labels, predictions, pos_label=0))
    assert chosen["recall"] == pytest.approx(recall_score(labels, predictions, pos_label=0))
    printed = format_metrics(chosen)
    assert "f1 (positive: neg)" in printed and "f1 (macro)" in printed


def test_a_good_model_on_balanced_data_gets_no_warning():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200)
    predictions = np.where(rng.random(200) < 0.9, labels, 1 - labels)
    metrics = scored(labels, predictions, ("neg", "pos"), majority=0)
    assert metrics["warnings"] == []
    assert metrics["baseline"]["mcnemar_p"] < 0.05
    assert "WARNING" not in format_metrics(metrics)


def test_a_constant_predictor_gets_both_warnings():
    labels = np.array([0] * 87 + [1] * 13)
    metrics = scored(labels, np.zeros(100, int), ("neg", "pos"), majority=0)
    assert metrics["baseline"] == {"label": "neg", "source": "training split", "accuracy": 0.87,
                                   "f1_macro": pytest.approx(f1_score(labels, np.zeros(100), average="macro",
                                                                      zero_division=0)), "mcnemar_p": 1.0}
    one_class, no_better = metrics["warnings"]
    assert "'neg' for 100.0% of the 100 rows" in one_class
    assert "does not beat always predicting 'neg'" in no_better
    assert format_metrics(metrics).count("WARNING") == 2


def test_a_model_at_the_majority_rate_gets_the_baseline_warning_only():
    # 87% majority; the model is right on 0.869 of the rows but does not predict one class throughout.
    labels = np.array([0] * 870 + [1] * 130)
    predictions = labels.copy()
    predictions[:70] = 1  # 70 majority rows wrong
    predictions[870:931] = 0  # 61 minority rows wrong: accuracy 0.869, 'neg' predicted for 86.1%
    metrics = scored(labels, predictions, ("neg", "pos"), majority=0)
    assert metrics["accuracy"] == pytest.approx(0.869)
    assert len(metrics["warnings"]) == 1 and "does not beat always predicting 'neg'" in metrics["warnings"][0]


def test_a_small_gain_over_the_baseline_is_called_noise():
    labels = np.array([0] * 87 + [1] * 13)
    predictions = np.zeros(100, int)
    predictions[87:89] = 1  # two more right: 0.89 vs 0.87
    metrics = scored(labels, predictions, ("neg", "pos"), majority=0)
    assert metrics["baseline"]["mcnemar_p"] >= 0.05
    assert any("within noise" in warning for warning in metrics["warnings"])


def test_classes_the_model_never_predicts_are_named():
    labels = np.array([0] * 40 + [1] * 30 + [2] * 20 + [3] * 4)
    predictions = np.where(labels == 2, 0, labels)  # never '2' (20 rows); never '3' either, but it has 4 rows
    predictions[-4:] = 0
    warnings = scored(labels, predictions, ("a", "b", "c", "d"), majority=0)["warnings"]
    assert [w for w in warnings if "never predicts" in w] == [
        "The model never predicts 2 of the 4 classes in these rows: 'c' (20 rows), 'd' (4 rows). Their recall and "
        "F1 are 0, so macro recall is at most 0.500."]  # 'd' counts in the cap, though alone it would not warn
    only_small = np.where(labels == 3, 0, labels)
    assert not any("never predicts" in w for w in scored(labels, only_small, ("a", "b", "c", "d"), majority=0)["warnings"])
    every_class = scored(labels, labels, ("a", "b", "c", "d"), majority=0)["warnings"]
    assert not any("never predicts" in w for w in every_class)


def test_warnings_count_rows_with_thousands_separators():
    labels = np.array([0] * 1200 + [1] * 1500 + [2] * 300)
    one_class = scored(labels, np.zeros(3000, int), ("a", "b", "c"), majority=0)["warnings"][0]
    assert "'a' for 100.0% of the 3,000 rows" in one_class
    predictions = np.where(labels == 1, 0, labels)  # never 'b'
    never = [w for w in scored(labels, predictions, ("a", "b", "c"), majority=0)["warnings"] if "never" in w]
    assert never and "'b' (1,500 rows)" in never[0]


def test_without_training_labels_the_baseline_comes_from_the_scored_split():
    labels = np.array([1] * 60 + [0] * 40)
    metrics = scored(labels, labels, ("neg", "pos"))
    assert metrics["baseline"]["label"] == "pos" and metrics["baseline"]["source"] == "scored split"
    assert "most frequent class of the scored split" in format_metrics(metrics)


def test_accuracy_one_gets_a_wilson_interval_below_one():
    labels = np.arange(50) % 2
    metrics = scored(labels, labels, ("neg", "pos"))
    low, high = metrics["accuracy_ci"]
    assert high == 1.0 and low == pytest.approx(0.9286, abs=1e-3)
    assert metrics["accuracy_ci_method"] == "wilson"


def test_precision_without_predicted_positives_has_no_interval_and_says_why():
    labels = np.array([0] * 80 + [1] * 20)
    metrics = scored(labels, np.zeros(100, int), ("neg", "pos"))
    assert metrics["precision_ci"] is None
    assert "n too small" in metrics["precision_ci_note"] and "no row predicted 'pos'" in metrics["precision_ci_note"]
    assert metrics["recall_ci"][0] == 0.0 < metrics["recall_ci"][1]  # 0 of 20: Wilson is not [0, 0]
    assert "no interval: n too small" in format_metrics(metrics)
    assert ("  Precision is undefined for 'pos' (no row was predicted as it): shown as 0, as scikit-learn's "
            "zero_division=0 does.") in format_metrics(metrics).splitlines()


def test_a_bootstrap_that_cannot_vary_is_null_with_a_note():
    labels = np.arange(300) % 3
    metrics = scored(labels, labels, ("a", "b", "c"))
    assert metrics["f1_ci"] is None and metrics["f1_ci_note"].startswith("every resample gave the same value")
    small = scored(labels[:20], (labels[:20] + 1) % 3, ("a", "b", "c"))
    assert small["f1_ci"] is None and small["f1_ci_note"].startswith("n too small")


def test_each_resample_averages_over_its_own_classes():
    """The bootstrap scores a resample as the estimate scores the data: a class the resample lacks is left out."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(50, 12))  # 50 resamples of 12 rows; some lack a class
    predictions = np.where(rng.random((50, 12)) < 0.7, labels, rng.integers(0, 6, size=(50, 12)))
    batch = metric_scores(labels, predictions, 6)
    assert any(len(set(row.tolist())) < 6 for row in labels)
    for i in range(50):
        present = sorted(set(labels[i].tolist()))
        assert batch["f1_macro"][i] == pytest.approx(f1_score(labels[i], predictions[i], labels=present,
                                                              average="macro", zero_division=0))


def test_a_perfect_model_with_a_one_row_class_gets_no_interval_below_one():
    """Scored 0 in the resamples that lacked it, the one-row class used to pull the interval below 1."""
    labels = np.concatenate([np.arange(200) % 3, [3]])
    metrics = scored(labels, labels, ("a", "b", "c", "d"))
    assert metrics["f1_macro"] == 1.0
    assert metrics["f1_macro_ci"] is None and metrics["f1_macro_ci_note"].startswith("every resample gave")


def test_a_class_of_two_rows_takes_the_percentile_interval_for_macro_scores():
    rng = np.random.default_rng(1)
    labels = np.concatenate([rng.integers(0, 3, 300), [3, 3]])
    predictions = np.where(rng.random(302) < 0.75, labels, rng.integers(0, 4, 302))
    metrics = scored(labels, predictions, ("a", "b", "c", "d"))
    for name in ("f1", "precision", "recall", "f1_macro"):
        assert metrics[f"{name}_ci_method"] == "percentile", name
        low, high = metrics[f"{name}_ci"]
        assert low <= metrics[name] <= high
    assert metrics["f1_weighted_ci_method"] == "bca"  # a missing class weighs 0 in it anyway
    larger = scored(labels[:-1].tolist() + [3, 3], predictions.tolist() + [3], ("a", "b", "c", "d"))
    assert larger["f1_ci_method"] == "bca"  # three rows of "d"
    binary = scored(np.minimum(labels, 1), np.minimum(predictions, 1), ("no", "yes"))
    assert binary["f1_macro_ci_method"] == "bca"
    rare_yes = scored((labels == 3).astype(int), (predictions == 3).astype(int), ("no", "yes"))
    assert rare_yes["f1_macro_ci_method"] == "percentile"  # two rows of "yes"


@pytest.mark.parametrize("seed", range(4))
def test_intervals_contain_the_estimate_and_use_bca_for_f1(seed):
    rng = np.random.default_rng(seed)
    n_classes = 2 + seed % 2
    labels = rng.integers(0, n_classes, 400)
    predictions = np.where(rng.random(400) < 0.75, labels, rng.integers(0, n_classes, 400))
    metrics = scored(labels, predictions, tuple("abc"[:n_classes]))
    for name in ("accuracy", "f1", "precision", "recall", "f1_macro"):
        low, high = metrics[f"{name}_ci"]
        assert low < metrics[name] < high and high - low < 0.25, name
    assert metrics["f1_ci_method"] == "bca"


def test_report_names_its_split_and_selection_and_fits_long_labels():
    long_name = "a label much longer than twelve characters"
    labels = np.arange(90) % 3
    metrics = scored(labels, labels, ("short", long_name, "x" * 60))
    metrics.update(split="validation", best_epoch=2, epochs_run=3, select_metric="accuracy", select_on="validation")
    printed = format_metrics(metrics)
    assert printed.startswith("Validation metrics (validation split, 90 examples, 95% intervals: Wilson")
    assert "kept epoch 2 of 3 (highest validation accuracy)" in printed
    rows = [line for line in printed.splitlines() if line.strip().startswith(("short", "a label", "xxx"))]
    assert len(rows) == 3 and len({len(row) for row in rows}) == 1  # one column width for all
    assert "x" * 39 + "…" in printed and "x" * 41 not in printed
    metrics.update(split="test", data_given=True, data_source="other.csv (from --data)", select_metric="loss")
    printed = format_metrics(metrics)
    assert printed.startswith("Metrics on other.csv (from --data) (test split, 90 examples")
    assert "(lowest validation loss)" in printed


def test_rare_classes_are_a_data_check_finding():
    labels = np.array([0] * 100 + [1] * 40 + [2] * 3)
    rare = [f for f in class_presence("test", labels, ("a", "b", "c")) if f.check == "rare_classes"]
    assert len(rare) == 1 and "c (3 rows)" in rare[0].message and "wide" in rare[0].message
    assert not [f for f in class_presence("test", np.arange(60) % 3, ("a", "b", "c")) if f.check == "rare_classes"]


def test_a_run_saves_baseline_positive_label_and_selection(pm, project):
    from toolkit.config import with_overrides
    from toolkit.errors import TkError
    from toolkit.runs.pipeline import run_task
    from toolkit.tasks_file import load_config
    from toolkit.training.progress import Progress

    task = load_config(project / "tasks.toml").task("toy")
    with pytest.raises(TkError, match=r"positive_label.*'maybe' is not a label.*'neg', 'pos'"):
        run_task(pm, with_overrides(task, {"positive_label": "maybe"}), output=project / "runs", base=project,
                 progress=Progress(echo=lambda text: None, bar=False))
    assert not (project / "runs").exists()  # refused before any run folder
    outcome = run_task(pm, with_overrides(task, {"positive_label": "neg", "epochs": 2}), output=project / "runs",
                       base=project, progress=Progress(echo=lambda text: None, bar=False))
    metrics = outcome.metrics
    assert metrics["positive_label"] == "neg" and metrics["select_metric"] == "loss"
    assert metrics["baseline"]["source"] == "training split" and "f1_macro" in metrics
    # the toy training rows are 80 of each class: the baseline's 'neg' is a tie, and says so
    assert metrics["baseline"]["label"] == "neg" and metrics["baseline"]["tied_with"] == ["pos"]
    printed = format_metrics(metrics)
    assert printed.startswith("Test metrics (test split, ") and "f1 (positive: neg)" in printed
    assert "(most frequent class of the training split; tied with 'pos', the first in class order taken)" in printed
    assert "(lowest validation loss)" in printed


def test_compare_notes_say_why_a_row_has_no_test_and_which_losses_do_not_compare():
    from toolkit.runs.compare import comparison_notes

    def row(label, verdict, weights, test="paired bootstrap"):
        return {"label": label, "vs_best": {"verdict": verdict, "metric": "f1_macro", "test": test, "differences": {}},
                "settings": {"class_weights": weights}, "metric_names": {"f1_macro": "macro F1"}}

    notes = comparison_notes([row("a", "best", "none"), row("b", "n/a", "balanced", "none"),
                              row("c", "noise", "none", "unpaired bootstrap")])
    assert notes[0].startswith("vs best: decided on macro F1, the task's decision metric, against a")
    assert notes[1].startswith("3 runs: the best is chosen on these same rows")  # its luck; Holm covers the number of tests only
    assert notes[2].startswith("unpaired: c scored other test rows than the best run")
    assert notes[3].startswith("n/a: b has no readable predictions.csv")
    assert notes[4].startswith("val loss: each run's validation loss is weighted by its own class_weights")
    assert len(comparison_notes([row("a", "best", "none"), row("c", "noise", "none")])) == 1
    noisy, fixed = row("noisy", "best", "none"), row("fixed", "noise", "none")
    noisy["settings"], fixed["settings"] = {"data": "noisy.csv"}, {"data": "fixed.csv"}  # tk audit's loop
    assert comparison_notes([noisy, fixed])[-1].startswith("val loss: each run's validation rows come from its "
                                                           "own data, with that data's labels")


def test_compare_table_names_f1_of_each_runs_positive_class_when_runs_name_it_otherwise():
    """A run of the files dataset (positive '4') beside one of the sentiment140 task (positive 'positive'): the
    header said F1 of '4' over both columns."""
    from toolkit.runs.compare import format_run_rows

    def row(label, positive, verdict):
        return {"label": label, "train_seconds": 1.0, "best_epoch": 1, "best_validation_loss": 0.5,
                "accuracy": 0.8, "f1": 0.7, "metric_names": {"accuracy": "accuracy", "f1": f"F1 of '{positive}'"},
                "overfitting": False, "underfitting": False, "vs_best": {"verdict": verdict, "p": 0.5}}

    mixed = format_run_rows([row("a", "4", "best"), row("b", "positive", "noise")])
    assert "test F1 of positive" in mixed and "'4'" not in mixed.splitlines()[0]
    same = format_run_rows([row("a", "4", "best"), row("b", "4", "noise")])
    assert "test F1 of '4'" in same.splitlines()[0]


def test_compare_says_where_each_run_stands_against_its_linear_baseline():
    """The best of several fine-tunes may still be no better than TF-IDF + logistic regression; tk compare's
    table did not say (each run's own report did)."""
    from toolkit.runs.compare import RunSummary, linear_baseline_notes

    def run(label, difference, ci, real):
        linear = {"metrics": {"f1_macro": 0.70}, "metric_names": {"f1_macro": "macro F1"},
                  "versus": {"metric": "f1_macro", "real": real,
                             "differences": {"f1_macro": {"difference": difference, "ci": ci}}}}
        return RunSummary(label, {"linear_baseline": linear}, None, None)

    notes = linear_baseline_notes([run("a", 0.05, [0.02, 0.08], True), run("b", 0.01, [-0.02, 0.04], False),
                                   run("c", -0.04, [-0.07, -0.01], True), RunSummary("old", {}, None, None)])
    assert notes[0].startswith("Each run against its linear baseline (TF-IDF + logistic regression")
    assert notes[1:] == ["  a: macro F1 +0.050 [+0.020, +0.080] against its baseline's 0.700: beats it",
                         "  b: macro F1 +0.010 [-0.020, +0.040] against its baseline's 0.700: not shown to beat it",
                         "  c: macro F1 -0.040 [-0.070, -0.010] against its baseline's 0.700: worse than it"]
    assert linear_baseline_notes([RunSummary("old", {}, None, None)]) == []


def test_an_unset_size_is_compared_by_the_rows_its_default_gave():
    """A re-trial's compare listed 'validation_size=null' against '500' as a setting that differs, where the unset
    default had carved the same 500 rows: an unset size is now its rows, and the table says it was not set."""
    from toolkit.runs.compare import RunSummary, differing_settings, shown_setting

    def run(label, validation_size, used, seed=1):
        return RunSummary(label, {}, None, None, settings={"validation_size": validation_size, "seed": seed},
                          split_rows={"train": 4500, "validation": used, "test": 500})

    default, explicit = run("default", None, 500), run("explicit", 500, 500)
    assert differing_settings([default, explicit]) == []
    assert differing_settings([default, run("explicit", 500, 500, seed=2)]) == ["seed"]
    smaller = run("smaller", 200, 200)
    assert differing_settings([default, smaller]) == ["validation_size"]
    assert shown_setting(default, "validation_size") == "not set (500 rows)"
    assert shown_setting(smaller, "validation_size") == 200
    older = RunSummary("older", {}, None, None, settings={"validation_size": None, "seed": 1})  # no split_rows
    assert differing_settings([older, smaller]) == ["validation_size"]
    assert shown_setting(older, "validation_size") is None
