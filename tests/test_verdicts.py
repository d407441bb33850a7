"""Verdicts a user can act on: tk compare decides on the task's own metric, with paired differences."""

import csv
import json
import re

import numpy as np
import pytest

from tests.helpers import fails_with, ok, reseal, tk_json
from toolkit.evaluation.paired import Scored, decision_metric, differences
from toolkit.runs.compare import holm


def write_run(folder, labels, predicted, names, fingerprint="same-rows", rows=None, source=None, **metrics):
    """A finished run folder as tk compare reads it (through the run loader): metrics.json, manifest.json,
    predictions.csv, config.json, status.json and checksums.json. ``rows``: predictions.csv's row numbers (in
    the file the rows came from, fingerprinted ``source``); none by default."""
    from toolkit.evaluation.paired import score

    folder.mkdir(parents=True)
    ids = {name: i for i, name in enumerate(names)}
    found = score(Scored(np.array([ids[x] for x in labels]), np.array([ids[x] for x in predicted]), len(names)),
                  ("accuracy", "f1", "f1_macro"))
    support = {name: labels.count(name) for name in names}
    (folder / "metrics.json").write_text(json.dumps({
        "problem": "single-label", "select_metric": "loss", "train_seconds": 1.0, "best_epoch": 1,
        "history": [{"validation_loss": 0.5}], "average": "macro",
        "per_class": {name: {"support": support[name]} for name in names}, **found, **metrics}))
    (folder / "manifest.json").write_text(json.dumps({"data_fingerprint": {"test": {"sha256": fingerprint}},
                                                      "labels": list(names),
                                                      **({"source_fingerprint": {"test": {"sha256": source}}}
                                                         if source else {})}))
    (folder / "config.json").write_text(json.dumps({"task": {"name": folder.name}}))
    (folder / "status.json").write_text(json.dumps({"status": "complete"}))
    with open(folder / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(["row"] if rows is not None else []), "text", "label", "predicted",
                         *[f"p_{name}" for name in names]])
        writer.writerows([*([rows[i]] if rows is not None else []), f"text {i}", truth, guess,
                          *[1.0 if n == guess else 0.0 for n in names]]
                         for i, (truth, guess) in enumerate(zip(labels, predicted)))
    return reseal(folder)  # as tk run saves a run: its checksums last


def equal_accuracy_runs(tmp_path, fingerprint_b="same-rows"):
    """Two runs with accuracy 0.8 each: one predicts only the big class, the other finds the small ones too."""
    names = ("big", "small-a", "small-b")
    labels = ["big"] * 400 + ["small-a"] * 50 + ["small-b"] * 50
    unweighted = ["big"] * 500
    balanced = ["big"] * 300 + ["small-a"] * 50 + ["small-b"] * 50 + ["small-a"] * 50 + ["small-b"] * 50
    return (write_run(tmp_path / "unweighted", labels, unweighted, names),
            write_run(tmp_path / "balanced", labels, balanced, names, fingerprint_b))


def test_compare_decides_on_macro_f1_when_accuracy_is_equal(tmp_path):
    unweighted, balanced = equal_accuracy_runs(tmp_path)
    document, _ = tk_json("compare", unweighted, balanced)
    rows = {row["label"]: row for row in document["runs"]}
    assert rows["unweighted"]["accuracy"] == rows["balanced"]["accuracy"] == 0.8
    assert rows["balanced"]["vs_best"]["verdict"] == "best"
    against = rows["unweighted"]["vs_best"]
    assert against["metric"] == "f1_macro" and against["test"] == "paired bootstrap"
    assert against["verdict"] == "real" and against["p"] < 0.05
    macro = against["differences"]["f1_macro"]
    assert macro["difference"] < 0 and macro["ci"][1] < 0  # the interval leaves out 0
    accuracy = against["differences"]["accuracy"]
    assert accuracy["difference"] == 0 and accuracy["ci"][0] < 0 < accuracy["ci"][1]
    table = ok("compare", unweighted, balanced)
    assert "macro F1 [95% CI]" in table and "decided on macro F1" in table
    assert document["warnings"] == []  # neither run's report warns of anything
    assert "unweighted minus best (paired, 95% intervals): accuracy +0.000" in table
    assert "real: beyond the noise of the rows scored. Each run is one training of one seed" in table


def test_compare_says_what_each_runs_own_report_warns_of(tmp_path):
    """A re-trial compared two runs that both answered 'ham' to every message: the table crowned one 'best', and
    only their reports said that neither told the classes apart. tk sweep printed such warnings; tk compare now
    does too, leaving out the linear baseline's verdict, which the notes give for every run."""
    one_class = "The model predicts 'big' for 100.0% of the 500 rows: it has (almost) stopped telling the classes apart."
    linear = "The linear baseline (TF-IDF + logistic regression) is better than the fine-tune (...): keep the linear model."
    names = ("big", "small-a", "small-b")
    labels = ["big"] * 400 + ["small-a"] * 50 + ["small-b"] * 50
    lazy = write_run(tmp_path / "lazy", labels, ["big"] * 500, names, warnings=[one_class, linear])
    fine = write_run(tmp_path / "fine", labels, labels, names)
    document, _ = tk_json("compare", lazy, fine)
    assert document["warnings"] == [f"WARNING lazy: {one_class}"]
    table = ok("compare", lazy, fine)
    assert f"WARNING lazy: {one_class}" in table and "keep the linear model" not in table


def test_runs_on_other_test_rows_are_compared_unpaired_and_say_so(tmp_path):
    unweighted, balanced = equal_accuracy_runs(tmp_path, fingerprint_b="other-rows")
    document, _ = tk_json("compare", unweighted, balanced)
    against = next(row for row in document["runs"] if row["label"] == "unweighted")["vs_best"]
    assert against["test"] == "unpaired bootstrap" and against["verdict"] == "real"
    assert "unpaired: unweighted scored other test rows" in ok("compare", unweighted, balanced)


def test_runs_that_left_out_a_few_rows_of_one_test_file_are_paired_on_the_rows_both_scored(tmp_path):
    """A separate test file: each run leaves out the test rows whose text its own split trained or validated
    on, so two seeds score 498 of the same 500 rows. They are paired on the 496 both scored, not resampled
    apart; runs of another file, or that share too few rows, stay unpaired."""
    names = ("big", "small-a", "small-b")
    labels = ["big"] * 400 + ["small-a"] * 50 + ["small-b"] * 50
    unweighted = ["big"] * 500
    balanced = ["big"] * 300 + ["small-a"] * 50 + ["small-b"] * 50 + ["small-a"] * 50 + ["small-b"] * 50

    def run(name, predicted, left_out, source="test-file"):
        kept = [i for i in range(500) if i not in left_out]
        return write_run(tmp_path / name, [labels[i] for i in kept], [predicted[i] for i in kept], names,
                         fingerprint=name, rows=kept, source=source)

    best = run("balanced", balanced, {10, 20})
    against = tk_json("compare", run("unweighted", unweighted, {30, 40}), best)[0]["runs"]
    found = next(row for row in against if row["label"] == "unweighted")["vs_best"]
    assert found["test"] == "paired bootstrap" and found["paired_rows"] == 496 and found["rows"] == [498, 498]
    assert "(paired on the 496 test rows both scored, of 498 and 498, 95% intervals)" in ok(
        "compare", tmp_path / "unweighted", best)
    for other in (run("other-file", unweighted, {30, 40}, source="another-file"),
                  run("fewer", unweighted, set(range(0, 500, 5)))):  # 398 of 498 shared: another split's rows
        found = next(row for row in tk_json("compare", other, best)[0]["runs"] if row["label"] == other.name)
        assert found["vs_best"]["test"] == "unpaired bootstrap" and "paired_rows" not in found["vs_best"]


def test_holm_adjusts_p_values_as_holm_1979_defines():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3 x 0.01; 2 x 0.03; max(0.06, 0.04)
    assert holm([0.2, 0.6]) == pytest.approx([0.4, 0.6]) and holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_with_three_runs_a_p_under_005_against_the_best_is_adjusted_before_it_is_called_real(tmp_path):
    """Each of two runs is worse than the best on 15 rows and better on 5 (McNemar p = 0.041). Alone against
    the best either is 'real'; tested together, Holm doubles the smaller p and neither is."""
    labels = ["neg"] * 100 + ["pos"] * 100
    flip = {"neg": "pos", "pos": "neg"}

    def wrong_on(rows):
        return [flip[truth] if i in rows else truth for i, truth in enumerate(labels)]

    names = ("neg", "pos")
    best = write_run(tmp_path / "best", labels, wrong_on(set(range(10))), names)
    first = write_run(tmp_path / "first", labels, wrong_on(set(range(5)) | set(range(100, 115))), names)
    second = write_run(tmp_path / "second", labels, wrong_on(set(range(5, 10)) | set(range(150, 165))), names)
    alone = next(row for row in tk_json("compare", best, first)[0]["runs"] if row["label"] == "first")["vs_best"]
    assert alone["p"] == pytest.approx(0.0414, abs=1e-4) and alone["p_holm"] == alone["p"]
    assert alone["verdict"] == "real"
    together = {row["label"]: row["vs_best"] for row in tk_json("compare", best, first, second)[0]["runs"]}
    for name in ("first", "second"):
        assert together[name]["p"] == pytest.approx(0.0414, abs=1e-4)
        assert together[name]["p_holm"] == pytest.approx(2 * 0.0414, abs=2e-4)
        assert together[name]["verdict"] == "noise" and together[name]["tests"] == 2
    table = ok("compare", best, first, second)
    assert "noise (p=0.041, Holm 0.083)" in table and "adjusted for the number of tests (Holm)" in table


def test_a_run_scored_on_a_handful_of_test_rows_gets_no_verdict(tmp_path):
    """A 5-row file's run scored one test row: resampling it gives no spread, so an unpaired bootstrap would
    call any difference real. Under 30 rows in either run there is no test, and the note says why."""
    names = ("neg", "pos")
    labels = ["neg"] * 250 + ["pos"] * 250
    many = write_run(tmp_path / "many", labels, labels[:400] + ["neg"] * 100, names)
    one = write_run(tmp_path / "one", ["pos"], ["pos"], names, fingerprint="one-row")
    document, _ = tk_json("compare", many, one)
    found = next(row for row in document["runs"] if row["label"] == "many")["vs_best"]
    assert found["verdict"] == "n/a" and found["p"] is None and found["too_few_rows"] == [500, 1]
    assert "a bootstrap needs at least 30 test rows in each run" in ok("compare", many, one)


def test_a_predictions_file_cut_short_is_named_as_damage(tmp_path):
    names = ("neg", "pos")
    labels = ["neg"] * 50 + ["pos"] * 50
    run = write_run(tmp_path / "cut", labels, labels, names, n=100)
    other = write_run(tmp_path / "other", labels, labels, names, n=100)
    lines = (run / "predictions.csv").read_text().splitlines(keepends=True)
    (run / "predictions.csv").write_text("".join(lines[:3]))
    reseal(run)  # as an older run without checksums would be: only the count can tell
    fails_with("predictions.csv has 2 rows where metrics.json scored 100: the run folder is damaged", "compare", run,
               other)


def test_a_sweep_says_what_its_runs_warn_of_once_per_setting(tmp_path):
    from toolkit.runs.compare import summarise
    from toolkit.runs.diagnoses import group_warnings

    names, labels = ("neg", "pos"), ["neg", "pos"] * 50
    runs = [write_run(tmp_path / f"seed{seed}", labels, ["neg"] * 100, names, warnings=[
        f"The model predicts 'neg' for 100.0% of the {100 + seed} rows."]) for seed in (1, 2)]
    summaries = []
    for seed, folder in zip((1, 2), runs):
        config = json.loads((folder / "config.json").read_text())
        config["task"]["seed"] = seed
        (folder / "config.json").write_text(json.dumps(config))
        summaries.append(summarise(reseal(folder)))
    assert group_warnings({"lr=1e-4": summaries}) == [
        "WARNING lr=1e-4 (2 of 2 runs, in the words of seed 1's run): The model predicts 'neg' for 100.0% of the "
        "101 rows."]


def test_the_unpaired_interval_is_wider_than_the_paired_one():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 2000)
    a = np.where(rng.random(2000) < 0.85, labels, 1 - labels)
    b = np.where(rng.random(2000) < 0.05, 1 - a, a)  # b mostly agrees with a: paired noise cancels
    one, two = Scored(labels, a, 2, 1), Scored(labels, b, 2, 1)
    paired_ci = differences(one, two, ("accuracy",))["accuracy"]["ci"]
    unpaired_ci = differences(one, two, ("accuracy",), paired=False)["accuracy"]["ci"]
    assert paired_ci[1] - paired_ci[0] < (unpaired_ci[1] - unpaired_ci[0]) / 2


def test_a_two_class_f1_is_the_second_class_s_as_the_test_report_scores_it():
    """Without a positive_label the report scores F1 of the second class; the paired differences (tk compare,
    the linear baseline) must score the same F1, not the macro average under its name."""
    from sklearn.metrics import f1_score

    from toolkit.evaluation.paired import score

    labels = np.array([0] * 90 + [1] * 10)
    never_positive = np.zeros(100, dtype=int)  # F1 of class 1: 0; macro F1: about 0.47
    finds_half = np.concatenate([np.zeros(95, dtype=int), np.ones(5, dtype=int)])
    a, b = Scored(labels, never_positive, 2), Scored(labels, finds_half, 2)
    assert score(b, ("f1",))["f1"] == pytest.approx(f1_score(labels, finds_half, pos_label=1))
    found = differences(a, b, ("f1", "f1_macro"))
    assert found["f1"]["difference"] == pytest.approx(-f1_score(labels, finds_half, pos_label=1))
    assert found["f1"]["difference"] != pytest.approx(found["f1_macro"]["difference"])


@pytest.mark.parametrize("metrics, expected", [
    ({"problem": "multi-label", "select_metric": "loss"}, "f1"),
    ({"select_metric": "accuracy", "per_class": {}}, "accuracy"),
    ({"select_metric": "loss", "per_class": {"neg": {"support": 50}, "pos": {"support": 50}}}, "accuracy"),
    ({"select_metric": "loss", "per_class": {"ham": {"support": 90}, "spam": {"support": 10}}}, "f1_macro"),
    ({"select_metric": "loss", "per_class": {c: {"support": 10} for c in "abc"}}, "f1_macro"),
])
def test_the_decision_metric_is_the_tasks(metrics, expected):
    assert decision_metric(metrics) == expected


def run_toy(project, task_name="toy", **overrides):
    from toolkit.config import with_overrides
    from toolkit.plugins import PluginManager
    from toolkit.runs.pipeline import run_task
    from toolkit.tasks_file import load_config
    from toolkit.training.progress import Progress

    pm = PluginManager().load(("toy_plugin",), project)
    task = with_overrides(load_config(project / "tasks.toml").task(task_name), overrides)
    lines = []
    outcome = run_task(pm, task, output=project / "runs", base=project, progress=Progress(lines.append, bar=False))
    return outcome, "\n".join(lines)


@pytest.mark.slow
def test_the_linear_baseline_wins_on_keyword_data_and_the_verdict_says_so(project):
    from toolkit.evaluation.report import format_metrics

    # One epoch at a learning rate too small to move the weights: the fine-tune learns next to nothing, while the
    # keywords that decide each label are exactly what TF-IDF + logistic regression reads.
    outcome, printed = run_toy(project, epochs=1, learning_rate=1e-7)
    linear = outcome.metrics["linear_baseline"]
    assert "Linear baseline: TF-IDF" in printed
    assert linear["metrics"]["accuracy"] > 0.9 and linear["metrics"]["accuracy_ci"][0] > outcome.metrics["accuracy"]
    assert linear["selected_on"] == "accuracy" and set(linear["validation_scores"]) == {"0.1", "1", "10", "100"}
    versus = linear["versus"]
    assert versus["metric"] == "accuracy" and versus["test"] == "mcnemar" and versus["real"]
    assert versus["differences"]["accuracy"]["ci"][1] < 0
    assert linear["verdict"].startswith("The linear baseline (TF-IDF + logistic regression) is better than the "
                                        "fine-tune (fine-tune minus linear model, accuracy: -")
    assert linear["verdict"] in outcome.metrics["warnings"]
    report = format_metrics(outcome.metrics)
    assert "WARNING: The linear baseline (TF-IDF + logistic regression) is better" in report
    assert "fine-tune minus linear baseline (paired, 95% intervals): accuracy -" in report
    saved = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert saved["linear_baseline"]["verdict"] == linear["verdict"]
    assert "fine-tune minus linear baseline, accuracy (paired)" in (outcome.run_dir / "report.html").read_text()
    card = (outcome.run_dir / "model" / "README.md").read_text()
    assert "| linear baseline accuracy (TF-IDF + logistic regression, C = " in card
    assert "| fine-tune minus linear baseline, accuracy (paired) | -" in card
    assert "reads each text whole" not in linear["verdict"]  # the toy texts fit max_length: nothing to read more of


@pytest.mark.slow
def test_a_linear_baseline_that_wins_on_cut_texts_says_to_read_more_of_them(project):
    outcome, _ = run_toy(project, epochs=1, learning_rate=1e-7, max_length=8)
    verdict = outcome.metrics["linear_baseline"]["verdict"]
    # better, or as good within noise: either way the warning, and the advice with it
    assert verdict.startswith("The linear baseline (TF-IDF + logistic regression) is ")
    assert re.search(r"The linear model reads each text whole, and \d+% of the training texts were cut at "
                     r"max_length = 8 tokens: try --set long_text=chunks", verdict), verdict
    assert verdict in outcome.metrics["warnings"]


@pytest.mark.slow
def test_the_linear_baseline_can_be_turned_off(project):
    outcome, printed = run_toy(project, epochs=1, linear_baseline=False)
    assert "linear_baseline" not in outcome.metrics and "Linear baseline" not in printed


@pytest.mark.slow
def test_an_underfit_run_is_diagnosed_with_the_figures_and_advice(project):
    outcome, printed = run_toy(project, epochs=1, learning_rate=1e-7)
    found = outcome.metrics["underfitting"]
    assert found["underfitting"], found
    assert found["best_validation_loss"] > found["prior_loss"] * 0.9  # not clearly below the base rates' loss
    assert f"{found['prior_loss']:.4f} of predicting each class's base rate" in found["message"]
    assert any("--set epochs=2" in advice for advice in found["advice"])
    assert any("--set learning_rate=3e-07" in advice for advice in found["advice"])
    assert "Underfitting: the lowest validation loss" in printed and "  - train longer (e.g. --set epochs=2)" in printed
    page = (outcome.run_dir / "report.html").read_text()
    assert "Underfitting: the lowest validation loss" in page and "raise the learning rate" in page


@pytest.mark.slow
def test_a_run_that_learned_is_not_called_underfit(project):
    # Eight epochs at 5e-3: the keywords are learned and the loss is flat by the end on any trajectory (seeds 1-3,
    # bf16 on and off: accuracy 1.0, never called underfit).
    outcome, printed = run_toy(project, linear_baseline=False, epochs=8, learning_rate=5e-3)
    assert outcome.metrics["accuracy"] > 0.9
    assert outcome.metrics["underfitting"] == {"underfitting": False} and "Underfitting" not in printed
    assert "No sign of underfitting" in (outcome.run_dir / "report.html").read_text()


def test_the_prior_loss_is_the_base_rates_cross_entropy():
    from toolkit.evaluation.diagnosis import prior_loss

    train, validation = np.array([0, 0, 0, 1]), np.array([0, 1])
    assert prior_loss(train, validation) == pytest.approx(-(np.log(0.75) + np.log(0.25)) / 2)
    # weighted 1:3, the best constant answer is 50/50 and each row counts by its class's weight
    assert prior_loss(train, validation, np.array([1.0, 3.0])) == pytest.approx(np.log(2))
    tags = np.array([[1, 0], [0, 0], [1, 0], [0, 1]])
    rates = np.array([0.5, 0.25])
    expected = -(tags * np.log(rates) + (1 - tags) * np.log(1 - rates)).mean()
    assert prior_loss(tags, tags) == pytest.approx(expected)


@pytest.mark.slow
def test_a_multilabel_run_that_learns_nothing_keeps_untuned_thresholds(tmp_path, tiny_model):
    from tests.test_multilabel import TASKS, TWO, write_jsonl
    from toolkit.config import with_overrides
    from toolkit.plugins import PluginManager
    from toolkit.runs.pipeline import run_task
    from toolkit.tasks_file import load_config
    from toolkit.testing import multilabel_keyword_rows
    from toolkit.training.progress import Progress

    folder = tmp_path / "tags"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", multilabel_keyword_rows(200, TWO, seed=1, words=(2, 8)))
    write_jsonl(folder / "test.jsonl", multilabel_keyword_rows(60, TWO, seed=2, words=(2, 8)))
    (tmp_path / "tasks.toml").write_text(TASKS.format(model=tiny_model))
    pm = PluginManager().load((), tmp_path)
    task = with_overrides(load_config(tmp_path / "tasks.toml", pm).task("tags"),
                          {"epochs": 1, "learning_rate": 1e-7, "linear_baseline": False})
    lines = []
    outcome = run_task(pm, task, output=tmp_path / "runs", base=tmp_path, progress=Progress(lines.append, bar=False))
    metrics = outcome.metrics
    assert set(metrics["thresholds"].values()) == {0.5} and metrics["thresholds_untuned"] == list(TWO)
    assert "is not clearly below the" in metrics["thresholds_not_tuned"]
    assert any(line.startswith("Thresholds kept at 0.5 for every label: the model's validation loss") for line in lines)
    config = json.loads((outcome.run_dir / "model" / "config.json").read_text())
    assert set(config["tk_thresholds"].values()) == {0.5}
    assert metrics["underfitting"]["underfitting"] and "each label's base rate" in metrics["underfitting"]["message"]


def test_saved_model_files_are_readable_as_the_umask_allows(tmp_path, tiny_model):
    """safetensors writes model.safetensors 0600; every file of the saved model gets 0644 under umask 022."""
    import os
    import stat

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from toolkit.runs.artifacts import save_model
    from toolkit.saving import write_json

    previous = os.umask(0o022)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
        folder = save_model(model, AutoTokenizer.from_pretrained(tiny_model), tmp_path, 32)
        write_json(tmp_path / "metrics.json", {})
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [*folder.iterdir(), tmp_path / "metrics.json"]}
    assert "model.safetensors" in modes and set(modes.values()) == {0o644}, {k: oct(v) for k, v in modes.items()}


def test_a_model_that_learned_and_is_still_learning_is_not_called_underfit():
    """Validation loss far below the base rate's, training loss still falling at the last (best) epoch: more
    epochs may help, but the model has learned, so no "Underfitting" and no advice to raise the learning rate."""
    from toolkit.evaluation.diagnosis import diagnose_underfitting, explain_underfitting
    from toolkit.records import EpochRecord

    history = [EpochRecord(1, 0.30, 0.12, 0.96, 0.95, 10.0), EpochRecord(2, 0.12, 0.05, 0.99, 0.98, 10.0)]
    settings = {"epochs": 2, "epochs_run": 2, "learning_rate": 1e-4, "max_length": 64}
    found = diagnose_underfitting(history, prior=0.42, predicted_classes=2, present_classes=2, settings=settings)
    assert not found["underfitting"] and found["still_improving"] and found["train_loss_fall"] == pytest.approx(0.6)
    lines = explain_underfitting(found)
    assert lines == [found["message"]] and lines[0].startswith("Still improving: training loss was still falling")
    assert "--set epochs=4" in lines[0] and "learning rate" not in lines[0]

    unlearned = [EpochRecord(1, 0.70, 0.69, 0.5, 0.4, 10.0), EpochRecord(2, 0.50, 0.68, 0.5, 0.4, 10.0)]
    found = diagnose_underfitting(unlearned, prior=0.693, predicted_classes=2, present_classes=2, settings=settings)
    assert found["underfitting"] and "only 1.9% lower" in found["message"] and len(found["signs"]) == 2
    at_prior = [EpochRecord(1, 0.6932, 0.69312, 0.5, 0.4, 10.0)]
    found = diagnose_underfitting(at_prior, prior=0.69315, predicted_classes=2, present_classes=2, settings=settings)
    assert "base rate (no lower;" in found["message"]  # not "only 0% lower"


def test_one_seed_has_no_spread_and_the_calibration_line_says_what_changed():
    from toolkit.runs.calibrate import _change
    from toolkit.runs.compare import _mean_sd, _spread

    assert _spread([0.5])["sd"] is None and _mean_sd(_spread([0.5])) == "0.5000 ± n/a"
    assert _mean_sd(_spread([0.4, 0.6])) == "0.5000 ± 0.1414"
    rose = {"ece_before": 0.032, "ece_after": 0.038, "ece_change_ci": [0.001, 0.012]}
    assert _change(rose) == "; change +0.006 [+0.001, +0.012], higher: the fitted temperature " \
                            "made test calibration worse (--set calibration=off keeps the model's own probabilities)"
    assert _change({**rose, "ece_change_ci": [-0.02, 0.02]}).endswith("no measurable change")
    assert _change({**rose, "ece_change_ci": [-0.02, -0.01]}).endswith("lower: calibration helped")
    assert _change({"ece_before": 0.1, "ece_after": 0.1}) == ""


def test_the_classes_a_model_predicts_are_counted_among_those_in_the_test_rows():
    import numpy as np

    from toolkit.runs.diagnoses import classes_predicted

    labels = np.array([0, 0, 1, 2, 3])  # class 4 has no test row
    answers = np.eye(5)[[0, 0, 4, 4, 1]]  # predicts 0, 1 and the absent 4
    assert classes_predicted(labels, answers) == (2, 4)  # 2 of 4: at most half, so the sign applies


def test_the_report_says_still_improving_where_tk_run_said_it():
    from pathlib import Path

    from toolkit.runs.report_data import RunData
    from toolkit.runs.report_sections import diagnosis

    said = "Still improving: training loss was still falling steeply. More epochs may give a better model."
    metrics = {"diagnosis": {"overfitting": False},
               "underfitting": {"underfitting": False, "still_improving": True, "message": said}}
    page = diagnosis(RunData(Path("run"), metrics, {}, []))
    assert said in page and "No sign of underfitting" not in page
    quiet = diagnosis(RunData(Path("run"), {**metrics, "underfitting": {"underfitting": False}}, {}, []))
    assert "No sign of underfitting" in quiet


def test_the_linear_baseline_verdict_says_when_another_metric_disagrees():
    from toolkit.evaluation.classical import verdict

    names = {"f1_macro": "macro F1", "accuracy": "accuracy"}
    versus = {"test": "bootstrap", "real": True,
              "differences": {"f1_macro": {"difference": -0.088, "ci": [-0.131, -0.025]},
                              "accuracy": {"difference": 0.056, "ci": [0.020, 0.097]}}}
    said = verdict(versus, "f1_macro", names)
    assert said.startswith("The linear baseline (TF-IDF + logistic regression) is better than the fine-tune")
    assert "On accuracy, though, the fine-tune is better (+0.056 [+0.020, +0.097])" in said
    assert "tk decides on macro F1" in said
    agreeing = {**versus, "differences": {**versus["differences"],
                                          "accuracy": {"difference": -0.01, "ci": [-0.03, 0.01]}}}
    assert "though" not in verdict(agreeing, "f1_macro", names)


def test_the_linear_baseline_tries_weaker_regularisation_while_the_weakest_tried_is_best(monkeypatch):
    """A baseline whose best C sits at the grid's edge may be held back by the grid: 10x weaker is tried, twice
    at most. Here every weaker C scores better, so 1,000 and 10,000 are tried; a grid whose best is inside
    stops at 100."""
    from toolkit.evaluation import classical

    texts = [f"{word} film number {i}" for i in range(40) for word in ("good", "bad")]
    labels = [i % 2 for i in range(80)]
    calls = []

    def rising(labels_, probabilities, *args):
        calls.append(len(calls))
        return float(len(calls)), None

    monkeypatch.setattr(classical, "_validation_score", rising)
    fitted = classical.fit(texts, labels, texts[:20], labels[:20], texts[:10], 2, "accuracy")
    assert list(fitted.tried) == ["0.1", "1", "10", "100", "1000", "10000"] and fitted.c == 10_000

    calls.clear()

    def best_at_one(labels_, probabilities, *args):  # the second C tried, 1.0, is the best
        calls.append(len(calls))
        return (1.0 if len(calls) == 2 else 0.5), None

    monkeypatch.setattr(classical, "_validation_score", best_at_one)
    fitted = classical.fit(texts, labels, texts[:20], labels[:20], texts[:10], 2, "accuracy")
    assert list(fitted.tried) == ["0.1", "1", "10", "100"] and fitted.c == 1.0
