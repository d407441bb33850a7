"""Model selection, early stopping, the overfitting diagnosis, metrics, predict/evaluate, sweep/compare."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import f1_score

from plugins.metrics import tk_compute_metrics
from tests.helpers import fails_with, ok, runner, tk
from toolkit.cli import cli
from toolkit.config import with_overrides
from toolkit.evaluation.diagnosis import diagnose_overfitting, explain
from toolkit.records import EpochRecord
from toolkit.runs.compare import RunSummary, mcnemar_p
from toolkit.runs.pipeline import run_task
from toolkit.tasks_file import load_config
from toolkit.testing import write_keyword_dataset
from toolkit.training.progress import Progress


def history(*pairs):
    return [EpochRecord(i + 1, train, val, 0.8, 0.8, 1.0) for i, (train, val) in enumerate(pairs)]


def test_reference_model_1_is_diagnosed_as_overfitting():
    # The reference experiment's Model 1: validation loss rose while training loss fell.
    found = diagnose_overfitting(history((0.3630, 0.3958), (0.2588, 0.4340), (0.1764, 0.4070)))
    assert found["overfitting"] and found["from_epoch"] == 2 and found["best_epoch"] == 1
    assert "0.3958" in found["message"] and "0.4340" in found["message"]
    assert any("learning rate" in advice for advice in found["advice"])


def test_reference_model_2_is_healthy():
    assert not diagnose_overfitting(history((0.3741, 0.3840), (0.2457, 0.3675)))["overfitting"]



def test_a_rise_within_its_paired_standard_errors_is_not_overfitting():
    rows = [EpochRecord(1, 0.50, 0.400, 0.8, 0.8, 1.0), EpochRecord(2, 0.30, 0.420, 0.8, 0.8, 1.0, loss_rise_se=0.015)]
    within = diagnose_overfitting(rows)
    assert not within["overfitting"]  # +5%, but 1.3 standard errors: noise, and said so
    assert "+5%) while training loss fell, but by 1.3 standard errors only: within the noise" in within["note"]
    assert explain(within, 1) == [within["note"]]
    rows[1] = EpochRecord(2, 0.30, 0.420, 0.8, 0.8, 1.0, loss_rise_se=0.005)
    found = diagnose_overfitting(rows)
    assert found["overfitting"] and found["rise_standard_errors"] == pytest.approx(4.0)
    assert "4.0 standard errors, too large a rise for chance" in found["message"]
    onset = diagnose_overfitting(rows + [EpochRecord(3, 0.20, 0.450, 0.8, 0.8, 1.0, loss_rise_se=0.01)])
    assert onset["message"].startswith("Overfitting from epoch 2 (4.0 standard errors above epoch 1): "), onset
    assert any("raise train_size" in advice for advice in found["advice"])
    # every training row already used: no "raise train_size", but a word on labels
    advice = diagnose_overfitting(rows, train_size=None)["advice"]
    assert not any("train_size" in a for a in advice) and any("check the labels" in a for a in advice)


def test_selection_pairs_each_epoch_with_the_lowest_validation_loss_before_it():
    from toolkit.config import build_task
    from toolkit.training import policy

    labels = np.array([0, 1, 1, 0])
    selection = policy.Selection(build_task("t", {"dataset": "d", "model": "m", "epochs": 3}, "test"))
    for epoch, right in enumerate(([0.6, 0.7, 0.8, 0.9], [0.9, 0.9, 0.9, 0.9], [0.8, 0.6, 0.9, 0.9]), 1):
        probabilities = np.array([[p, 1 - p] if y == 0 else [1 - p, p] for p, y in zip(right, labels)])
        selection.end_epoch(policy.epoch_record(epoch, [0.5], labels, probabilities, 1.0,
                                                lambda y, p: {"accuracy": 1.0, "f1": 1.0}))
    first, second, third = selection.history
    assert first.loss_rise_se is None and first.validation_rows is None  # per-row losses stay out of the history
    change = -np.log([0.9] * 4) + np.log([0.6, 0.7, 0.8, 0.9])  # epoch 2 against epoch 1, row by row
    assert second.loss_rise_se == pytest.approx(change.std() / 2)
    change = -np.log([0.8, 0.6, 0.9, 0.9]) + np.log([0.9] * 4)  # epoch 3 against epoch 2, the lowest before it
    assert third.loss_rise_se == pytest.approx(change.std() / 2)
    assert "validation_rows" not in third.as_dict()


def run(pm, project, **overrides):
    task = with_overrides(load_config(project / "tasks.toml").task("toy"), overrides)
    lines = []
    outcome = run_task(pm, task, output=project / "runs", base=project, progress=Progress(lines.append, bar=False))
    return outcome, "\n".join(lines)


MEMORISE = dict(epochs=30, learning_rate=1e-3, lr_scheduler="constant", validation_size=100)


@pytest.mark.slow
@pytest.mark.parametrize("bf16", ["on", "off"])  # both paths bf16 = "auto" can take, whatever this CPU picks
def test_forced_overfitting_is_diagnosed_and_best_epoch_kept(pm, project, memorisable, bf16):
    outcome, printed = run(pm, project, data=str(memorisable), patience=0, bf16=bf16, **MEMORISE)
    history_ = outcome.metrics["history"]
    # The premise, forced by capacity and epochs: the 48 random labels were memorised.
    assert history_[-1]["train_loss"] < 0.2, history_
    diagnosis = outcome.metrics["diagnosis"]
    assert diagnosis["overfitting"], history_
    best = outcome.metrics["best_epoch"]
    assert best < 30 and history_[best - 1]["validation_loss"] == min(r["validation_loss"] for r in history_)
    assert diagnosis["rise_standard_errors"] > 2  # beyond the noise of 100 validation rows
    assert "Overfitting from epoch" in printed and f"kept the weights of epoch {best}" in printed
    saved = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert saved["diagnosis"]["overfitting"]


def test_healthy_run_has_no_diagnosis(pm, project):
    outcome, printed = run(pm, project)
    assert not outcome.metrics["diagnosis"]["overfitting"]
    assert "Overfitting" not in printed



def test_no_progress_bar_is_drawn_into_a_log(project):
    """Standard error that is not a terminal (a log file, a pipe) gets the lines, not a bar's redraws."""
    from tests.helpers import tk

    result = tk("run", "toy", "--set", "epochs=1")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr and "epoch" in result.stdout

@pytest.mark.parametrize("bf16", ["on", "off"])
def test_early_stopping_after_patience(pm, project, memorisable, bf16):
    outcome, _ = run(pm, project, data=str(memorisable), patience=1, bf16=bf16, **MEMORISE)
    history_ = outcome.metrics["history"]
    assert len(history_) < 30  # memorising random labels cannot lower validation loss for 30 epochs running
    best = outcome.metrics["best_epoch"]
    assert len(history_) == best + 1  # stopped one epoch after the last improvement
    assert history_[best - 1]["validation_loss"] == min(r["validation_loss"] for r in history_)


def test_metrics_match_sklearn_and_carry_intervals():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    probabilities = rng.dirichlet(np.ones(3), 300)
    probabilities[np.arange(300), labels] += 0.5
    metrics = tk_compute_metrics(labels, probabilities, ("a", "b", "c"), confidence=True)
    predictions = probabilities.argmax(1)
    assert metrics["f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert metrics["f1_weighted"] == pytest.approx(f1_score(labels, predictions, average="weighted"))
    for name in ("accuracy", "f1", "precision", "recall"):
        low, high = metrics[f"{name}_ci"]
        assert low <= metrics[name] <= high and high - low < 0.2
    binary = tk_compute_metrics(labels % 2, probabilities[:, :2], ("n", "p"), confidence=False)
    assert binary["f1"] == pytest.approx(f1_score(labels % 2, probabilities[:, :2].argmax(1)))


def test_mcnemar_identical_runs_are_noise():
    correct = np.array([True, False, True, True])
    a = RunSummary("a", {}, correct, "x")
    assert mcnemar_p(a, RunSummary("b", {}, correct.copy(), "x")) == 1.0
    assert mcnemar_p(a, RunSummary("c", {}, correct, "other rows")) is None


def test_verdicts_never_print_a_p_value_of_zero():
    from toolkit.runs.compare import verdict

    assert [verdict(p) for p in (None, 0.3, 0.05, 0.012, 0.001, 4e-7, 0.0)] == [
        "n/a", "noise (p=0.30)", "noise (p=0.05)", "real (p=0.012)", "real (p=0.001)", "real (p<0.001)",
        "real (p<0.001)"]


def test_evaluate_finds_the_task_data_from_another_folder(project, monkeypatch):
    ok("run", "toy", "--set", "epochs=1", "--output", project / "runs")
    run_dir = next((project / "runs").iterdir())
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the task's data = "toy-data" is relative to tasks.toml, not here
    monkeypatch.setenv("TK_TASKS", str(project / "tasks.toml"))
    output = ok("evaluate", run_dir)
    assert "toy-data" in output and "80 examples" in output


def test_predict_and_evaluate_a_saved_run(project):
    ok("run", "toy", "--output", project / "runs")
    run_dir = next((project / "runs").iterdir())
    output = ok("predict", run_dir, "good great best", "awful bad worst")
    first, second = output.strip().splitlines()
    assert first.startswith("pos") and second.startswith("neg")
    rows = json.loads(ok("predict", run_dir, "--json", "good"))["predictions"]
    assert set(rows[0]["probabilities"]) == {"neg", "pos"}
    write_keyword_dataset(project / "fresh", train=60, test=50, seed=11)
    output = ok("evaluate", run_dir, "--data", project / "fresh")
    assert "accuracy" in output and "50 examples" in output
    assert re.search(r"Scored 50 texts in [0-9.]+ s \([0-9.,]+ texts/s, tokenizing included\)", output)
    saved = json.loads(next((run_dir / "evaluations").iterdir()).read_text())
    seconds = saved["seconds"]  # rounded to 0.01 s
    assert 50 / (seconds + 0.005) <= saved["texts_per_second"] <= 50 / max(seconds - 0.005, 1e-9)


@pytest.mark.slow
def test_sweep_and_compare(project):
    output = ok("sweep", "toy", "--grid", "epochs=1,3", "--output", project / "runs")
    assert "epochs=1" in output and "epochs=3" in output and "vs best" in output
    sweep_dir = next((project / "runs").iterdir())
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(runs) == 2
    assert json.loads((sweep_dir / "sweep.json").read_text())["grid"] == {"epochs": [1, 3]}
    table = ok("compare", *runs)
    rows = [line for line in table.splitlines() if line.startswith(runs[0].name) or line.startswith(runs[1].name)]
    assert len(rows) == 2 and sum(row.rstrip().endswith("best") for row in rows) == 1
    verdict = next(row for row in rows if not row.rstrip().endswith("best"))
    assert re.search(r"(noise \(p=\d\.\d\d\)|real \(p=\d\.\d{3}\)|real \(p<0\.001\))$", verdict.rstrip()), verdict
    assert ok("compare", sweep_dir).splitlines()[:len(rows) + 2] == table.splitlines()[:len(rows) + 2]  # its runs


@pytest.mark.slow
def test_sweep_over_seeds_reports_mean_and_sd(project):
    output = ok("sweep", "toy", "--grid", "batch_size=8,16", "--seeds", "2", "--set", "epochs=1",
                     "--output", project / "runs")
    assert "±" in output and "batch_size=16" in output


@pytest.mark.slow
def test_an_interrupted_sweep_exits_130_and_says_what_it_kept(project, monkeypatch):
    import os
    import signal

    from toolkit.runs import pipeline

    real, calls = pipeline.make_splits, []

    def interrupting_the_second_run(*args, **kwargs):  # inside the run: its handler turns SIGTERM into a stop
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "make_splits", interrupting_the_second_run)
    result = CliRunner().invoke(cli, ["sweep", "toy", "--grid", "learning_rate=1e-3,2e-3", "--set", "epochs=1",
                                      "--output", str(project / "runs")])
    assert result.exit_code == 130, result.output
    sweep_dir = next((project / "runs").iterdir())
    assert (f"Sweep interrupted at run 2 of 2 (learning_rate=0.002, seed 1); its 1 finished run(s) are in "
            f"{sweep_dir} (tk compare {sweep_dir} compares them)") in result.stderr


def test_an_interrupted_sweep_run_says_how_to_start_it_again_with_its_grid_setting(project, monkeypatch):
    """The run's own 'Start again' line repeats the sweep's --set and the --grid value (and seed) it ran with:
    'tk run toy' alone would train another run. Its first run is stopped before it trains."""
    import os
    import signal

    from toolkit.runs import pipeline

    def interrupting(*args, **kwargs):  # inside the run: its handler turns SIGTERM into a stop
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    real = pipeline.make_splits
    monkeypatch.setattr(pipeline, "make_splits", interrupting)
    result = runner().invoke(cli, ["sweep", "toy", "--grid", "learning_rate=1e-3,2e-3", "--seeds", "2",
                                   "--set", "epochs=1", "--set", "class_weights=balanced",
                                   "--output", str(project / "runs")])
    assert result.exit_code == 130, result.output
    assert ("nothing to resume. Start again: tk run toy --set epochs=1 --set class_weights=balanced "
            "--set learning_rate=0.001\n") in result.stdout
    # a tk run's own --set too, quoted for a shell where a value needs it
    result = tk("run", "toy", "--set", "epochs=1", "--set", "report_to=[]", "--output", project / "runs")
    assert result.exit_code == 130 and \
        "Start again: tk run toy --set epochs=1 --set 'report_to=[]'\n" in result.output, result.output


def test_sweep_rejects_a_bad_grid_before_training(project):
    result = CliRunner().invoke(cli, ["sweep", "toy", "--grid", "epoch=1,2"])
    assert result.exit_code == 1 and "Did you mean 'epochs'" in result.output


@pytest.mark.parametrize("grid, reason", [
    ("model=tiny,tiyn", "task 'toy', key 'model': Unknown model 'tiyn'. Did you mean 'tiny'?"),
    ("max_length=64,100000", ("max_length = 100000 is above the 128 tokens model 'tiny' can take. "
                              "Use --grid max_length=128 or less.")),
    ("engine=eager,cuda-graphs", ("engine = \"cuda-graphs\" cannot train here: it needs a CUDA GPU. "
                                  "Use --grid engine=auto")),
    # the checks that need the data (loaded and split before the first run): the toy's 160 training rows
    ("batch_size=8,161", ("task 'toy': batch_size = 161 is larger than the 160 training rows: one batch would hold "
                          "every row; set batch_size to at most 160, e.g. --grid batch_size=16.")),
    ("train_size=8,1000", "task 'toy': train_size = 1000 is larger than the 160 training rows left after carving 40"),
])
def test_every_grid_setting_is_checked_before_the_first_run_trains(project, grid, reason):
    """tk run's checks before loading data, on each setting: the bad second one stops the sweep before the first
    trains, and tk run's advice names the --grid the value came from."""
    if "cuda-graphs" in grid and __import__("torch").cuda.is_available():
        pytest.skip("cuda-graphs can train here")
    value = grid.split(",")[1]
    result = fails_with(reason, "sweep", "toy", "--grid", grid, "--output", project / "runs")
    assert f"The sweep cannot start its setting 2 of 2 ({grid.split('=')[0]}={value}), so nothing was trained: " \
           in result.output
    assert not (project / "runs").exists()


def test_a_key_in_both_grid_and_set_is_refused(project):
    fails_with("--grid epochs=... and --set epochs=... both set 'epochs': the --grid values would replace the --set "
               "one in every run.", "sweep", "toy", "--grid", "epochs=1,2", "--set", "epochs=3",
               "--output", project / "runs")
    assert not (project / "runs").exists()


def test_a_seed_grid_trains_the_seeds_it_names(project):
    """--grid seed=3,4: each run trains with its own seed (config.json says so), not the task's."""
    ok("sweep", "toy", "--grid", "seed=3,4", "--set", "epochs=1", "--output", project / "runs")
    sweep_dir = next((project / "runs").iterdir())
    seeds = sorted(json.loads((run / "config.json").read_text())["task"]["seed"]
                   for run in sweep_dir.iterdir() if run.is_dir())
    assert seeds == [3, 4]
    for grid, message in (("seed=1,01", "seed"), ("seed=1,2", "use one")):
        result = CliRunner().invoke(cli, ["sweep", "toy", "--grid", grid, "--seeds", "2" if grid == "seed=1,2" else "1",
                                          "--output", str(project / "refused")])
        assert result.exit_code == 1 and message in result.output, result.output
        assert not (project / "refused").exists()


def test_a_sweep_prints_each_data_check_line_once():
    from toolkit.runs.sweep import NotesOnce

    said = []
    progress = NotesOnce(Progress(said.append, bar=False))
    for run in range(2):
        progress.note("Data check: class 'x' has 3 training rows")
        progress.note(f"Run {run}")
    assert said == ["Data check: class 'x' has 3 training rows", "Run 0", "Run 1"]
    assert progress.show_bar is False  # the rest is the sweep's own progress


@pytest.mark.slow
def test_a_sweep_over_data_files_trains_each_run_on_its_settings_file(project):
    """--grid data=A,B compares data files over seeds (a corrected copy against the original): each run reads
    its setting's file (the runs read the task's file before, labelled as the other), its start-again line names
    it as --data, and settings scored on other test rows than each other are said to be (not those scored on one
    test file, less a row one data file's runs left out for sharing its text)."""
    noisier = write_keyword_dataset(project / "noisier", noise=0.3)  # other training rows, the same test.csv
    test_csv = (project / "toy-data" / "test.csv").read_text(encoding="utf-8")
    (noisier / "test.csv").write_text(test_csv, encoding="utf-8")
    with open(noisier / "train.csv", "a", encoding="utf-8") as train:  # a test text: its runs leave that row out
        train.write(test_csv.splitlines()[1] + "\n")
    output = ok("sweep", "toy", "--grid", "data=toy-data,noisier", "--seeds", "2", "--set", "epochs=1",
                "--output", project / "same")
    scored = {len((folder / "predictions.csv").read_text().splitlines()) for folder in (project / "same").glob("*/*/")}
    assert len(scored) == 2  # one test file, one row fewer in the runs on noisier: the same test rows, less a leak
    assert "data=noisier" in output and "NOT THE SAME TEST ROWS" not in output
    run_names = sorted(folder.name for folder in (project / "same").glob("*/*/"))
    assert [name.startswith("noisier-") for name in run_names] == [True, True, False, False]  # named by file
    assert all(name.startswith("toy-data-") for name in run_names[2:])
    compared = ok("compare", *sorted((project / "same").glob("*/*/")))  # paired on the test rows both scored
    # whichever run is best (its rounding is the CPU's), a run on the other file is paired with it on 79 rows
    assert "unpaired" not in compared
    assert re.search(r"paired on the 79 test rows both scored, of (80 and 79|79 and 80)", compared)
    assert "these runs were trained on different data" in compared
    configs = [json.loads(path.read_text()) for path in sorted((project / "same").glob("*/*/config.json"))]
    read = sorted((config["data"], config["data_source"].split(" (")[1], config["start_again"]) for config in configs)
    assert read == [(str((project / name).resolve()), "from --grid data)",
                     f"tk run toy --data {name} --set epochs=1" + (" --set seed=2" if second else ""))  # the toy task seed 1
                    for name in ("noisier", "toy-data") for second in (False, True)]

    write_keyword_dataset(project / "other", seed=5)  # other test rows too
    output = ok("sweep", "toy", "--grid", "data=toy-data,other", "--seeds", "2", "--set", "epochs=1",
                "--output", project / "other-rows")
    assert "NOT THE SAME TEST ROWS: data=toy-data, data=other were scored on different test rows" in output


@pytest.mark.parametrize("task", [("toy",), ()])
def test_a_sweep_over_data_files_refuses_a_data_file_none_of_its_runs_reads(project, task):
    """--data A --grid data=B,C trained on B and C alone and named the sweep after A, unsaid."""
    fails_with("--data toy-data is not one of --grid data's files (toy3-data, other): each run reads its --grid "
               "file, so no run would read it. Add it to the --grid list, or drop --data.", "sweep", *task, "--data",
               "toy-data", "--grid", "data=toy3-data,other", "--output", project / "runs")
    assert not (project / "runs").exists()


@pytest.mark.parametrize("command", [("run", "toy"), ("cv", "toy"), ("check", "toy"), ("sweep", "toy"), ("tune", "toy"), ("run",),
                                     ("check",), ("sweep",)])
def test_data_named_by_both_data_and_set_is_refused(project, command):
    """--data A --set data=B: a run reads one file, so which one would be a guess; nothing is trained."""
    extra = ("--grid", "epochs=1,2") if command[0] == "sweep" else ()
    fails_with("--data toy-data and --set data=toy3-data both name the data file, and a run reads one. Pass the "
               "file once, with --data.", *command, "--data", "toy-data", "--set", "data=toy3-data", *extra,
               "--output", project / "runs") if command[0] != "check" else \
        fails_with("both name the data file, and a run reads one", *command, "--data", "toy-data", "--set",
                   "data=toy3-data")
    assert not (project / "runs").exists()
