"""tk audit: flipped labels ranked first; the corrected copy differs from the data in exactly the rows named."""

import csv
import hashlib
import random

import pytest

from tests.helpers import quiet, tk, tk_json, toy_task, train_toy
from toolkit.runs.cv import cv_task
from toolkit.testing import keyword_rows

pytest.importorskip("cleanlab")

FLIPPED = 24  # of 240 rows: a tenth, as in the IMDB target


@pytest.fixture
def flipped_cv(pm, project):
    """A cv of 240 keyword rows (learnable) with a known tenth of their labels flipped."""
    rows = keyword_rows(240, ("neg", "pos"), seed=11)
    rng = random.Random(5)
    flipped = set(rng.sample(range(240), FLIPPED))
    rows = [(text, {"neg": "pos", "pos": "neg"}[label] if i in flipped else label) for i, (text, label) in
            enumerate(rows)]
    folder = project / "flipped"
    folder.mkdir()
    for name, part in (("train", rows), ("test", keyword_rows(40, ("neg", "pos"), seed=12))):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([("text", "label"), *part])
    outcome = cv_task(pm, toy_task(project, data="flipped", epochs=5, validation_size=20), output=project / "runs", base=project,
                      progress=quiet(), folds=3)
    assert outcome.status == "complete"
    return outcome.cv_dir, {i + 1 for i in flipped}, folder / "train.csv"  # row numbers count from 1


def records(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.mark.slow
def test_audit_ranks_flipped_rows_first_and_writes_exact_corrections(flipped_cv, tmp_path):
    cv_dir, flipped, source = flipped_cv
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    document, _ = tk_json("audit", cv_dir)
    assert document["audited"] == "out-of-fold (tk cv)" and document["rows"] == 240
    with open(cv_dir / "audit.csv", newline="", encoding="utf-8") as handle:
        ranked = [int(r["row"]) for r in csv.DictReader(handle)]
    assert sorted(ranked) == list(range(1, 241))
    precision = len(set(ranked[:FLIPPED]) & flipped) / FLIPPED
    print(f"precision at {FLIPPED}: {precision:.2f}")
    assert precision >= 0.5, f"precision at {FLIPPED}: {precision:.2f} (chance: 0.10)"
    assert '<section id="audit">' in (cv_dir / "report.html").read_text()
    # every fold's linear baseline scored its held-out rows too, and the audit averaged the two models
    assert [m["model"] for m in document["models"]] == ["fine-tune", "linear baseline"]
    assert sum(m["weight"] for m in document["models"]) == pytest.approx(1, abs=1e-3)
    low, high = document["estimated_errors_ci"]
    assert low <= document["estimated_errors"] <= high
    assert document["estimated_errors_note"] is None  # two classes of about 120 rows: no small class
    shown = tk("audit", cv_dir).stdout  # the way on, with the two counts to choose N from
    with open(cv_dir / "audit.csv", newline="", encoding="utf-8") as handle:  # the averaged models' answers
        differ = sum(r["suggested"] != r["label"] for r in csv.DictReader(handle))
    assert document["model_disagreements"] == differ and document["estimated_errors"] <= differ
    listed = [line for line in shown.splitlines() if line[2:6] == "row "]  # the top rows, flagged ones marked
    assert [line.startswith("* ") for line in listed] == [bool(e["flagged"]) for e in document["top"][:len(listed)]]
    assert listed and "* flagged by confident learning. Every row, ranked, with its whole text:" in shown
    assert (f"The models' answer differs from the given label on {differ:,} of the 240 rows (accuracy on the given "
            f"labels {1 - differ / 240:.3f}); the estimate counts those it is confident of") in shown
    assert (f"Next, once you have reviewed the top rows: tk audit {cv_dir} --write FILE --relabel N (or --drop N), N "
            f"the rows checked; the audit flagged {document['flagged']:,} and estimates "
            f"{document['estimated_errors']:,} wrong labels.") in shown

    original = records(source)
    dropped = tmp_path / "dropped.csv"
    document, _ = tk_json("audit", cv_dir, "--write", dropped, "--drop", "10")
    named = set(document["written"]["rows"])
    assert named == set(ranked[:10])
    assert records(dropped) == [r for n, r in enumerate(original) if n not in named]  # n: row number (header 0)

    relabelled = tmp_path / "relabelled.csv"
    document, _ = tk_json("audit", cv_dir, "--write", relabelled, "--relabel", "10")
    suggested = {int(r["row"]): r["suggested"] for r in document["top"][:10]}
    changed = records(relabelled)
    assert len(changed) == len(original)
    for n, (old, new) in enumerate(zip(original, changed)):
        assert new == ([old[0], suggested[n]] if n in suggested else old)
    assert all(suggested[n] != original[n][1] for n in suggested if n in flipped)  # a flipped row gets its label back
    # byte for byte, the copy is the file (its CRLF line endings too) but for the rows it relabelled
    lines, before_lines = relabelled.read_bytes().split(b"\r\n"), source.read_bytes().split(b"\r\n")
    assert len(lines) == len(before_lines)
    assert {n for n, (a, b) in enumerate(zip(before_lines, lines)) if a != b} == \
        {n for n in suggested if suggested[n] != original[n][1]}
    # a top row whose label already is the suggested one is left as it is, and not counted as relabelled
    assert document["written"]["rows"] == sorted(n for n in suggested if suggested[n] != original[n][1])
    assert document["written"]["unchanged"] == sorted(n for n in suggested if suggested[n] == original[n][1])
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # the data itself untouched

    # rows the review found labelled right are kept out of the correction (before, only the first N could be taken)
    reviewed = ranked[1:3]
    kept_copy = tmp_path / "reviewed.csv"
    document, _ = tk_json("audit", cv_dir, "--write", kept_copy, "--drop", "10", "--keep",
                          ",".join(map(str, reviewed)))
    assert document["written"]["rows"] == sorted(set(ranked[:10]) - set(reviewed))
    assert document["written"]["kept_as_reviewed"] == sorted(reviewed)
    assert records(kept_copy) == [r for n, r in enumerate(original) if n not in set(ranked[:10]) - set(reviewed)]
    outside = tk("audit", cv_dir, "--write", tmp_path / "x.csv", "--drop", "2", "--keep", str(ranked[5]))
    assert outside.exit_code == 1 and f"--keep row {ranked[5]}: not among the 2 rows --drop 2 takes" in outside.output
    assert not (tmp_path / "x.csv").exists()
    alone = tk("audit", cv_dir, "--keep", str(ranked[0]))
    assert alone.exit_code == 2 and "--keep ROWS leaves rows out of --drop N or --relabel N" in alone.output

    refused = tk("audit", cv_dir, "--write", source, "--drop", "3")
    assert refused.exit_code == 1 and "never overwrites your data" in refused.output
    for option, count, most in (("--drop", "240", 239), ("--relabel", "241", 240)):  # none left, or past the rows
        refused = tk("audit", cv_dir, "--write", tmp_path / "all.csv", option, count)
        assert refused.exit_code == 1 and \
            f"{option} {count}: audit.csv lists 240 rows, so {option} takes at most {most}" in refused.output
        assert "label errors: start with" in refused.output and not (tmp_path / "all.csv").exists()
    flagged = tk_json("audit", cv_dir)[0]["flagged"]
    _, stderr = tk_json("audit", cv_dir, "--write", tmp_path / "many.csv", "--drop", str(flagged + 1))
    assert f"goes past the {flagged} rows the audit flagged" in stderr
    both = tk("audit", cv_dir, "--write", tmp_path / "both.csv", "--drop", "3", "--relabel", "3")
    assert both.exit_code == 2 and "not both" in both.output


@pytest.mark.parametrize("summary, drop, relabel, said", [
    ({"rows": 60, "flagged": 14, "estimated_errors": 10}, 100, None,
     "--drop 100: audit.csv lists 60 rows, so --drop takes at most 59 (all 60 would leave none of them); the audit "
     "flagged 14 and estimates 10 label errors: start with --drop 14."),
    ({"rows": 60, "flagged": 14, "estimated_errors": 10}, 60, None, "so --drop takes at most 59 (all 60 would"),
    ({"rows": 60, "flagged": 14, "estimated_errors": 10}, None, 61,
     "--relabel 61: audit.csv lists 60 rows, so --relabel takes at most 60; the audit flagged 14 and estimates 10 "
     "label errors: start with --relabel 14."),
    ({"rows": 5, "flagged": 0, "estimated_errors": 0}, 9, None,
     "so --drop takes at most 4 (all 5 would leave none of them); the audit flagged no row, so it suggests no "
     "correction."),
    ({"rows": 1, "flagged": 1, "estimated_errors": 1}, 1, None,
     "--drop 1: audit.csv lists 1 row, and dropping it would leave none of the rows audited; correct it with "
     "--relabel 1, or edit the file."),
])
def test_a_correction_count_past_the_audit_says_how_many_it_takes_and_what_to_pass(summary, drop, relabel, said):
    from toolkit.cli.trust import check_correction_count
    from toolkit.errors import TkError

    with pytest.raises(TkError) as refused:
        check_correction_count(summary, drop, relabel)
    assert said in str(refused.value)


def test_ensemble_scores_are_cleanlabs_and_the_linear_columns_are_read():
    """Self-confidence of the accuracy-weighted average is cleanlab's ensemble score, weighted by accuracy; rows
    without linear_p_ columns (a cv from before them, linear_baseline = false) rank with the fine-tune alone."""
    import numpy as np
    from cleanlab.rank import get_label_quality_ensemble_scores, get_label_quality_scores

    from toolkit.runs.audit import members_of, pooled

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    fine_tune, linear = rng.dirichlet(np.ones(3), 200), rng.dirichlet(np.ones(3) * 0.5, 200)
    names = ("a", "b", "c")
    rows = [{f"linear_p_{n}": f"{p:.6f}" for n, p in zip(names, row)} for row in linear]
    members = members_of(rows, names, labels, fine_tune, multi_label=False)
    assert [m.name for m in members] == ["fine-tune", "linear baseline"]
    expected = get_label_quality_ensemble_scores(labels, [fine_tune, linear], weight_ensemble_members_by="accuracy",
                                                 verbose=False)
    assert np.allclose(get_label_quality_scores(labels, pooled(members)), expected, atol=1e-5)
    alone = members_of([{} for _ in labels], names, labels, fine_tune, multi_label=False)
    assert len(alone) == 1 and np.array_equal(pooled(alone), fine_tune)
    assert len(members_of(rows, names, labels, fine_tune, multi_label=True)) == 1  # multi-label: the fine-tune


def test_oof_keeps_a_column_that_one_fold_lacks_and_the_audit_then_uses_the_fine_tune(tmp_path):
    """A fold whose linear baseline could not be fitted (one class in its training rows) writes no linear_p_
    columns: oof.csv keeps them for the other folds, empty for its rows, and the audit ranks with the
    fine-tune alone rather than with half an ensemble."""
    import numpy as np

    from toolkit.runs.audit import members_of
    from toolkit.runs.cv_summary import write_oof

    plain = {"row": "2", "text": "b", "label": "neg", "predicted": "neg", "confidence": "0.8", "p_neg": "0.8",
             "p_pos": "0.2"}
    both = {**plain, "row": "1", "text": "a", "linear_p_neg": "0.6", "linear_p_pos": "0.4"}
    write_oof(tmp_path / "oof.csv", [(1, [both]), (2, [plain])], list(both))
    with open(tmp_path / "oof.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["row"], r["fold"], r["linear_p_neg"]) for r in rows] == [("1", "1", "0.6"), ("2", "2", "")]
    members = members_of(rows, ("neg", "pos"), np.array([0, 0]), np.array([[0.8, 0.2], [0.8, 0.2]]), False)
    assert [m.name for m in members] == ["fine-tune"]


def test_audit_of_a_plain_run_says_why_it_is_weaker(pm, project):
    run = train_toy(pm, project, epochs=1)
    result = tk("audit", run.run_dir)
    assert result.exit_code == 0, result.output
    assert "not out-of-sample" in result.output and "only the test split" in result.output
    assert "the linear baseline's" in result.output  # predictions.csv carries its probabilities (linear_p_)
    with open(run.run_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        predictions = list(csv.DictReader(handle))
    assert all(abs(float(r["linear_p_neg"]) + float(r["linear_p_pos"]) - 1) < 1e-3 for r in predictions)
    assert (run.run_dir / "audit.csv").is_file()
    assert '<section id="audit">' in (run.run_dir / "report.html").read_text()


def test_audit_without_cleanlab_says_what_to_install(project, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cleanlab", None)  # import cleanlab now raises ImportError
    result = tk("audit", project)
    assert result.exit_code == 1
    assert "tk audit needs cleanlab: pip install 'tk-toolkit[audit]'" in result.output


def test_of_two_rows_with_one_text_the_one_the_model_disagrees_with_is_flagged():
    """A duplicate pair labelled two ways: the row whose label the model gives is not put ahead of a real
    suspect (it would be dropped by --drop N); its reason still names the other row."""
    import numpy as np

    from toolkit.runs.audit import Member, review_entries

    rows = [{"row": "1", "text": "Free prize!", "label": "spam"}, {"row": "2", "text": "free  prize!", "label": "ham"},
            {"row": "3", "text": "see you at noon", "label": "spam"}, {"row": "4", "text": "lunch?", "label": "ham"}]
    labels = np.array([1, 0, 1, 0])
    probabilities = np.array([[0.1, 0.9], [0.1, 0.9], [0.6, 0.4], [0.8, 0.2]])
    quality = probabilities[np.arange(4), labels]
    entries, shared = review_entries(rows, ("ham", "spam"), labels, [Member("fine-tune", probabilities)], quality,
                                     np.zeros(4, dtype=bool), multi_label=False)
    assert shared == 2
    assert [(e["row"], e["flagged"]) for e in entries] == [(2, True), (3, False), (4, False), (1, False)]
    by_row = {e["row"]: e["reason"] for e in entries}
    assert "same text as row 2 (ham); the model agrees with this row's label" in by_row[1]
    assert by_row[2].endswith("same text as row 1 (spam)")
    assert by_row[4] == "p(ham) = 0.800"  # the model's answer is the label: said once, not again as p(suggested)
    assert by_row[3] == "p(spam) = 0.400, p(ham) = 0.600"


def test_a_multi_label_audit_ranks_a_missing_label_first_and_suggests_the_label_set():
    """Multi-label: cleanlab's per-label scores pooled per row; the suggestion is the set the models give, and
    a duplicate pair is flagged on the row whose set differs from theirs."""
    import json

    import numpy as np

    from toolkit.runs.audit import Member, rank, review_entries

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (60, 3)).astype(float)
    probabilities = np.clip(labels * 0.9 + 0.05 + rng.normal(0, 0.02, labels.shape), 0.01, 0.99)
    labels[7] = [1, 0, 0]
    probabilities[7] = [0.95, 0.97, 0.03]  # the models are sure of "b" too: it is missing from row 8's labels
    labels[20], probabilities[20] = [0, 1, 0], [0.04, 0.96, 0.02]
    labels[21], probabilities[21] = [0, 1, 1], [0.04, 0.96, 0.02]  # row 22: row 21's text with "c" added
    names = ("a", "b", "c")
    given = [json.dumps([n for n, on in zip(names, row) if on]) for row in labels]
    rows = [{"row": str(i + 1), "text": f"text {i}", "label": given[i]} for i in range(60)]
    rows[21]["text"] = "TEXT 20"
    quality, flagged, estimate = rank(labels, probabilities, multi_label=True)
    entries, shared = review_entries(rows, names, labels, [Member("fine-tune", probabilities)], quality, flagged,
                                     multi_label=True)
    assert shared == 2 and estimate >= 1
    by_row = {e["row"]: e for e in entries}
    assert entries[0]["row"] in (8, 22) and {8, 22} <= {e["row"] for e in entries if e["flagged"]}
    assert json.loads(by_row[8]["suggested"]) == ["a", "b"]
    assert not by_row[21]["flagged"] and "the model agrees with this row's label" in by_row[21]["reason"]


def test_the_error_count_interval_comes_from_half_samples_around_the_estimate():
    """50 classes, a tenth of the labels flipped: the interval holds the estimate and is not lopsided (the row
    bootstrap it replaces counted more errors in resamples that repeat rows: 291 with 244 to 872)."""
    import numpy as np

    from toolkit.runs.audit import count_errors, estimate_interval

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 50, 3000)
    probabilities = rng.dirichlet(np.full(50, 0.05), 3000) * 0.4
    probabilities[np.arange(3000), truth] += 0.6
    given = truth.copy()
    flipped = rng.choice(3000, 300, replace=False)
    given[flipped] = (truth[flipped] + rng.integers(1, 50, 300)) % 50
    estimate = count_errors(given, probabilities, multi_label=False)
    low, high = estimate_interval(given, probabilities, False, estimate, resamples=60)
    assert 200 <= estimate <= 400, estimate
    assert low <= estimate <= high
    assert (high - estimate) < 3 * (estimate - low) + 5 and (estimate - low) < 3 * (high - estimate) + 5
    assert high - low < estimate
    from toolkit.runs.audit import small_classes, small_classes_note

    assert small_classes(truth) == 0 and small_classes(np.array([0] * 25 + [1] * 3 + [3] * 19)) == 2
    assert small_classes_note(2).startswith("wide where classes are small: 2 classes have fewer than 20 rows")


def test_rows_of_a_class_no_other_fold_has_are_set_apart_not_ranked_as_suspects():
    import numpy as np

    from toolkit.runs.audit import Member, review_entries

    rows = [{"row": str(i + 1), "text": f"t{i}", "label": label, "fold": fold}
            for i, (label, fold) in enumerate([("a", "1"), ("a", "2"), ("b", "1"), ("b", "2"), ("rare", "2")])]
    labels = np.array([0, 0, 1, 1, 2])
    probabilities = np.array([[0.9, 0.1, 0.0], [0.3, 0.7, 0.0], [0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    quality = probabilities[np.arange(5), labels]
    entries, _ = review_entries(rows, ("a", "b", "rare"), labels, [Member("fine-tune", probabilities)], quality,
                                np.array([False, True, False, False, True]), multi_label=False)
    assert [e["row"] for e in entries] == [2, 4, 1, 3, 5]  # by score alone; the rare row last
    assert not entries[-1]["flagged"] and "no row of 'rare' is outside fold 2" in entries[-1]["reason"]
    assert "set_apart" not in entries[0]


def test_a_tab_delimited_file_without_an_extension_is_copied_with_only_the_named_rows_changed(tmp_path):
    """The SMS Spam Collection (label TAB text, no extension): tk audit advised --write, then refused the file;
    and a .tsv copy escaped every quote in rows it did not name ("the cave" became \\"the cave\\")."""
    from toolkit.errors import TkError
    from toolkit.runs.corrections import write_corrected
    from toolkit.saving import write_json

    source = tmp_path / "SMSSpamCollection"
    lines = ['ham\tWow. you liked "the cave" \\o/', "spam\tWIN a prize now", "ham\tsee you at 5", "spam\tok see you"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_dir = tmp_path / "cv"
    run_dir.mkdir()
    write_json(run_dir / "config.json", {"kind": "cv", "data": str(source)})
    chosen = [{"row": "4", "text": "ok see you", "label": "spam", "suggested": "ham"}]
    written = write_corrected(run_dir, tmp_path / "fixed.tsv", chosen, relabel=True, multi_label=False)
    assert written["rows"] == [4]
    assert (tmp_path / "fixed.tsv").read_text(encoding="utf-8").splitlines() == [*lines[:3], "ham\tok see you"]
    write_corrected(run_dir, tmp_path / "fixed", chosen, relabel=False, multi_label=False)  # no extension, as given
    assert (tmp_path / "fixed").read_text(encoding="utf-8").splitlines() == lines[:3]
    with pytest.raises(TkError, match=r"--write .*fixed.csv: give it no extension or .tsv, as the data file "
                                      r"SMSSpamCollection has"):
        write_corrected(run_dir, tmp_path / "fixed.csv", chosen, relabel=True, multi_label=False)
