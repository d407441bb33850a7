"""Calibrated probabilities: ECE as documented, the fitted temperature, and the temperature baked into the
saved model giving the same probabilities through every reader of it."""

import csv
import json

import numpy as np
import pytest

from tests.helpers import ok, tk, tk_json, toy_task, train_toy
from toolkit.evaluation import calibration


def test_ece_matches_a_hand_computed_case():
    # Bins [0.9, 1.0]: 0.95 twice, one right -> gap |0.5 - 0.95| = 0.45, weight 2/6.
    # Bin [0.6, 0.7): 0.65 three times, all right -> gap 0.35, weight 3/6.
    # Bin [0.7, 0.8): 0.7 exactly (a left edge belongs to the bin it opens), wrong -> gap 0.7, weight 1/6.
    confidence = np.array([0.95, 0.95, 0.65, 0.65, 0.65, 0.7])
    hits = np.array([1, 0, 1, 1, 1, 0])
    expected = 2 / 6 * 0.45 + 3 / 6 * 0.35 + 1 / 6 * 0.7
    assert calibration.expected_calibration_error(confidence, hits) == pytest.approx(expected)
    stats = calibration.bin_stats(confidence, hits)
    assert stats["rows"] == [0, 0, 0, 0, 0, 0, 3, 1, 0, 2]
    # The same rows as class probabilities and labels, through the function tk run and tk evaluate call.
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(hits == 1, 0, 1)
    found = calibration.ece_with_intervals(probabilities, probabilities, labels, resamples=200)
    assert found["ece_after"] == pytest.approx(expected, abs=1e-4)
    low, high = found["ece_after_ci"]
    assert low <= found["ece_after"] <= high


def test_fitted_temperature_undoes_known_overconfidence():
    """Labels drawn from softmax(z), probabilities reported as softmax(3z): the fit must find T near 3."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(20000, 3))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in truth])
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
    temperature = calibration.fit_temperature(sharp.astype(np.float32), labels)
    assert 2.7 < temperature < 3.3
    fixed = calibration.scaled(sharp, temperature, multi_label=False)
    before = calibration.expected_calibration_error(*calibration.confidence_and_hits(sharp, labels))
    after = calibration.expected_calibration_error(*calibration.confidence_and_hits(fixed, labels))
    assert after < before / 2
    assert (fixed.argmax(axis=1) == sharp.argmax(axis=1)).all()  # the answers never change


def test_selective_prediction_answers_only_sure_texts():
    probabilities = np.array([[0.95, 0.05], [0.55, 0.45], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    rows = {r["min_confidence"]: r for r in calibration.selective(probabilities, labels, (0.5, 0.7, 0.99))}
    assert {key: rows[0.5][key] for key in ("answered", "coverage", "accuracy")} == {
        "answered": 4, "coverage": 1.0, "accuracy": 0.75}
    assert {key: rows[0.7][key] for key in ("answered", "coverage", "accuracy")} == {
        "answered": 2, "coverage": 0.5, "accuracy": 1.0}
    from toolkit.evaluation.intervals import wilson

    three_of_four = wilson(3, 4)  # each accuracy with its Wilson interval, as tk gives every proportion
    assert rows[0.5]["accuracy_ci"] == [round(three_of_four.low, 4), round(three_of_four.high, 4)]
    assert rows[0.99]["answered"] == 0 and rows[0.99]["accuracy"] is None and rows[0.99]["accuracy_ci"] is None
    assert calibration.highest_confidence(probabilities, multi_label=False) == 0.95
    assert calibration.abstains(probabilities, 0.7, multi_label=False).tolist() == [False, True, False, True]


def test_a_bin_off_beyond_noise_is_named_where_ece_stays_small():
    """A TREC trial: ECE 0.016, yet where the model said 0.8 to 0.9 (37 texts, mean 0.855) it was right 0.676 of
    the time. Each bin of 10+ rows is tested: its mean confidence against the Wilson interval of its accuracy,
    at 95% over the bins tested (Bonferroni)."""
    from scipy.stats import binomtest

    confidence = np.array([0.85] * 40 + [0.95] * 400 + [0.75] * 5)
    hits = np.array([1] * 20 + [0] * 20 + [1] * 380 + [0] * 20 + [0] * 5)  # 0.5 at 0.85; 0.95 at 0.95; 5 rows
    assert calibration.expected_calibration_error(confidence, hits) < 0.1
    found = calibration.miscalibrated_bins(confidence, hits)
    expected = binomtest(20, 40).proportion_ci(confidence_level=1 - 0.05 / 2, method="wilson")  # two bins tested
    assert found == [{"from": 0.8, "to": 0.9, "rows": 40, "accuracy": 0.5, "confidence": 0.85,
                      "accuracy_ci": [round(expected.low, 4), round(expected.high, 4)],
                      "side": "overconfident", "level": 0.975}]
    assert calibration.bins_in_words(found) == [
        f"where the model says 0.80 to 0.90 (40 texts, mean 0.850) it was right 0.500 of the time "
        f"[{expected.low:.3f}, {expected.high:.3f}]: overconfident there"]
    assert calibration.miscalibrated_bins(np.array([0.95] * 400), np.array([1] * 380 + [0] * 20)) == []
    under = calibration.miscalibrated_bins(np.array([0.55] * 100), np.array([1] * 100))
    assert [b["side"] for b in under] == ["underconfident"]


def test_the_console_gives_the_ece_with_calibration_off_and_names_an_off_bin():
    """With calibration = "off" tk run printed nothing of calibration (the ECE was in report.html alone)."""
    from types import SimpleNamespace

    from toolkit.runs.calibrate import Fitted, on_test

    confidence = np.array([0.85] * 40 + [0.95] * 400)
    hits = np.array([1] * 20 + [0] * 20 + [1] * 380 + [0] * 20)
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(hits == 1, 0, 1)
    said = []
    found = on_test(Fitted(None, None, 'calibration = "off"'), labels, probabilities,
                    SimpleNamespace(multi_label=False), SimpleNamespace(note=said.append))
    assert said[0] == (f'Calibration: not applied (calibration = "off"); ECE on the test split {found["ece"]:.3f} '
                       f'[{found["ece_ci"][0]:.3f}, {found["ece_ci"][1]:.3f}] (10 equal-width bins).')
    assert said[1].startswith("Calibration on the test split: where the model says 0.80 to 0.90 (40 texts, mean "
                              "0.850) it was right 0.500 of the time [")
    assert "Wilson interval at 97.5%, 95% over every bin of 10+ rows tested" in said[1] and len(said) == 2
    assert found["highest_confidence"] == 0.95 and len(found["miscalibrated_bins"]) == 1


def test_a_change_the_resamples_barely_move_gets_no_interval():
    """An SMS run had 338 of 340 test texts in the top bin: its ECE change printed as [-0.007, -0.007], 'lower:
    calibration helped', where one temperature had moved every text alike. No interval rather than a falsely
    certain one, and no verdict."""
    from toolkit.runs.calibrate import _change

    labels = np.array([0] * 270 + [1] * 30)  # accuracy 0.9 under every resample: far below both confidences
    before = np.tile([0.995, 0.005], (300, 1))
    after = np.tile([0.99, 0.01], (300, 1))
    found = calibration.ece_with_intervals(before, after, labels, resamples=200)
    assert found["ece_change_ci"] is None and found["ece_change_note"].startswith("no interval: the resamples moved")
    assert found["ece_before_ci"] is not None  # each ECE still has its own
    assert _change(found) == f"; change -0.005, {found['ece_change_note']}"
    spread = calibration.ece_with_intervals(before, after, np.array([0] * 297 + [1] * 3), resamples=200)
    assert spread["ece_change_ci"] is not None and "ece_change_note" not in spread  # accuracy crosses 0.99


def predictions_csv(run_dir):
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows])


@pytest.mark.slow
def test_baked_temperature_gives_the_same_probabilities_everywhere(pm, project):
    """Two runs alike but for calibration: the calibrated run's saved model gives exactly the uncalibrated
    one's logits divided by T, through predictions.csv, tk predict, tk evaluate and transformers.pipeline."""
    from transformers import pipeline

    plain = train_toy(pm, project, calibration="off")
    calibrated = train_toy(pm, project)
    temperature = calibrated.metrics["calibration"]["temperature"]
    assert abs(temperature - 1) > 0.01  # the toy model, trained to fit, is not calibrated already
    assert json.loads((calibrated.run_dir / "model" / "config.json").read_text())["tk_temperature"] == temperature
    assert plain.metrics["calibration"]["method"] == "off"

    texts, saved = predictions_csv(calibrated.run_dir)
    _, unscaled = predictions_csv(plain.run_dir)
    np.testing.assert_allclose(saved, calibration.scaled(unscaled, temperature, False), atol=2e-3)
    assert calibrated.metrics["accuracy"] == plain.metrics["accuracy"]  # calibration never changes an answer

    shown = texts[:12]
    document, _ = tk_json("predict", calibrated.run_dir, *shown)
    predicted = np.array([[p["probabilities"]["neg"], p["probabilities"]["pos"]] for p in document["predictions"]])
    np.testing.assert_allclose(predicted, saved[:12], atol=2e-3)

    classify = pipeline("text-classification", model=str(calibrated.run_dir / "model"), top_k=None)
    through_pipeline = np.array([[next(s["score"] for s in scores if s["label"] == name) for name in ("neg", "pos")]
                                 for scores in classify(shown, truncation=True)])
    np.testing.assert_allclose(through_pipeline, saved[:12], atol=2e-3)

    evaluated, _ = tk_json("evaluate", calibrated.run_dir)
    recorded = calibrated.metrics["calibration"]
    assert evaluated["metrics"]["ece"] == pytest.approx(recorded["ece_after"], abs=2e-3)
    assert evaluated["metrics"]["accuracy"] == calibrated.metrics["accuracy"]
    printed = tk("evaluate", calibrated.run_dir).output  # the text report says it too
    assert f"calibration: ECE {evaluated['metrics']['ece']:.3f} [" in printed
    # ...and the saved probabilities really are the ones the recorded ECE describes
    labels = np.array([0 if r == "neg" else 1 for r in _labels(calibrated.run_dir)])
    ece = calibration.expected_calibration_error(*calibration.confidence_and_hits(saved, labels))
    assert ece == pytest.approx(recorded["ece_after"], abs=2e-3)


def _labels(run_dir):
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        return [r["label"] for r in csv.DictReader(handle)]


def test_predict_min_confidence_marks_abstentions(pm, project):
    run = train_toy(pm, project, epochs=1)
    document, _ = tk_json("predict", run.run_dir, "bad awful film", "the plot", "--min-confidence", "0.999")
    answers = document["predictions"]
    assert all(a["abstained"] for a in answers)
    assert all(max(a["probabilities"].values()) < 0.999 for a in answers)
    document, _ = tk_json("predict", run.run_dir, "bad awful film", "--min-confidence", "0.5")
    assert document["predictions"][0]["abstained"] is False
    shown = ok("predict", run.run_dir, "the plot", "--min-confidence", "0.999")
    guess = tk_json("predict", run.run_dir, "the plot")[0]["predictions"][0]["label"]
    assert shown.startswith(f"(abstained; best guess {guess})")
    from toolkit.cli.using import prediction_lines
    rows = [{"label": "ham", "probabilities": {"ham": 0.998, "spam": 0.002}, "text": "Are we on?", "abstained": False},
            {"label": "spam", "probabilities": {"ham": 0.014, "spam": 0.986}, "text": "WINNER!!", "abstained": True}]
    lines = prediction_lines(rows, bar=0.99)
    assert lines[1].startswith("(abstained; best guess spam) ham 0.014  spam 0.986")
    assert lines[0].index("ham 0.998") == lines[1].index("ham 0.014")  # the scores start in one column
    from toolkit.cli.using import shown_probability
    # a probability under the bar is cut where rounding would lift it to the bar, so it never shows as meeting
    # the bar it missed; every other one is rounded, as without --min-confidence (0.2195 was shown as 0.219)
    assert shown_probability(0.9497, bar=0.95) == "0.949" and shown_probability(0.9497, None) == "0.950"
    assert shown_probability(0.2195, bar=0.95) == "0.220" and shown_probability(0.9503, bar=0.95) == "0.950"
    surest = run.metrics["calibration"]["highest_confidence"]
    assert 0.5 <= surest <= 1.0  # how sure depends on the trajectory: the bar is set above it, whatever it is
    above = 1.0 if surest >= 1.0 else (1 + surest) / 2
    said = tk_json("predict", run.run_dir, "the plot", "--min-confidence", repr(above))[1]
    if surest < 1.0:
        assert (f"No answer on the run's {run.metrics['calibration']['n']:,} test rows was that sure (the surest: "
                f"{surest:.3f}), so --min-confidence {above:g} will abstain on nearly every text") in said
    assert "No answer" not in tk_json("predict", run.run_dir, "the plot", "--min-confidence", "0.5")[1]
    for threshold in ("nan", "inf", "1.5"):  # nan passes a plain range check: every comparison with it is false
        refused = tk("predict", run.run_dir, "the plot", "--min-confidence", threshold)
        assert refused.exit_code == 2 and "Invalid value for '--min-confidence'" in refused.output, refused.output


def test_calibration_off_is_a_task_key(project):
    from toolkit.config import with_overrides
    from toolkit.tasks_file import load_config

    task = load_config(project / "tasks.toml").task("toy")
    assert task.calibration == "temperature"
    assert with_overrides(task, {"calibration": "off"}).calibration == "off"


def test_report_shows_calibration_before_after_and_coverage(pm, project):
    run = train_toy(pm, project, epochs=2)
    page = (run.run_dir / "report.html").read_text()
    assert '<section id="temperature">' in page and "Reliability before and after" in page
    assert f"Temperature {run.metrics['calibration']['temperature']:.3f}" in page
    assert '<section id="coverage">' in page and "tk predict --min-confidence" in page
    assert "accuracy on those [95% Wilson]" in page and "a t chosen from this table is chosen on them" in page
    assert f"The surest answer on these rows was {run.metrics['calibration']['highest_confidence']:.3f}." in page


def test_multilabel_temperatures_are_per_label_and_baked_per_row(tiny_model):
    """Each label's sigmoid gets its own T; baking divides each label's row of the head by its T."""
    import torch
    from transformers import AutoModelForSequenceClassification

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, size=(8000, 2))
    labels = (rng.random((8000, 2)) < 1 / (1 + np.exp(-logits))).astype(float)
    shown = 1 / (1 + np.exp(-logits * np.array([4.0, 1.0])))  # label 0 overconfident, label 1 calibrated
    found = calibration.fit_temperatures(shown.astype(np.float32), labels, multi_label=True)
    assert 3.5 < found[0] < 4.5 and 0.9 < found[1] < 1.1

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2,
                                                               problem_type="multi_label_classification")
    inputs = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    model.eval()
    with torch.no_grad():
        before = model(**inputs).logits.numpy()
        assert calibration.bake(model, np.array([4.0, 0.5]))
        after = model(**inputs).logits.numpy()
    np.testing.assert_allclose(after, before / np.array([4.0, 0.5]), rtol=1e-5, atol=1e-6)
    assert model.config.tk_temperature == [4.0, 0.5]


def test_the_temperature_is_fitted_on_spare_training_rows_where_train_size_left_some(pm, project):
    """Rows train_size left unused never trained nor chose the epoch: the temperature is fitted on them."""
    from toolkit.data.hashes import normalise
    from toolkit.data.loading import load_named
    from toolkit.data.splits import make_splits

    task = toy_task(project, train_size=100)
    labelled = load_named(pm, "toy", task_data=task.data, base=project, task=task).splits
    made = make_splits(labelled, task)
    used = {normalise(text) for split in made.splits.values() for text in split["text"]}
    spare = made.spare["text"]
    assert 20 <= len(spare) <= len(labelled["train"]) - 100 and not used & {normalise(t) for t in spare}
    assert make_splits(labelled, toy_task(project)).spare is None  # every training row trains: none spare

    run = train_toy(pm, project, train_size=100).metrics["calibration"]
    assert (run["fitted_on"], run["fitted_texts"]) == ("spare training rows", len(spare))
    whole = train_toy(pm, project).metrics["calibration"]
    validation = make_splits(labelled, toy_task(project)).splits["validation"]
    assert whole["fitted_on"] == "validation" and whole["fitted_texts"] == len(validation)
    said = ok("run", "toy", "--set", "epochs=1", "--output", project / "runs")  # the console says it is noisy
    assert (f"fitted on {len(validation)} validation texts" in said and f"The validation split also chose the "
            f"epoch, and {len(validation)} texts give a noisy temperature" in said)
    spare_run = ok("run", "toy", "--set", "epochs=1", "--set", "train_size=100", "--output", project / "runs")
    assert "training texts that train_size left unused" in spare_run and "noisy temperature" not in spare_run
