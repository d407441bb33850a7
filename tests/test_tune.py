"""tk tune: trials as processes that report epochs and get pruned, failed trials recorded, a killed tuner
resumed, two workers on one study, the test split kept for the end, and a final comparison over seeds."""

import csv
import html
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.helpers import quiet, tk, tk_json, toy_task
from tests.postgres import postgres_server
from toolkit.runs.pipeline import run_task
from toolkit.runs.tune_trial import TrialRun

# Two epochs of tiny runs; only the learning rate is searched (every other default key is fixed by --set).
SMALL = ["--set", "epochs=2", "--set", "max_length=32", "--set", "linear_baseline=false", "--set", "batch_size=8",
         "--set", "warmup_ratio=0", "--set", "weight_decay=0.01"]
FAULTY = '''
from toolkit.api import hookimpl

@hookimpl(tryfirst=True)
def tk_load_dataset(dataset, source, task):
    if task is not None and task.learning_rate == 0.0123:
        raise RuntimeError("injected fault: this configuration raises")
    return None
'''


def tune_args(output, *more):
    return ["tune", "toy", *SMALL, "--output", output, *more]


def trials_of(tune_dir):
    return {t["number"]: t for t in json.loads((tune_dir / "tune.json").read_text())["trials"]}


def trial_runs(tune_dir):
    """Every trial's run folder: trials/NNN/RUN."""
    return sorted(p.parent for p in (tune_dir / "trials").glob("*/*/config.json"))


@pytest.fixture
def faulty(project):
    (project / "faulty.py").write_text(FAULTY)
    tasks = project / "tasks.toml"
    tasks.write_text(tasks.read_text().replace('plugins = ["toy_plugin"]', 'plugins = ["toy_plugin", "faulty"]'))
    return project


@pytest.mark.slow
def test_a_study_prunes_records_failures_keeps_the_test_split_and_compares_over_seeds(faulty):
    """Trial 0 is the task's own configuration, then the --try ones in order: 1e-3 trains normally; 3.0 sends
    the validation loss to several times ln 2 in its first epoch, far above the two finished trials' median
    (about ln 2), so the pruner stops it there on any CPU; 0.0123 makes the faulty plugin raise."""
    document, stderr = tk_json(*tune_args(faulty / "runs", "--trials", "4", "--space",
                                          "learning_rate=1e-3..3.0:log", "--try", "learning_rate=1e-3",
                                          "--try", "learning_rate=3.0", "--try", "learning_rate=0.0123", "--top", "1",
                                          "--seeds", "2"))
    tune_dir = Path(document["tune_dir"])
    assert "--seeds 2: the final verdict's interval uses Student's t with one degree of freedom" in stderr
    # a finished trial's line says what it scored on validation, so one that learned nothing shows it then
    assert re.search(r"Trial 1: validation loss \d\.\d{4} \(epoch \d; val acc \d\.\d{3}, val f1 \d\.\d{3}", stderr)
    trials = trials_of(tune_dir)
    assert [trials[n]["state"] for n in range(4)] == ["complete", "complete", "pruned", "failed"]
    assert trials[0]["default"] and trials[0]["params"] == {"learning_rate": 2e-3}
    assert list(trials[2]["epochs"]) == ["1"] and trials[2]["epochs"]["1"] > 2 * 0.6932
    assert "injected fault: this configuration raises" in trials[3]["error"]
    assert "\n" not in trials[3]["error"]
    assert document["counts"] == {"complete": 2, "pruned": 1, "failed": 1, "interrupted": 0, "running": 0}

    # The search never scored the test split: trial folders hold validation numbers and no test output.
    runs = trial_runs(tune_dir)
    assert [run.parent.name for run in runs] == ["000", "001", "002"]  # trial 3 raised before its run folder
    assert trials[3]["run_dir"] is None
    assert "RuntimeError: injected fault" in (tune_dir / "trials" / "003" / "log.txt").read_text()
    for run in runs:
        assert not (run / "metrics.json").exists() and not (run / "predictions.csv").exists()
        assert not (run / "model").exists()
    statuses = {json.loads((run / "status.json").read_text())["status"] for run in runs}
    assert statuses == {"trial", "pruned"}
    pruned = next(run for run in runs if json.loads((run / "status.json").read_text())["status"] == "pruned")
    assert json.loads((pruned / "trial.json").read_text())["pruned_after"] == 1
    assert len(json.loads((pruned / "history.json").read_text())) == 1

    # The final comparison: the best non-default configuration (trial 1) and the default, two new seeds each.
    final = document["final"]
    assert set(final["configs"]) == {"default", "trial 1"}
    assert final["seeds"] == [2, 3]  # the task's seed is 1: the search trained with it, the final runs do not
    for label, config in final["configs"].items():
        assert len(config["runs"]) == 2
        seeds = {json.loads((Path(run) / "config.json").read_text())["task"]["seed"] for run in config["runs"]}
        assert seeds == {2, 3}
        assert all((Path(run) / "metrics.json").exists() for run in config["runs"])
    # ... on the search's split: the test rows of every final run are the rows the search held out at seed 1
    finals = [Path(run) for config in final["configs"].values() for run in config["runs"]]
    assert {json.loads((run / "config.json").read_text())["task"]["split_seed"] for run in finals} == {1}
    tested = [sorted(row["text"] for row in csv.DictReader(open(run / "predictions.csv", encoding="utf-8")))
              for run in finals]
    assert all(rows == tested[0] for rows in tested)
    [versus] = final["versus_default"]
    assert versus["seeds"] == 2 and versus["ci"][0] <= versus["difference"] <= versus["ci"][1]
    assert versus["sentence"] in document["summary"]
    # what the final runs' own reports warn of reaches the summary (a verdict between two useless models
    # must not read as one between two good ones)
    firsts = [Path(config["runs"][0]) for config in final["configs"].values()]  # its wording is the one shown
    warned = [w for run in firsts for w in json.loads((run / "metrics.json").read_text())["warnings"]]
    assert warned and all(any(line.endswith(w) for line in final["warnings"]) for w in warned)
    assert all(line in document["summary"] for line in final["warnings"])
    assert ("beats the default by" in versus["sentence"]) == (versus["verdict"] == "better")
    assert ("not distinguishable from the default" in versus["sentence"]) == (versus["verdict"] == "noise")
    page = (tune_dir / "report.html").read_text()
    assert "Optimisation history" in page and "pruned after epoch 1" in page and "injected fault" in page
    assert versus["sentence"].split(" (")[0] in page
    # the best trial's learning rate (trial 0's 2e-3 or trial 1's 1e-3) lies in the bottom tenth of the range
    [edge] = document["edges"]
    assert edge.startswith("The best trial's learning_rate (0.00") and "at the bottom of the searched range " \
        "0.001..3:log" in edge and edge.endswith("(--space learning_rate=0.00033..3:log).")
    assert html.escape(edge) in page
    use = final["recommended"]
    assert use["run_dir"] in final["configs"][use["label"]]["runs"] and document["summary"][-1] == use["sentence"]

    # Running the same command again continues the study: nothing is trained again.
    again, _ = tk_json(*tune_args(faulty / "runs", "--trials", "4", "--space", "learning_rate=1e-3..3.0:log",
                                  "--try", "learning_rate=1e-3", "--try", "learning_rate=3.0",
                                  "--try", "learning_rate=0.0123", "--top", "1", "--seeds", "2"))
    assert trial_runs(tune_dir) == runs
    assert again["final"]["configs"] == final["configs"]


def test_a_trial_listens_to_its_epochs_and_ends_pruned_without_reading_the_test_split(project, pm, monkeypatch,
                                                                                       engine):
    """In process, with a real Optuna trial whose pruner stops every trial after its first epoch: the run
    ends pruned after epoch 1 on either engine, and nothing predicts on the test split or calibrates."""
    import toolkit.runs.pipeline as pipeline

    predicted = []
    monkeypatch.setattr(pipeline, "predict_probabilities", lambda *a, **k: predicted.append(1))
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any loss is above 0
    trial = study.ask()
    listener = TrialRun(trial, "loss", trial.number, {})
    outcome = run_task(pm, toy_task(project, epochs=3, linear_baseline=False, engine=engine), output=project / "runs",
                       base=project, progress=quiet(), trial=listener)
    assert outcome.status == "pruned" and outcome.metrics["pruned_after"] == 1
    assert predicted == []
    assert list(study.trials[0].intermediate_values) == [1]
    assert json.loads((outcome.run_dir / "status.json").read_text())["status"] == "pruned"
    assert not (outcome.run_dir / "checkpoints").exists()


def start_tuner(project, *args):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.Popen([sys.executable, "-m", "toolkit", *args], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(condition, seconds=240):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_tuner_resumes_without_running_finished_trials_again(project):
    args = tune_args(project / "runs", "--trials", "2", "--space", "learning_rate=1e-3..2e-3:log", "--top", "0")
    tune_dir = project / "runs" / "tune-toy"
    tuner = start_tuner(project, *args)
    wait_for(lambda: (tune_dir / "trials" / "000" / "result.json").exists()  # trial 1 training: its folder made
             and any((tune_dir / "trials" / "001").glob("*/config.json")) or tuner.poll() is not None)
    assert tuner.poll() is None, tuner.stderr.read().decode()
    os.killpg(tuner.pid, signal.SIGKILL)  # the tuner and its trial, mid-trial
    tuner.wait()
    first = trial_runs(tune_dir)
    finished = first[0]
    assert json.loads((finished / "status.json").read_text())["status"] == "trial"
    stamp = (finished / "trial.json").stat().st_mtime_ns

    result = tk(*args)
    assert result.exit_code == 0, result.output
    assert "Trial 1 was left running by a worker that stopped: marked interrupted." in result.output
    assert "Continuing the study: 1 complete, 1 interrupted (not counted) of 2 trials; 1 to run." in result.output
    trials = trials_of(tune_dir)
    assert trials[0]["state"] == "complete" and trials[1]["state"] == "interrupted"
    assert trials[2]["state"] in ("complete", "pruned", "failed") and len(trials) == 3
    assert (finished / "trial.json").stat().st_mtime_ns == stamp  # trial 0 was not run again
    assert [run.parent.name for run in trial_runs(tune_dir)] == ["000", "001", "002"]
    killed = next((tune_dir / "trials" / "001").glob("*/status.json"))
    assert json.loads(killed.read_text())["status"] == "interrupted"
    # a trial's run or the tune folder where a run is needed: named as what they are, not as damaged runs
    said = tk("report", finished)
    assert said.exit_code == 1 and "is a tk tune trial's run, scored on validation alone" in said.output
    said = tk("run", "--resume", finished)
    assert said.exit_code == 1 and "is a tk tune trial's run, which is never resumed: run the same tk tune" in said.output
    said = tk("compare", tune_dir, finished)
    assert said.exit_code == 1 and f"{tune_dir} is a tk tune folder, not a run: its final runs are in" in said.output
    page = (tune_dir / "report.html").read_text()  # --trials 2: the interrupted one is not counted, nor ranked
    assert "; 2 trials and 1 interrupted (not counted).</p>" in page
    assert re.search(r'<td class="num">1</td><td dir="auto">interrupted</td><td dir="auto"></td><td dir="auto">'
                     r'[\d.e-]+</td><td dir="auto">its worker stopped; it does not count', page)


@pytest.mark.slow
def test_a_tune_stopped_in_a_final_run_goes_on_from_it_when_run_again(project):
    """A Ctrl-C in a final run: the advice is to run tk tune again (the run's own 'tk run ...' advice, printed
    before, named a task tasks.toml lacks for a tune over --data), and the next attempt resumes that run from
    its last finished epoch rather than leaving it behind and starting another."""
    assert SMALL[:2] == ["--set", "epochs=2"]
    args = ["tune", "toy", *SMALL[2:], "--set", "epochs=40", "--set", "patience=0", "--pruner", "none",
            "--trials", "2", "--space", "learning_rate=1e-3..3e-3:log", "--top", "1", "--seeds", "1",
            "--output", project / "runs"]
    final = project / "runs" / "tune-toy" / "final"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    tuner = subprocess.Popen([sys.executable, "-m", "toolkit", *map(str, args)], cwd=project, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for(lambda: any(final.glob("*/checkpoints/*")) or tuner.poll() is not None, seconds=600)
    os.kill(tuner.pid, signal.SIGINT)
    said = tuner.communicate(timeout=300)[0]
    assert tuner.returncode == 130, said[-3000:]
    assert "Interrupted. Run the same tk tune command again: the final runs that are complete are reused" in said
    assert "tk run" not in said.split("Final run:")[-1]
    [stopped] = [run for run in final.glob("*/") if run.is_dir()]
    assert json.loads((stopped / "status.json").read_text())["status"] == "interrupted"

    result = tk(*args)
    assert result.exit_code == 0, result.output
    assert f"Resuming {stopped} from its last finished epoch" in result.output
    record = json.loads((final / "final.json").read_text())
    assert stopped.name in record["default"].values()
    statuses = {json.loads((run / "status.json").read_text())["status"] for run in final.glob("*/") if run.is_dir()}
    assert statuses == {"complete"}


@pytest.mark.slow
def test_a_trial_stops_when_its_tuner_is_killed_and_the_default_is_queued_again(project):
    """SIGKILL to the tuner alone (not its process group): its trial used to train on as an orphan and write a
    result the next tuner had already marked interrupted, and the task's own configuration was never trained.
    Now the trial notices its parent is gone and stops as a Ctrl-C would; the next tuner queues the default."""
    args = tune_args(project / "runs", "--trials", "1", "--top", "0", "--set", "epochs=40", "--space",
                     "learning_rate=1e-3..3e-3:log")  # holds the task's 2e-3: trial 0 trains the default
    tune_dir = project / "runs" / "tune-toy"
    tuner = start_tuner(project, *args)
    wait_for(lambda: any((tune_dir / "trials" / "000").glob("*/config.json")) or tuner.poll() is not None)
    assert tuner.poll() is None, tuner.stderr.read().decode()
    os.kill(tuner.pid, signal.SIGKILL)
    tuner.wait()
    status = next((tune_dir / "trials" / "000").glob("*/config.json")).parent / "status.json"
    wait_for(lambda: json.loads(status.read_text())["status"] == "interrupted", seconds=60)

    result = tk(*args)
    assert result.exit_code == 0, result.output
    assert "Trial 0 was left running by a worker that stopped: marked interrupted." in result.output
    assert "Queued ahead of the sampler: the task's own configuration" in result.output
    trials = trials_of(tune_dir)
    assert trials[0]["state"] == "interrupted" and trials[0]["default"] and len(trials) == 2
    assert trials[1]["state"] == "complete" and trials[1]["default"]


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_storage(request, tmp_path):
    """A study storage two workers share: a SQLite file, and a real PostgreSQL server (docs/tune.md's two
    machines) where PostgreSQL is installed."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        with postgres_server() as url:
            yield url


@pytest.mark.slow
def test_two_workers_on_one_storage_run_n_trials_in_total_none_twice(project, shared_storage):
    storage = shared_storage
    workers = [start_tuner(project, *tune_args(project / f"worker{i}", "--trials", "3", "--storage", storage,
                                               "--space", "learning_rate=1e-3..2e-3:log", "--top", "0"))
               for i in (1, 2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read().decode()
    study = optuna.load_study(study_name="tk-tune-toy", storage=storage)
    ran = [t for t in study.trials if t.user_attrs.get("tk_state") != "surplus"]
    assert len(ran) == 3 and all(t.user_attrs.get("tk_state") in ("complete", "pruned", "failed") for t in ran)
    folders = [p for i in (1, 2) for p in trial_runs(project / f"worker{i}" / "tune-toy")]
    assert sorted(int(p.parent.name) for p in folders) == sorted(t.number for t in ran)  # each trial run once
    assert {t.user_attrs["tk_worker"].rpartition(":")[2] for t in ran} <= {str(w.pid) for w in workers}


@pytest.mark.parametrize(("args", "message"), [
    (["--space", "learning_rate=1e-5...1e-3"], "a range is LOW..HIGH with two dots"),
    (["--space", "learnig_rate=1e-5..1e-3"], "unknown key 'learnig_rate'. Did you mean 'learning_rate'?"),
    (["--space", "seed=1..5"], "tk tune never searches 'seed'"),
    (["--space", "learning_rate=1e-3..1e-5"], "the range's low end must be below its high end"),
    (["--space", "learning_rate=0..1e-3:log"], "a log scale needs a low end above 0"),
    (["--space", "learning_rate=1e-5..1e-3:lin"], "unknown scale 'lin'"),
    (["--space", "batch_size=8,0"], "batch_size' must be above 0"),
    (["--space", "learning_rate=1e-3..2e-3", "--try", "learning_rate=5"], "is outside the space"),
    (["--space", "learning_rate=1e-3..2e-3", "--try", "learning_rate=abc"], "learning_rate='abc' is not a number"),
    (["--space", "learning_rate=1e-3..2e-3", "--try", "learning_rate=1e-3,learning_rate=2e-3"],
     "'learning_rate' is given twice; a configuration has one value of it (give another --try for the other)."),
    (["--space", "text_column=a,b"], "does not search 'text_column': it changes the data each trial reads"),
    (["--space", "validation_size=10,20"], "does not search 'validation_size': it changes which rows"),
    (["--space", "class_weights=none,balanced"], "each weighting would be ranked on its own loss"),
    (["--set", "select_metric=f1_macro", "--space", "class_weights={neg=2.0}"], "not a table or a list"),
    (["--space", "max_length=16..100000"], "max_length = 100000 is above the"),
    (["--space", "max_length=1..32"], "max_length = 1 leaves no room for text"),
    (["--trials", "0"], "--trials 0: a study needs at least one trial"),
    (["--set", "max_length=32", "--space", "max_length=16,32"], "max_length: given with --set (not searched) and "
                                                                 "with --space (searched). Use one."),
    (["--storage", "sqlite:////no/such/folder/study.db"], "Cannot open the study storage sqlite:////no/such"),
    (["--storage", "postgresql://tk:secret@127.0.0.1:1/tk"], "Cannot open the study storage postgresql://tk:***@"),
])
def test_bad_input_is_one_line_before_any_training(project, args, message):
    result = tk(*tune_args(project / "runs", *args))
    assert result.exit_code == 1, result.output
    assert message in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and len([line for line in lines if "Error" in line]) == 1
    assert "secret" not in result.output
    assert not (project / "runs" / "tune-toy" / "trials").exists()


def test_a_file_no_run_can_use_is_refused_before_any_trial(project):
    """Every trial failed on it, and tk tune exited 0 with a tune folder of failed trials."""
    (project / "one.csv").write_text("text,label\n" + "".join(f"question {i},DESC\n" for i in range(40)))
    result = tk("tune", "--data", project / "one.csv", "--trials", "2", "--output", project / "runs")
    assert result.exit_code == 1, result.output
    assert "every training row is labelled 'DESC'" in result.output and "Trial 0" not in result.output
    assert not (project / "runs" / "tune-one").exists()


def test_another_study_gets_a_tune_folder_of_its_own():
    """--study other into the same --output overwrote the first study's trial records and reused its final runs."""
    from toolkit.runs.tune import tune_folder_name

    assert tune_folder_name("sms", "tk-tune-sms") == "tune-sms"
    assert tune_folder_name("sms", "other") == "tune-sms-other"
    assert tune_folder_name("sms", "my study/2") == "tune-sms-my-study-2"


def test_a_missing_database_driver_is_named_with_its_package(project):
    pytest.importorskip("sqlalchemy")
    if importlib.util.find_spec("pymysql") is not None:
        pytest.skip("PyMySQL is installed here: the storage would fail on the connection, not the driver")
    result = tk(*tune_args(project / "runs", "--storage", "mysql+pymysql://tk:secret@127.0.0.1:1/tk"))
    assert result.exit_code == 1 and "Install its Python driver (pymysql): pip install PyMySQL" in result.output
    assert "secret" not in result.output


def seed_runs(label, correct_share, seeds=(2, 3, 4), rows=200):
    """Hand-made final runs: on each seed's test rows (the same for every configuration of that seed), the
    first ``correct_share`` of the rows right, the rest wrong."""
    from toolkit.evaluation.paired import Scored
    from toolkit.runs.compare import RunSummary

    runs = []
    for seed in seeds:
        labels = np.random.default_rng(seed).integers(0, 2, rows)
        predictions = labels.copy()
        wrong = np.arange(rows) >= round(correct_share * rows)
        predictions[wrong] = 1 - predictions[wrong]
        metrics = {"select_metric": "loss", "per_class": {"neg": {"support": 100}, "pos": {"support": 100}},
                   "accuracy": float((predictions == labels).mean()), "f1": 0.0, "train_seconds": 1.0,
                   "history": [{"validation_loss": 0.5}]}  # what tk sweep's table reads besides
        runs.append(RunSummary(f"{label} (seed {seed})", metrics, predictions == labels, f"rows-{seed}",
                               settings={"seed": seed}, scored=Scored(labels, predictions, 2)))
    return runs


def test_the_verdict_against_the_default_follows_the_seeds_and_the_rows():
    from toolkit.runs.tune_final import against_default

    default = seed_runs("default", 0.70)
    better = against_default(seed_runs("trial 4", 0.85), default, "trial 4", 0)
    assert better["verdict"] == "better" and better["seeds"] == 3
    assert better["difference"] == pytest.approx(0.15) and 0 < better["ci"][0] < 0.15 < better["ci"][1]
    assert better["sentence"].startswith("The best configuration (trial 4) beats the default by +0.150 accuracy [")
    same = against_default(seed_runs("trial 5", 0.70), default, "trial 5", 1)
    assert same["verdict"] == "noise" and same["difference"] == 0
    assert "Configuration #2 (trial 5) is not distinguishable from the default: +0.000 accuracy" in same["sentence"]
    worse = against_default(seed_runs("trial 6", 0.55), default, "trial 6", 2)
    assert worse["verdict"] == "worse" and "is worse than the default" in worse["sentence"]
    # One seed far better and two slightly worse: the seeds disagree, so the interval over seeds spans 0.
    mixed = seed_runs("trial 7", 0.95, seeds=(2,)) + seed_runs("trial 7", 0.68, seeds=(3, 4))
    assert against_default(mixed, default, "trial 7", 0)["verdict"] == "noise"
    # Two seeds that disagree: t with one degree of freedom; the interval stops where a difference must.
    two = against_default(seed_runs("trial 8", 1.0, seeds=(2,)) + seed_runs("trial 8", 0.70, seeds=(3,)),
                          default, "trial 8", 0)
    assert two["seeds"] == 2 and two["ci"][1] == 1.0 and two["ci"][0] < 0
    assert "one degree of freedom" in two["sentence"] and "--seeds 3 or more" in two["sentence"]


def test_a_configuration_that_beats_the_default_has_its_own_runs_warnings_said_beside_the_verdict(tmp_path):
    """'Beats the default' read as a success on TREC while neither configuration ever predicted one class and a
    linear baseline was as good: the verdict now says so in a line of its own, and what rows it covers."""
    from toolkit.runs.tune_final import DEFAULT, compare_final, gist

    warned = ["The model never predicts 1 of the 6 classes in these rows: 'ABBR' (7 rows). Its recall and F1 are "
              "0, so macro recall is at most 0.833.",
              "The linear baseline (TF-IDF + logistic regression) is as good as the fine-tune within noise "
              "(fine-tune minus linear model, macro F1: -0.031 [-0.074, +0.039], paired bootstrap): the fine-tune "
              "is not shown to be worth its cost."]
    best = seed_runs("trial 4", 0.85)
    for number, run in enumerate(best):
        run.path = tmp_path / str(number)
        run.path.mkdir()
        (run.path / "metrics.json").write_text(json.dumps({"warnings": warned}))
    found = compare_final({DEFAULT: seed_runs(DEFAULT, 0.70), "trial 4": best}, ["trial 4"])
    assert found["versus_default"][0]["verdict"] == "better"
    assert "95% interval from the seeds' spread and the 200 test rows" in found["summary"][0]
    assert found["summary"][1] == (
        "Beating the default does not make trial 4 good: its final runs warn that the model never predicts 1 of "
        "the 6 classes in these rows; the linear baseline is as good as the fine-tune within noise (the warnings "
        "below).")
    assert gist("Accuracy 0.800 does not beat always predicting 'x' (0.810 on these rows; p = 0.3).") == \
        "accuracy 0.800 does not beat always predicting 'x'"
    # not a success, or a success without warnings: the verdict stands alone
    assert len(compare_final({DEFAULT: seed_runs(DEFAULT, 0.70), "trial 5": seed_runs("trial 5", 0.85)},
                             ["trial 5"])["summary"]) == 1


def test_the_model_to_use_is_the_winners_run_with_the_best_validation_value_else_the_defaults(tmp_path):
    from toolkit.runs.tune_final import DEFAULT, compare_final, recommended

    def with_losses(runs, losses):
        for run, loss in zip(runs, losses):
            run.path = tmp_path / run.label
            run.metrics = {**run.metrics, "best_epoch": 2,
                           "history": [{"epoch": 1, "validation_loss": 0.1}, {"epoch": 2, "validation_loss": loss}]}
        return runs

    groups = {DEFAULT: with_losses(seed_runs(DEFAULT, 0.70), [0.2, 0.3, 0.4]),
              "trial 4": with_losses(seed_runs("trial 4", 0.85), [0.5, 0.3, 0.4])}
    found = compare_final(groups, ["trial 4"])
    use = recommended(found["versus_default"], groups, "loss")
    # the kept epoch's loss decides (epoch 1's 0.1 is not kept), never a test score
    assert use["label"] == "trial 4" and use["seed"] == 3 and use["run_dir"] == str(tmp_path / "trial 4 (seed 3)")
    assert use["sentence"].startswith(f"Model to use: {tmp_path / 'trial 4 (seed 3)'} (trial 4, seed 3: it beats "
                                      "the default; of its 3 final runs, the one with the best validation loss at "
                                      "its kept epoch; chosen on validation, never on the test split).")
    groups["trial 4"] = with_losses(seed_runs("trial 4", 0.70), [0.5, 0.3, 0.4])  # no better than the default
    use = recommended(compare_final(groups, ["trial 4"])["versus_default"], groups, "loss")
    assert use["label"] == DEFAULT and use["seed"] == 2 and "no configuration was shown to beat it" in use["sentence"]


def test_several_configurations_against_the_default_get_bonferroni_intervals():
    """Three configurations each compared with the default: three chances of a 'beats' by luck, so each interval
    is 98.3%, wider than one configuration's 95%, and the sentence names its level."""
    from toolkit.runs.tune_final import DEFAULT, compare_final

    groups = {DEFAULT: seed_runs(DEFAULT, 0.70), "trial 4": seed_runs("trial 4", 0.80),
              "trial 5": seed_runs("trial 5", 0.72), "trial 6": seed_runs("trial 6", 0.69)}
    alone = compare_final(groups, ["trial 4"])["versus_default"][0]
    three = compare_final(groups, ["trial 4", "trial 5", "trial 6"])["versus_default"]
    assert alone["level"] == 0.95 and "95% interval" in alone["sentence"] and "Bonferroni" not in alone["sentence"]
    assert [item["level"] for item in three] == [pytest.approx(1 - 0.05 / 3, abs=1e-6)] * 3
    assert three[0]["difference"] == alone["difference"]
    assert three[0]["ci"][0] < alone["ci"][0] and three[0]["ci"][1] > alone["ci"][1]
    assert "98.3% interval" in three[0]["sentence"] and "3 configurations are each compared" in three[0]["sentence"]


def test_the_interval_against_the_default_adds_the_seeds_spread_with_t_and_the_rows_noise():
    from scipy import stats

    from toolkit.runs.tune_final import seed_and_row_interval

    differences = [0.05, 0.06, 0.00]
    replicates = [d + np.tile([-0.01, 0.01], 1000) for d in differences]  # each seed's rows: variance 1e-4
    row_variance = float(np.var(replicates[0], ddof=1))
    half = np.sqrt(stats.t.ppf(0.975, 2) ** 2 * np.var(differences, ddof=1) / 3
                   + stats.norm.ppf(0.975) ** 2 * row_variance)
    low, high = seed_and_row_interval(differences, replicates)
    assert (low, high) == pytest.approx((np.mean(differences) - half, np.mean(differences) + half))
    assert low < 0 < high  # three seeds that disagree this much leave the gain unproven (t with 2 df is 4.3)
    one = seed_and_row_interval([0.05], replicates[:1])  # one seed: the rows' noise alone
    assert one == pytest.approx((0.05 - 1.96 * np.sqrt(row_variance), 0.05 + 1.96 * np.sqrt(row_variance)), abs=1e-4)


def test_a_trial_that_learned_nothing_says_so_on_its_line():
    from toolkit.runs.tune_study import completed

    found = {"metric": "loss", "value": 0.36841, "best_epoch": 2, "validation_accuracy": 0.8637,
             "validation_f1": 0.0}
    assert completed(found) == ("validation loss 0.3684 (epoch 2; val acc 0.864, val f1 0.000: it learned nothing "
                                "of the class F1 is measured on)")
    assert completed({**found, "validation_f1": 0.8}).endswith("val f1 0.800)")


def test_the_final_table_shows_the_metric_it_tests_and_a_constant_group_raises_no_warning(recwarn):
    from toolkit.runs.compare import format_group_rows, group_rows, welch_p

    one_class = 0.4634146341463415
    assert 0 < welch_p([one_class, one_class * (1 + 1e-16)], [0.80, 0.85]) < 0.05
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # scipy's cancellation warning
    groups = {"default": seed_runs("default", 0.70), "trial 4": seed_runs("trial 4", 0.60)}
    for runs, f1 in ((groups["default"], 0.61), (groups["trial 4"], 0.0)):
        for run in runs:
            run.metrics.update({"f1": f1, "f1_macro": 0.3 + f1 / 2, "train_seconds": 1.0,
                                "select_metric": "f1_macro", "history": [{"validation_loss": 0.5}]})
    table = format_group_rows(group_rows(groups)).splitlines()
    assert "macro F1" in table[0] and table[0].endswith("(Welch's t-test on test f1_macro)")
    assert "0.6050 ± 0.0000" in table[2]  # the macro F1 column, not the F1 of one class (0.6100)
    assert "test scores on each run's test rows" in table[-1]  # each seed its own split here


def test_the_final_table_says_when_every_run_scored_the_same_rows_and_which_were_still_improving():
    """tk tune's final runs share the search's split: 'each run's test rows' read as if they differed. And
    'underfit 0/3' beside runs that each said 'Still improving' read as a contradiction."""
    from toolkit.runs.compare import format_group_rows, group_rows

    groups = {"default": seed_runs("default", 0.70), "trial 4": seed_runs("trial 4", 0.80)}
    for runs in groups.values():
        for run in runs:
            run.test_fingerprint = "the search's test rows"
    for run in groups["default"][:2]:
        run.metrics["underfitting"] = {"underfitting": False, "still_improving": True}
    rows = group_rows(groups)
    assert rows[0]["test_rows"] == {"fingerprint": "the search's test rows", "count": 200}
    assert [row["still_improving_runs"] for row in rows] == [2, 0]
    table = format_group_rows(rows).splitlines()
    assert "test scores on the same 200 test rows for every run" in table[-2]
    assert table[-1] == ("Still improving at their last epoch (learning, so not counted as underfit; more epochs "
                         "may help): default 2/3.")


def test_a_best_value_at_the_end_of_its_range_is_said_with_a_wider_range(project):
    from toolkit.runs.tune_space import DEFAULT_SPACE, edge_notes

    task = toy_task(project)
    best = {"learning_rate": 9.5e-5, "batch_size": 32, "epochs": 5, "warmup_ratio": 0.0, "weight_decay": 0.05}
    notes = edge_notes(best, DEFAULT_SPACE, task, kept_last_epoch=True)
    assert notes == [
        "The best trial's learning_rate (9.5e-05) is at the top of the searched range 1e-05..0.0001:log: a better "
        "value may lie above it, which no trial of this space can show; a wider range would tell (--space "
        "learning_rate=1e-05..0.0003:log).",
        "The best trial's epochs (5) is at the top of the searched range 2..5: a better value may lie above it, "
        "which no trial of this space can show; a wider range would tell (--space epochs=2..10)."]
    # a run keeps its best epoch: one that peaked before its last had epochs to spare
    assert len(edge_notes(best, DEFAULT_SPACE, task, kept_last_epoch=False)) == 1
    # inside the range, a range from 0 at 0 (no warmup), a choice at the end of its list, the fewest epochs: nothing
    inside = {**best, "learning_rate": 3e-5, "epochs": 2, "warmup_ratio": 0.0, "batch_size": 8}
    assert edge_notes(inside, DEFAULT_SPACE, task, kept_last_epoch=True) == []
    low = edge_notes({**inside, "learning_rate": 1.1e-5, "weight_decay": 0.1}, DEFAULT_SPACE, task, True)
    assert [note.split(": a better")[0] for note in low] == [
        "The best trial's learning_rate (1.1e-05) is at the bottom of the searched range 1e-05..0.0001:log",
        "The best trial's weight_decay (0.1) is at the top of the searched range 0..0.1"]
    assert low[0].endswith("(--space learning_rate=3.3e-06..0.0001:log).")
    assert low[1].endswith("(--space weight_decay=0..0.15).")


def test_the_default_space_leaves_out_keys_set_and_pins_single_values(project):
    from toolkit.runs.tune_space import DEFAULT_SPACE, parse_space, pinned, search_space

    task = toy_task(project)
    overrides = parse_space(("learning_rate=1e-5..1e-3:log", "batch_size=16", "epochs=2..4"), task)
    space = search_space(overrides, {"weight_decay"}, task, (32, 64))
    assert set(space) == {"learning_rate", "epochs", "warmup_ratio", "max_length"}
    assert space["learning_rate"].log and space["epochs"].integer and space["max_length"].choices == (32, 64)
    assert pinned(overrides) == {"batch_size": 16}
    assert set(DEFAULT_SPACE) == {"learning_rate", "batch_size", "epochs", "warmup_ratio", "weight_decay"}



@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_worker_that_asks_after_the_nth_trial_closes_its_trial_untrained(tmp_path, monkeypatch):
    """Trial numbers come from the storage one at a time. Running trials of other workers count towards N;
    and when another worker asks between this worker's count and its ask (the race of two workers, played
    here in order on a real SQLite study), this worker's trial is past the N-th: closed as surplus, never
    launched."""
    from toolkit.runs.tune_space import Dimension
    from toolkit.runs.tune_study import open_study, run_trials, state_of

    pruner = {"kind": "median", "startup": 2, "after": 1}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study, created = open_study(url, "s", "minimize", pruner, 0, {"task": "t"})
    assert created
    space = {"learning_rate": Dimension("learning_rate", 1e-5, 1e-3, log=True)}
    launched = []

    def launch(trial, params):
        launched.append(trial.number)
        return {"state": "complete", "value": 0.5}

    study.ask().set_user_attr("tk_worker", "another-machine:1")  # running elsewhere (no process check there)
    assert run_trials(study, 1, launch, space, lambda text: None) == 0 and launched == []  # it counts
    assert run_trials(study, 2, launch, space, lambda text: None) == 1 and launched == [1]

    asked = study.ask

    def another_worker_asks_first(*args, **kwargs):
        asked().set_user_attr("tk_worker", "another-machine:2")
        return asked(*args, **kwargs)

    monkeypatch.setattr(study, "ask", another_worker_asks_first)
    assert run_trials(study, 3, launch, space, lambda text: None) == 0 and launched == [1]
    again, created = open_study(url, "s", "minimize", pruner, 0, {"task": "t"})
    assert not created
    assert [state_of(t) for t in again.get_trials(deepcopy=False)] == ["running", "complete", "running", "surplus"]


def test_a_resumed_study_proposes_configurations_it_has_not_tried(tmp_path):
    """TPE's proposals follow from its seed and the trials so far: a resumed study (or a second worker) seeded
    as the first was would propose the very configurations already trained."""
    from toolkit.runs.tune_space import Dimension
    from toolkit.runs.tune_study import open_study, run_trials

    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = {"learning_rate": Dimension("learning_rate", 1e-5, 1e-3, log=True)}
    tried = []

    def launch(trial, params):
        tried.append(params["learning_rate"])
        return {"state": "complete", "value": 0.5}

    for total in (3, 6):  # the first run of the command, then the same command with more trials
        study, _ = open_study(url, "s", "minimize", {"kind": "none"}, 0, {"task": "t"})
        run_trials(study, total, launch, space, lambda text: None)
    assert len(tried) == 6 and len(set(tried)) == 6, tried


def test_split_seed_keeps_the_split_while_seed_changes(project, pm):
    """tk tune's final runs vary seed over one split: the test rows the search never saw."""
    from toolkit.config import with_overrides
    from toolkit.data.loading import load_named
    from toolkit.data.splits import make_splits
    from toolkit.tasks_file import load_config

    task = load_config(project / "tasks.toml", pm).task("toy")
    labelled = load_named(pm, "toy", task_data=task.data, base=project, task=task).splits

    def rows(**keys):
        made = make_splits(labelled, with_overrides(task, keys)).splits
        return {name: sorted(made[name]["text"]) for name in ("train", "validation", "test")}

    assert rows(seed=7, split_seed=3) == rows(seed=3) != rows(seed=7)


def test_a_study_continues_only_on_the_same_data_and_keys_and_says_what_changed(tmp_path):
    from toolkit.errors import TkError
    from toolkit.runs.tune import data_digest
    from toolkit.runs.tune_study import open_study

    data = tmp_path / "sms.csv"
    data.write_text("text,label\na,ham\n")
    before = data_digest("sms.csv", tmp_path)
    data.write_text("text,label\nb,ham\n")  # the same name, other rows
    assert data_digest("sms.csv", tmp_path) != before

    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(url, "s", "minimize", {"kind": "none"}, 0, {"task": {"max_length": 32}, "data_content": before,
                                                           "space": {"epochs": "1..2"}})
    with pytest.raises(TkError, match=r"another data \(its content changed\), task \(max_length: 32, now 48\)"):
        open_study(url, "s", "minimize", {"kind": "none"}, 0,
                   {"task": {"max_length": 48}, "data_content": data_digest(str(data), None),
                    "space": {"epochs": "1..2"}})
    with pytest.raises(TkError, match=r"another space \(epochs: 1\.\.2, now 1\.\.3; warmup_ratio: not searched, "
                                      r"now 0\.\.0\.2\)"):
        open_study(url, "s", "minimize", {"kind": "none"}, 0, {"task": {"max_length": 32}, "data_content": before,
                                                               "space": {"epochs": "1..3", "warmup_ratio": "0..0.2"}})

    # another file (its content differs too): the file is what to say, with both names and how to start anew
    signature = {"task": {"max_length": 32}, "data": "sms.csv", "data_content": before, "space": {"epochs": "1..2"}}
    open_study(url, "t", "minimize", {"kind": "none"}, 0, signature)
    for other, named in (("spam.csv", "--data spam.csv"), (None, "the task's own data (no --data)")):
        with pytest.raises(TkError) as refused:
            open_study(url, "t", "minimize", {"kind": "none"}, 0, {**signature, "data": other, "data_content": "x"})
        assert str(refused.value) == (
            f"The study 't' in {url} was made for another data file: --data sms.csv, not {named}. A study "
            f"continues only on the data it started on: pass another --output (or --study) to start a new study on "
            f"{named}.")
    # the same bytes by another path: the study goes on
    for path in ("./sms.csv", str(data)):
        assert open_study(url, "t", "minimize", {"kind": "none"}, 0, {**signature, "data": path})[1] is False
    # ... also where the task is the file's own (tk tune --data FILE with no task: its data key is the file's
    # resolved path), as on another machine's mount or a folder copied elsewhere
    mine = {**signature, "task": {"max_length": 32, "data": "/work/a/sms.csv"}, "data": "/work/a/sms.csv"}
    open_study(url, "u", "minimize", {"kind": "none"}, 0, mine)
    moved = {**mine, "task": {"max_length": 32, "data": "/mnt/b/sms.csv"}, "data": "/mnt/b/sms.csv"}
    assert open_study(url, "u", "minimize", {"kind": "none"}, 0, moved)[1] is False


def test_a_plugin_key_is_searched_like_a_core_key(project):
    """A plugin key (the eager engine's fast_dropout): parsed, its default read from the task's plugin values."""
    from toolkit.runs.tune import with_defaults
    from toolkit.runs.tune_space import parse_space, search_space

    task = toy_task(project)
    space = search_space(parse_space(("fast_dropout=true,false",), task), set(), task, (32,))
    default = {key: task.describe()[key] for key in space}
    assert space["fast_dropout"].choices == (True, False) and default["fast_dropout"] is True
    assert with_defaults({"fast_dropout": False}, default, space)["fast_dropout"] is False


def test_a_try_leaves_the_keys_it_does_not_name_at_the_tasks_values(project):
    from toolkit.runs.tune import with_defaults
    from toolkit.runs.tune_space import parse_space, search_space

    task = toy_task(project)
    space = search_space(parse_space(("learning_rate=1e-5..1e-3:log", "warmup_ratio=0..0.2"), task), set(), task,
                         (32, 64))
    default = {key: getattr(task, key) for key in space}
    tried = with_defaults({"learning_rate": 9e-5}, default, space)
    assert tried["learning_rate"] == 9e-5
    assert all(tried[key] == default[key] for key in space if key != "learning_rate" and space[key].holds(default[key]))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_an_interrupted_default_or_try_is_queued_again_once(tmp_path):
    """The default's trial (or a --try's) interrupted: the continued study queues it again, once, ahead of the
    sampler; one that ended (complete, pruned, failed) is not trained again."""
    from toolkit.runs.tune import queue_firsts
    from toolkit.runs.tune_study import close, open_study, state_of

    url = f"sqlite:///{tmp_path / 'study.db'}"
    default, tried = {"learning_rate": 2e-3}, {"learning_rate": 1e-3}
    firsts = [(default, {"tk_default": True}), (tried, {})]
    study, created = open_study(url, "s", "minimize", {"kind": "none"}, 0, {"task": "t"})
    queue_firsts(study, firsts, created, lambda text: None)
    close(study, study.ask(), "interrupted", "its worker stopped")  # the default's trial
    close(study, study.ask(), "complete", value=0.5)  # the --try's
    said = []
    again, created = open_study(url, "s", "minimize", {"kind": "none"}, 0, {"task": "t"})
    queue_firsts(again, firsts, created, said.append)
    queue_firsts(again, firsts, created, said.append)  # a second worker, or the command run again
    waiting = [t for t in again.get_trials(deepcopy=False) if state_of(t) == "waiting"]
    assert [(t.system_attrs["fixed_params"], t.user_attrs) for t in waiting] == [(default, {"tk_default": True})]
    assert said == ["Queued ahead of the sampler: the task's own configuration (no trial of it has ended)."]


def test_a_trial_is_not_pruned_at_its_last_epoch(project, pm):
    """After the last epoch nothing is left to save: a one-epoch trial the pruner would stop ends complete."""
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # any loss is above 0
    trial = study.ask()
    outcome = run_task(pm, toy_task(project, epochs=1, linear_baseline=False), output=project / "runs",
                       base=project, progress=quiet(), trial=TrialRun(trial, "loss", trial.number, {}, epochs=1))
    assert outcome.status == "complete" and list(study.trials[0].intermediate_values) == [1]


def test_a_trial_killed_before_its_status_was_written_is_marked_interrupted(tmp_path):
    """A kill between config.json and status.json leaves a folder with no status: still the interrupted trial's."""
    from optuna.trial import TrialState

    from toolkit.runs.folders import run_status
    from toolkit.runs.tune_study import mark_interrupted_folders

    study = optuna.create_study()
    trial = study.ask()
    study._storage.set_trial_user_attr(trial._trial_id, "tk_state", "interrupted")
    study.tell(trial.number, state=TrialState.FAIL)
    run = tmp_path / "000" / "toy-20261206-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert run_status(run) == "incomplete"
    mark_interrupted_folders(tmp_path, study)
    assert run_status(run) == "interrupted" and not (run / "checkpoints").exists()


def test_an_interrupted_trial_says_to_run_tk_tune_again_not_tk_run(tmp_path):
    """A trial's log is read by someone whose command was tk tune: tk run --resume would finish the trial as a
    plain run, outside the study."""
    from toolkit.runs.endings import TUNE_AGAIN, interrupted
    from toolkit.training.progress import Progress

    said = []
    outcome = interrupted(tmp_path, "tk run --data sms.csv", Progress(said.append, bar=False), mark=False,
                          go_on=TUNE_AGAIN)
    assert outcome.status == "interrupted"
    assert said == ["Interrupted. Run the same tk tune command again: the study goes on with a new trial (a trial's "
                    "run is never resumed)."]


def test_the_median_pruner_needs_two_finished_trials_at_the_epoch():
    """Epochs searched: one finished trial trained 1 epoch, one 2. At epoch 2 a worse trial is not pruned on the
    'median' of one trial; at epoch 1, against two, it is."""
    from toolkit.runs.tune_study import pruner

    study = optuna.create_study(pruner=pruner({"kind": "median", "startup": 2, "after": 1}))
    for values in ([0.5], [0.5, 0.4]):
        trial = study.ask()
        for epoch, value in enumerate(values, 1):
            trial.report(value, epoch)
        study.tell(trial, values[-1])
    late = study.ask()
    late.report(0.45, 1)  # better than both at epoch 1
    assert not late.should_prune()
    late.report(0.45, 2)  # worse than the one trial that reached epoch 2
    assert not late.should_prune()
    early = study.ask()
    early.report(0.6, 1)  # worse than both at epoch 1
    assert early.should_prune()
