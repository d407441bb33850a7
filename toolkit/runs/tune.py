"""`tk tune`: a search over a task's hyperparameters (Optuna's TPE sampler, pruning on epochs), each trial a
process of its own, then the best configurations re-run over seeds and compared with the default.

The tune folder (``OUTPUT/tune-TASK``) holds the study (``study.db``, unless ``--storage`` names another),
one folder per trial (``trials/NNN/``: its spec, log, result and run folder), the final runs
(``final/``), ``tune.json`` and ``report.html``. Running the same command again continues the study.
The objective is the validation value of the metric the task selects epochs on; the test split is read
only by the final runs (``toolkit.runs.tune_final``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.config import TaskConfig, with_overrides
from toolkit.data.choose import folder_safe
from toolkit.errors import TkError
from toolkit.runs import trackers, tracking
from toolkit.runs.diagnoses import group_warnings
from toolkit.runs.folders import check_task_name, make_output_folder
from toolkit.runs.pipeline import check_before_loading, training_rows
from toolkit.runs.tune_final import (
    DEFAULT,
    compare_final,
    final_runs,
    ranked_configs,
    recommended,
)
from toolkit.runs.tune_final import describe as describe_values
from toolkit.runs.tune_report import render
from toolkit.runs.tune_space import (
    Dimension,
    check_lengths,
    describe,
    edge_notes,
    length_choices,
    measure_lengths,
    parse_try,
    pinned,
    search_space,
)
from toolkit.runs.tune_study import (
    COUNTED,
    fail_stale,
    launch_trial,
    mark_interrupted_folders,
    open_storage,
    open_study,
    redact,
    run_trials,
    state_of,
)
from toolkit.saving import write_json, write_text
from toolkit.training.interrupt import graceful_interrupts
from toolkit.training.progress import Progress

RECORD = "tune.json"


@dataclass(frozen=True)
class TuneRequest:
    """What `tk tune` was asked, parsed and checked."""

    task: TaskConfig
    tasks_path: Path
    overrides: dict[str, Dimension]  # --space
    fixed: frozenset[str]  # keys --set gave: not searched
    tries: tuple[str, ...]  # --try
    trials: int
    top: int
    seeds: int
    data: str | None
    base: Path | None
    output: Path
    storage: str | None
    study: str | None
    pruner: dict[str, Any]
    where: str | None = None


def run_tune(pm, request: TuneRequest, progress: Progress) -> tuple[Path, dict[str, Any]]:
    """The search (continued where a study exists), then the final comparison; returns the tune folder and
    what tune.json holds. A Ctrl-C stops it with the finished trials kept (KeyboardInterrupt)."""
    task = request.task
    if task.select_on == "test":
        raise TkError(f"task '{task.name}' has select_on = \"test\": tk tune searches on the validation split "
                      "and keeps the test split for the end. Pass --set select_on=validation.")
    check_task_name(task.name)
    tracking.require(task)
    name = request.study or f"tk-tune-{task.name}"
    tune_dir = make_output_folder(request.output) / tune_folder_name(task.name, name)
    if tune_dir.exists() and not tune_dir.is_dir():
        raise TkError(f"{tune_dir} is a file, not a tune folder. Pass --output DIR for another folder.")
    url = request.storage or f"sqlite:///{(tune_dir / 'study.db').resolve()}"
    if request.storage is not None:
        open_storage(url)  # an unreachable storage is said before any work
    space, base_task, tries = plan(pm, request, progress)
    metric = task.select_metric
    direction = "minimize" if metric == "loss" else "maximize"
    content = data_digest(request.data or task.data, request.base)
    signature = json.loads(json.dumps({"task": base_task.describe(), "space": describe(space), "metric": metric,
                                       "data": request.data, "data_content": content}, default=str))
    if request.storage is None:
        tune_dir.mkdir(parents=True, exist_ok=True)
    study, created = open_study(url, name, direction, request.pruner, task.seed, signature)
    tune_dir.mkdir(parents=True, exist_ok=True)
    settings = base_task.describe()
    default = {key: settings[key] for key in space}
    outside = [key for key, dim in space.items() if not dim.holds(default[key])]
    firsts = [] if outside else [(default, {"tk_default": True})]  # the default first, then --try, then the sampler
    if outside and created:
        where = ", ".join(f"{key} = {default[key]}" for key in outside)
        progress.note(f"The task's own configuration is outside the space ({where}): no trial trains it; the "
                      "final comparison still tests against it.")
    if not created:  # a trial a killed worker left 'running' is no trial of it: the default is queued again
        fail_stale(study, progress.note)
        progress.note(continuing(study, request.trials))
    queue_firsts(study, firsts + [(with_defaults(values, default, space), {}) for values in tries], created,
                 progress.note)
    progress.note(f"Tuning {task.name} into {tune_dir}: study {name!r} in {redact(url)}, {request.trials} trials, "
                  f"validation {metric} ({direction}); space: "
                  + ", ".join(f"{key}={text}" for key, text in describe(space).items()))
    if request.top and request.seeds < 3:  # said before the compute is spent, not only under the verdict
        progress.note(FEW_SEEDS[request.seeds])
    spec = {"tasks": str(request.tasks_path.resolve()), "task_name": task.name,
            "values": {k: v for k, v in base_task.describe().items() if k != "name"}, "data": request.data,
            "base": str(request.base) if request.base else None, "where": request.where, "storage": url,
            "study": name, "pruner": request.pruner}
    trials_dir = tune_dir / "trials"
    with tracking.sweep(task, tune_dir, progress.note, record=RECORD):
        spec["mlflow_parent"] = trackers.sweep_parent.get()
        try:
            with graceful_interrupts(progress.note):  # a SIGTERM stops the tuner as a Ctrl-C does
                run_trials(study, request.trials, lambda trial, params: launch_trial(trial, params, spec,
                                                                                   trials_dir, study._storage),
                           space, progress.note)
        finally:
            mark_interrupted_folders(trials_dir, study)
        record = summarise_study(study, tune_dir, request, space, default, url, name, direction)
        if record["running"]:
            record["summary"] = [f"{record['running']} trial(s) still running on other workers: run this command "
                                 "again once they end for the final comparison."]
        elif request.top:
            record.update(finish(pm, request, base_task, record, tune_dir, progress))
        write_json(tune_dir / RECORD, record)
    write_report_page(study, tune_dir, record)
    return tune_dir, record


FEW_SEEDS = {
    1: "--seeds 1: the final verdict's interval holds the test rows' noise but not the seeds' (one seed measures no "
       "spread), so a seed's luck can pass for a difference; --seeds 3 or more measures it.",
    2: "--seeds 2: the final verdict's interval uses Student's t with one degree of freedom (12.7 standard errors "
       "each side), so it rarely decides anything; --seeds 3 or more narrows it.",
}


def tune_folder_name(task_name: str, study: str) -> str:
    """tune-TASK for the default study; another --study gets a folder of its own (tune-TASK-STUDY), since
    its trials, final runs and report would otherwise overwrite the first study's."""
    if study == f"tk-tune-{task_name}":
        return f"tune-{task_name}"
    return f"tune-{task_name}-{folder_safe(study, 'study')}"


def continuing(study, asked: int) -> str:
    """The line that says a study goes on, with what it holds: 'Continuing the study: 3 complete, 1 pruned,
    1 interrupted (not counted) of 8 trials; 3 to run.'"""
    states = [state_of(trial) for trial in study.get_trials(deepcopy=False)]
    held = ", ".join(f"{states.count(state)} {state}" for state in (*COUNTED, "interrupted") if state in states)
    held = held.replace(" interrupted", " interrupted (not counted)")
    finished = sum(state in COUNTED for state in states)
    rest = "no trial left to run" if finished >= asked else f"{asked - finished} to run"
    return f"Continuing the study: {held or 'no trial yet'} of {asked} trials; {rest}."


def plan(pm, request: TuneRequest, progress: Progress) -> tuple[dict[str, Dimension], TaskConfig, list[dict]]:
    """The space (max_length's choices measured when it is searched by default), the task with the pinned
    keys, the --try configurations."""
    ready = check_before_loading(pm, request.task, request.where, request.base)
    training_rows(pm, request.task, request.data, request.base, ready)  # a file no run can use: said now, once
    lengths = None
    if "max_length" not in request.fixed and "max_length" not in request.overrides:
        progress.note("Measuring token lengths for max_length's choices (as tk analyze-lengths does)...")
        lengths = length_choices(measure_lengths(pm, request.task, request.data, request.base), request.task)
    if "max_length" in request.overrides:
        check_lengths(pm, request.overrides["max_length"], request.task, request.base)
    space = search_space(request.overrides, set(request.fixed), request.task, lengths)
    base_task = with_overrides(request.task, pinned(request.overrides), "--space")
    return space, base_task, parse_try(request.tries, space, base_task)


def summarise_study(study, tune_dir: Path, request: TuneRequest, space, default, url, name, direction) -> dict:
    trials = [trial_row(t, tune_dir) for t in study.get_trials(deepcopy=False)]
    shown = [t for t in trials if t["state"] not in ("surplus", "waiting")]
    finished = [t for t in shown if t["state"] == "complete"]
    best = (min if direction == "minimize" else max)(finished, key=lambda t: t["value"]) if finished else None
    return {"task": request.task.name, "study": name, "storage": redact(url), "direction": direction,
            "metric": request.task.select_metric, "space": describe(space), "default": default,
            "trials_asked": request.trials, "trials": shown, "best_trial": best,
            "counts": {state: sum(t["state"] == state for t in shown)
                       for state in ("complete", "pruned", "failed", "interrupted", "running")},
            "running": sum(t["state"] == "running" for t in shown), "importances": importances(study),
            "edges": edge_notes(best["params"], space, request.task, best_at_last_epoch(best, direction))
            if best else [],
            "final": None, "summary": []}


def best_at_last_epoch(trial: dict[str, Any], direction: str) -> bool:
    """Whether the trial's validation value was best at its last epoch: it was still improving."""
    values = [value for _, value in sorted((int(step), value) for step, value in trial["epochs"].items())]
    if not values:
        return False
    best = (min if direction == "minimize" else max)(values)
    return values[-1] == best


def trial_row(trial: Any, tune_dir: Path) -> dict[str, Any]:
    folder = tune_dir / "trials" / f"{trial.number:03d}"
    runs = sorted(p for p in folder.glob("*/") if (p / "config.json").exists()) if folder.is_dir() else []
    return {"number": trial.number, "state": state_of(trial), "value": trial.value, "params": trial.params,
            "default": bool(trial.user_attrs.get("tk_default")), "error": trial.user_attrs.get("tk_error"),
            "epochs": {str(step): value for step, value in sorted(trial.intermediate_values.items())},
            "run_dir": str(runs[-1]) if runs else None, "worker": trial.user_attrs.get("tk_worker")}


def importances(study) -> dict[str, float]:
    """optuna.importance's fANOVA importances over the finished trials; none with too few of them."""
    import optuna

    try:
        with warnings.catch_warnings():  # "too few trials: importances will be equal": then none are shown
            warnings.simplefilter("error", UserWarning)
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception:  # fewer than two finished trials, or a parameter that never varied
        return {}
    return {key: round(float(value), 4) for key, value in found.items()}


def finish(pm, request: TuneRequest, base_task: TaskConfig, record: dict, tune_dir: Path,
           progress: Progress) -> dict[str, Any]:
    """The top configurations of the study ``record`` and the default over further seeds, tested and compared:
    the record's ``final`` and ``summary``."""
    ranked = ranked_configs(record["trials"], record["direction"], request.top, record["default"])
    if not ranked:
        return {"summary": ["No finished trial other than the default's: nothing to compare with the default."]}
    configs = {DEFAULT: pinned(request.overrides), **{f"trial {number}": params for number, params, _ in ranked}}
    seeds = [base_task.seed + 1 + i for i in range(request.seeds)]  # seeds the search never trained with
    groups = final_runs(pm, base_task, configs, seeds, data=request.data, base=request.base,
                        folder=tune_dir / "final", progress=progress, where=request.where)
    found = compare_final(groups, [label for label in configs if label != DEFAULT])
    found["configs"] = {label: {"params": record["default"] if label == DEFAULT else params,  # the searched keys'
                                "runs": [str(r.path) for r in groups.get(label, [])]}    # values, the default's too
                        for label, params in configs.items()}
    found["seeds"] = seeds
    best = record["best_trial"]
    first = (["On validation no trial beat the task's own configuration (trial "
              f"{best['number']}); the best of the others is tested against it all the same."]
             if best and best["params"] == record["default"] else [])
    found["warnings"] = group_warnings(groups)
    found["recommended"] = recommended(found.get("versus_default", []), groups, base_task.select_metric)
    use = [found["recommended"]["sentence"]] if found["recommended"] else []
    return {"final": found, "summary": first + found["summary"] + found["warnings"] + use}


def queue_firsts(study, firsts: list[tuple[dict[str, Any], dict[str, Any]]], created: bool, note) -> None:
    """The default and the --try configurations, queued ahead of the sampler: all of them in a new study; in
    a continued one, each that no trial has trained to an end (a trial interrupted, a --try added since) and
    none is queued or running. The study's creator alone queues a new study's, so workers starting together
    do not queue them twice."""
    if created:
        for params, attrs in firsts:
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
        return
    trials = study.get_trials(deepcopy=False)
    for params, attrs in firsts:
        if not any(state_of(t) in (*COUNTED, "waiting") and fixed_params(t) == params for t in trials):
            study.enqueue_trial(params, user_attrs=attrs)
            what = "the task's own configuration" if attrs else describe_values(params)
            note(f"Queued ahead of the sampler: {what} (no trial of it has ended).")


def fixed_params(trial: Any) -> dict[str, Any]:
    """A queued trial's configuration (its params are filled in only once a worker asks for it)."""
    return trial.system_attrs.get("fixed_params", trial.params)


def with_defaults(values: dict[str, Any], default: dict[str, Any], space: dict) -> dict[str, Any]:
    """A --try configuration with the keys it does not name at the task's values (where the space holds them):
    trying one learning rate should change the learning rate, not draw every other key at random."""
    return {**{key: default[key] for key, dim in space.items() if dim.holds(default[key])}, **values}


def data_digest(given: str | None, base: Path | None) -> str | None:
    """SHA-256 of the local data's bytes (a folder: its files' names and bytes): a study continues only on
    the data it searched, so a file changed under the same name is a changed study, not more trials of it."""
    import hashlib

    if not given:
        return None  # the Hub, or TK_DATA_DIR: the data fingerprint of each run still records what was read
    path = Path(given) if Path(given).is_absolute() or base is None else base / given
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest() if files else None


def write_report_page(study, tune_dir: Path, record: dict) -> None:
    write_text(tune_dir / "report.html", render(record))
