"""tk cv: folds that keep identical texts together, oof.csv rows that map back to the file, resume after
SIGTERM."""

import csv
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import quiet, tk_json, toy_task
from toolkit.data.hashes import normalise
from toolkit.runs.cv import cv_task, fold_of, resume_cv
from toolkit.training.progress import Progress


def test_folds_keep_identical_texts_together_and_cover_every_row_once(project):
    import datasets

    rng = np.random.default_rng(3)
    words = ["good", "bad", "film", "plot", "great", "awful", "story", "scene"]
    texts = [" ".join(rng.choice(words, size=4)) for _ in range(150)]
    texts += [texts[i].upper() + "  " for i in range(0, 40, 2)]  # the same text after normalising
    labels = [int(rng.integers(0, 3)) for _ in texts]
    train = datasets.Dataset.from_dict({"text": texts, "label": labels})
    task = toy_task(project)
    assigned = fold_of(train, 5, seed=1, task=task)
    assert sorted(set(assigned.tolist())) == [0, 1, 2, 3, 4]  # every row in exactly one fold
    fold_of_text = {}
    for text, fold in zip(texts, assigned):
        assert fold_of_text.setdefault(normalise(text), fold) == fold, f"{text!r} in two folds"
    sizes = np.bincount(assigned)
    assert sizes.min() >= 0.6 * len(texts) / 5  # roughly even


def oof(cv_dir):
    with open(cv_dir / "oof.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cv_of_a_file_writes_oof_rows_that_map_back_to_the_file(project, tmp_path):
    rows = list(csv.reader(open(project / "toy-data" / "train.csv", newline="", encoding="utf-8")))[1:121]
    rows[5][0] = "   "  # an empty text: left out, yet later rows keep their numbers in the file
    rows[7] = [rows[3][0], "neg" if rows[3][1] == "pos" else "pos"]  # the same text, another label
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["text", "label"], *rows])
    document, stderr = tk_json("cv", "--data", path, "--folds", "3", "--set", "model=tiny", "--set", "epochs=1",
                               "--set", "validation_size=20")
    assert stderr.count("Calibration on the held-out fold (ECE") == 3 and "the test split" not in stderr
    cv_dir = tmp_path / document["cv_dir"] if not os.path.isabs(document["cv_dir"]) else document["cv_dir"]
    found = oof(__import__("pathlib").Path(cv_dir))
    numbers = [int(r["row"]) for r in found]
    assert sorted(numbers) == [n for n in range(1, 121) if n != 6]  # every non-empty row once
    for row in found:
        text, label = rows[int(row["row"]) - 1]
        assert (row["text"], row["label"]) == (text, label)
        assert abs(float(row["p_neg"]) + float(row["p_pos"]) - 1) < 1e-3
    fold = {int(r["row"]): r["fold"] for r in found}
    page = (Path(cv_dir) / "fold-2" / "report.html").read_text(encoding="utf-8")
    assert "Fold 2 of a cross-validation" in page and "the rows this fold held out of training" in page
    assert fold[4] == fold[8]  # identical texts, one fold
    summary = document["summary"]
    assert summary["folds"] == 3 and summary["scored"] == 119
    assert len(summary["per_fold"]) == 3 and sum(f["scored"] for f in summary["per_fold"]) == 119
    low, high = summary["mean"]["accuracy"]["ci"]
    assert low <= summary["mean"]["accuracy"]["mean"] <= high
    assert summary["pooled"]["n"] == 119 and len(summary["pooled"]["accuracy_ci"]) == 2
    # the pooled answers against always the most frequent class and the folds' linear baselines, paired
    baselines = summary["baselines"]
    assert baselines["metric"] == "accuracy" and baselines["majority"]["label"] in ("neg", "pos")
    for key in ("majority", "linear"):
        change = baselines[key]["differences"]["accuracy"]
        assert change["ci"][0] <= change["difference"] <= change["ci"][1] and baselines[key]["test"] == "mcnemar"
    from toolkit.cli.trust import format_cv
    shown = format_cv(summary)
    assert "fine-tune minus the folds' linear baselines (TF-IDF + logistic regression): " in shown
    positive = summary["pooled"]["positive_label"]  # each score named as tk run names it, not a bare "f1"
    assert f"\n  f1 (positive: {positive})" in shown and "\n  f1 (macro)" in shown
    assert not re.search(r"^  (f1|precision|recall) +\d", shown, re.MULTILINE)
    # every warning of a fold's own report reaches the summary, with how many folds gave it
    said = [w for k in (1, 2, 3) for w in json.loads((Path(cv_dir) / f"fold-{k}" / "metrics.json").read_text())
            .get("warnings", [])]
    quoted = [re.match(r"(\d) of 3 folds(?: \(in the words of fold \d\))?: (.*)", w).groups()
              for w in summary["warnings"]]
    assert sum(int(count) for count, _ in quoted) == len(said)
    assert all(text in said for _, text in quoted)


def test_cv_says_what_its_folds_warn_of_once_per_kind(tmp_path):
    from toolkit.cli.trust import format_cv
    from toolkit.runs.diagnoses import warnings_across

    said = ["The model predicts 'ham' for {}% of the {} rows: it has (almost) stopped telling the classes apart.",
            "Accuracy {} does not beat always predicting 'ham'."]
    for fold, numbers in enumerate([(100.0, 40), (97.5, 41)], 1):
        (tmp_path / f"{fold}.json").write_text(json.dumps({"warnings": [said[0].format(*numbers)]
                                                           + ([said[1].format(0.4)] if fold == 2 else [])}))
    found = warnings_across([tmp_path / "1.json", tmp_path / "2.json", tmp_path / "missing.json"])
    assert found == [(said[0].format(100.0, 40), 2, 0), (said[1].format(0.4), 1, 1)]
    summary = {"folds": 2, "scored": 81, "mean": {}, "pooled": {}, "per_fold": [],
               "warnings": [f"{count} of 2 folds: {text}" for text, count, _ in found]}
    assert "  WARNING 2 of 2 folds: The model predicts 'ham' for 100.0% of the 40 rows" in format_cv(summary)
    # one kind though the folds name other classes
    for fold, missed in ((1, "'a', 'b'"), (2, "'c', 'd', 'e'")):
        (tmp_path / f"{fold}.json").write_text(json.dumps({"warnings": [f"It never predicts {missed}."]}))
    assert warnings_across([tmp_path / "1.json", tmp_path / "2.json"]) == [("It never predicts 'a', 'b'.", 2, 0)]
    # one kind though the differences have other signs
    for fold, change in ((1, "-0.026 [-0.060, +0.009]"), (2, "+0.006 [-0.025, +0.038]")):
        (tmp_path / f"{fold}.json").write_text(json.dumps({"warnings": [f"As good within noise ({change})."]}))
    assert len(warnings_across([tmp_path / "1.json", tmp_path / "2.json"])) == 1


class Counting(Progress):
    """Counts progress steps and where each fold starts; ``stop_at``: a real SIGTERM at that step."""

    def __init__(self, stop_at=None):
        super().__init__(echo=self.heard, bar=False)
        self.seen, self.starts, self.stop_at = 0, {}, stop_at

    def heard(self, text):
        if text.startswith("Fold ") and " of " in text and "complete" not in text:
            self.starts[int(text.split()[1])] = self.seen

    def advance(self, done=1):
        self.seen += 1
        if self.seen == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_cv_resumed_after_sigterm_equals_an_uninterrupted_one(pm, project):
    task = toy_task(project, epochs=3)
    counting = Counting()
    whole = cv_task(pm, task, output=project / "whole", base=project, progress=counting, folds=3)
    assert whole.status == "complete"
    stop = counting.starts[2] + (counting.starts[3] - counting.starts[2]) * 2 // 3  # late in fold 2's training
    cut = cv_task(pm, task, output=project / "cut", base=project, progress=Counting(stop), folds=3)
    assert cut.status == "interrupted"
    first = cut.cv_dir / "fold-1" / "metrics.json"
    assert first.exists() and not (cut.cv_dir / "fold-3").exists()
    assert (cut.cv_dir / "fold-2" / "checkpoints").is_dir()  # it resumes inside the fold, not from its start
    kept = first.stat().st_mtime_ns
    said = []
    resumed = resume_cv(pm, cut.cv_dir, Progress(said.append, bar=False))
    assert resumed.status == "complete"
    # the recorded path, named as the run was given it (the task's data key), not as --data
    assert f"Data: toy from {(project / 'toy-data').resolve()} (from the task's data key)" in said, said
    assert first.stat().st_mtime_ns == kept  # the finished fold was not trained again
    assert [r for r in oof(resumed.cv_dir)] == [r for r in oof(whole.cv_dir)]
    assert resumed.summary["pooled"]["accuracy"] == whole.summary["pooled"]["accuracy"]


def test_cv_with_train_size_folds_a_sample_of_that_many_rows(pm, project):
    """train_size in tk cv: the folds are cut from train_size rows (stratified, seeded), not every row folded and
    scored with each fold trained on train_size of the rest (a 100,000-row file was scored whole for 400)."""
    said = []
    progress = Progress(echo=said.append, bar=False)
    outcome = cv_task(pm, toy_task(project, train_size=80, validation_size=10, epochs=1), output=project / "runs",
                      base=project, progress=progress, folds=2)
    found = oof(outcome.cv_dir)
    assert len(found) == 80 and len({row["row"] for row in found}) == 80
    with open(project / "toy-data" / "train.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    assert all((row["text"], row["label"]) == tuple(rows[int(row["row"]) - 1]) for row in found)
    assert sorted(np.unique([row["label"] for row in found], return_counts=True)[1].tolist()) == [40, 40]
    assert "train_size = 80: tk cv folds 80 of the training split's 200 rows" in "\n".join(said)
    assert any(line.startswith("Fold 1: train 30, validation 10, scored 40") for line in said), said


def test_cv_says_which_rows_each_folds_validation_left_out(project, tmp_path):
    """A fold's validation carve leaves out rows whose text is also in its training rows, as tk run does, but
    only each fold's manifest said so: the console's 'validation 44' lacked the row it had left out."""
    from toolkit.testing import keyword_rows

    rows = keyword_rows(60, ("neg", "pos"), 4)
    path = tmp_path / "twice.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows, *rows])  # every text twice
    document, stderr = tk_json("cv", "--data", path, "--folds", "2", "--set", "model=tiny", "--set", "epochs=1",
                               "--set", "validation_size=20")
    cv_dir = Path(document["cv_dir"]) if os.path.isabs(document["cv_dir"]) else tmp_path / document["cv_dir"]
    said = [note for fold in (1, 2) for note in
            json.loads((cv_dir / f"fold-{fold}" / "manifest.json").read_text()).get("notes", [])
            if "left out" in note]
    assert said, "no fold left a row out: the data no longer tests this"
    for fold in (1, 2):
        for note in json.loads((cv_dir / f"fold-{fold}" / "manifest.json").read_text()).get("notes", []):
            if "left out" in note:
                assert f"Fold {fold}, {note}" in stderr, stderr


def test_cv_refuses_more_folds_than_texts(pm, project):
    from toolkit.errors import TkError

    with pytest.raises(TkError, match="distinct texts cannot fill"):
        cv_task(pm, toy_task(project), output=project / "runs", base=project, progress=quiet(), folds=500)


def test_cv_refuses_a_batch_size_a_fold_cannot_fill_before_making_its_folder(pm, project):
    """tk run trains the toy task on 160 rows, so batch_size 150 fits; a fold of 5 trains on 120 (160 less the
    held fold and its own validation carve of 40). Refused before the cv folder exists: a failed folder would
    offer a --resume that meets the same saved setting again."""
    from toolkit.errors import TkError

    with pytest.raises(TkError, match=r"^fold 1 of 5 .*batch_size = 150 is larger than the 120 training rows"):
        cv_task(pm, toy_task(project, batch_size=150), output=project / "runs", base=project, progress=quiet())
    assert not (project / "runs").exists() or not any((project / "runs").iterdir())


def fake_cv(folder, accuracies, right, folds):
    """A finished tk cv folder with these per-fold accuracies and out-of-fold rows right or wrong."""
    from toolkit.runs.folders import set_status
    from toolkit.saving import write_json

    folder.mkdir()
    write_json(folder / "config.json", {"kind": "cv"})
    write_json(folder / "folds.json", {"rows": list(range(1, len(right) + 1)), "fold": folds})
    write_json(folder / "cv.json", {"problem": "single-label",
                                    "per_fold": [{"fold": i + 1, "accuracy": a} for i, a in enumerate(accuracies)]})
    with open(folder / "oof.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "text", "label", "fold", "predicted"])
        writer.writerows([[n, f"t{n}", "pos", folds[n - 1], "pos" if ok else "neg"] for n, ok in enumerate(right, 1)])
    set_status(folder, "complete")
    return folder


def test_compare_data_refuses_a_cv_folder_which_has_no_model(tmp_path):
    from tests.helpers import fails_with

    a = fake_cv(tmp_path / "a", [0.8, 0.8], [True, False, True, False], [0, 1, 0, 1])
    other = tmp_path / "other.csv"
    other.write_text("text,label\ngood,pos\n", encoding="utf-8")
    fails_with("--data scores each run's model on the file; a tk cv folder has no single model", "compare", a, a,
               "--data", other)


def test_compare_of_cv_folders_pairs_folds_with_the_corrected_t_test(tmp_path):
    from scipy import stats

    folds = [0, 1, 2, 3, 4] * 4
    a = fake_cv(tmp_path / "a", [0.80, 0.82, 0.78, 0.81, 0.79], [True] * 10 + [False] * 10, folds)
    b = fake_cv(tmp_path / "b", [0.83, 0.84, 0.80, 0.85, 0.80], [True] * 18 + [False] * 2, folds)
    document, _ = tk_json("compare", a, b)
    pair = document["cv"][0]
    assert pair["paired"] is True
    d = np.array([0.03, 0.02, 0.02, 0.04, 0.01])
    scale = np.sqrt((1 / 5 + 1 / 4) * d.var(ddof=1))  # Nadeau & Bengio's correction for K = 5 folds
    half = stats.t.ppf(0.975, 4) * scale
    found = pair["metrics"]["accuracy"]
    assert found["difference"] == pytest.approx(d.mean(), abs=1e-4)
    assert found["ci"] == pytest.approx([d.mean() - half, d.mean() + half], abs=1e-4)
    assert found["p"] == pytest.approx(2 * stats.t.sf(d.mean() / scale, 4), abs=1e-4)
    assert pair["mcnemar_p"] == pytest.approx(stats.binomtest(0, 8, 0.5).pvalue, abs=1e-4)  # 8 rows only b got

    c = fake_cv(tmp_path / "c", [0.83, 0.84, 0.80, 0.85, 0.80], [True] * 20, [4, 3, 2, 1, 0] * 4)
    document, _ = tk_json("compare", a, c)
    assert document["cv"][0]["paired"] is False and "mcnemar_p" not in document["cv"][0]


def test_cv_warns_of_a_class_whose_every_row_is_in_one_fold():
    from toolkit.runs.cv_summary import untrained_classes

    labels, assigned = np.array([0, 0, 1, 1, 2, 0]), np.array([0, 1, 0, 1, 2, 2])
    said = untrained_classes(labels, assigned, ("a", "b", "rare"))
    assert said.startswith("1 class has every row in one fold, which then trains without it: 'rare' (1 row, fold 3)")
    assert untrained_classes(labels[:4], assigned[:4], ("a", "b", "rare")) is None  # 'rare' has no rows at all


def test_cv_warns_of_a_class_some_folds_score_no_row_of():
    """3 rows of 'spam' in 5 folds: two folds score none, and their spam F1 of 0 pulls the per-fold mean; a class
    with every row in one fold is said by untrained_classes instead, not twice."""
    from toolkit.runs.cv_summary import classes_some_folds_lack

    labels = np.array([0] * 10 + [1, 1, 1] + [2])
    assigned = np.array([0, 1, 2, 3, 4] * 2 + [0, 1, 4] + [3])
    said = classes_some_folds_lack(labels, assigned, ("ham", "spam", "rare"))
    assert said.startswith("1 class is missing from some folds: 'spam' (3 rows; 2 of 5 folds score none). A fold with "
                           "no row of a class scores its F1, precision and recall 0 by convention")
    assert said.endswith("Use --folds 3 or fewer, or gather more rows of such a class.")
    assert classes_some_folds_lack(labels[:10], assigned[:10], ("ham", "spam", "rare")) is None  # in every fold


def test_the_interval_across_folds_is_the_corrected_t_interval():
    """Nadeau & Bengio's variance, (1/K + 1/(K-1)) sd², as tk compare of cv folders uses: sd / sqrt(K) alone
    would treat folds that share most of their training rows as independent."""
    from scipy import stats

    from toolkit.runs.cv_summary import across_folds, mean_in_words

    scores = [0.80, 0.82, 0.78, 0.85, 0.80]
    sd = float(np.std(scores, ddof=1))
    half = stats.t.ppf(0.975, 4) * sd * np.sqrt(1 / 5 + 1 / 4)
    found = across_folds(scores)
    assert found["mean"] == pytest.approx(0.81) and found["sd"] == pytest.approx(sd, abs=1e-4)
    assert found["ci"] == pytest.approx([0.81 - half, 0.81 + half], abs=1e-4)
    assert across_folds([0.99, 0.97, 1.0])["ci"][1] == 1.0  # clipped where every fold metric lies
    # three folds of precision 1.0 (an SMS trial) measure no spread: no interval, not a certain [1.0, 1.0]
    agreed = across_folds([1.0, 1.0, 1.0])
    assert agreed["ci"] is None and mean_in_words(agreed) == "1.0000 (every fold; no spread)"


def test_an_unfinished_cv_folder_is_refused_with_tk_cv_resume_and_no_allow_incomplete(tmp_path):
    """--allow-incomplete cannot help a tk cv folder (it has no single model or metrics.json): no command offers
    it there; each says to finish it with tk cv --resume. tk report does not pass a finished fold off for it."""
    from tests.helpers import fails_with
    from toolkit.runs.folders import set_status
    from toolkit.saving import write_json

    cv = tmp_path / "toy-cv"
    (cv / "fold-1").mkdir(parents=True)
    write_json(cv / "config.json", {"kind": "cv", "task": {"name": "toy"}, "folds": 2})
    set_status(cv, "interrupted")
    write_json(cv / "fold-1" / "metrics.json", {})  # a finished fold
    set_status(cv / "fold-1", "complete")
    for command in (("predict", cv, "a text"), ("evaluate", cv), ("report", cv), ("report", cv, "--allow-incomplete"),
                    ("compare", cv, cv), ("audit", cv)):
        result = fails_with(f"Finish it first: tk cv --resume {cv}." if command[0] in ("predict", "evaluate")
                            else f"Finish it: tk cv --resume {cv}", *command)
        assert "--allow-incomplete" not in result.output, result.output
    assert not (cv / "fold-1" / "report.html").exists() and not (tmp_path / "report.html").exists()
    # tk run --resume advised 'Start it again: tk run toy', a task a cv over --data FILE may not have
    fails_with(f"{cv} is a tk cv folder: tk cv --resume {cv} goes on with its folds.", "run", "--resume", cv)
