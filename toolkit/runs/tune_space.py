"""tk tune's search space: the documented default, ``--space`` overrides, and a trial's values from Optuna.

A key is searched over a range (``LOW..HIGH``, ``:log`` for a log scale; integers when both ends are
integers) or a list of choices (``A,B,C``); one value pins it. Keys the user fixes with ``--set`` are
not searched: that value is their decision. ``max_length``'s default choices come from the token lengths
of the task's training texts (``toolkit.data.lengths``): the lengths that hold 90%, 95% and 99% of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from toolkit.config import TaskConfig, parse_value, with_overrides
from toolkit.data.lengths import analyze
from toolkit.data.loading import load_named
from toolkit.data.tokens import check_max_length
from toolkit.errors import TkError, suggest, user_message

LENGTH_SAMPLE = 2000  # training texts measured for max_length's default choices
LENGTH_STEP = 16  # max_length choices are rounded up to a multiple of this


@dataclass(frozen=True)
class Dimension:
    """One searched key: a range (``low``, ``high``, ``log``; ``integer`` when both ends are) or choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return ",".join(map(str, self.choices))
        return f"{self.low:g}..{self.high:g}" + (":log" if self.log else "")

    def holds(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (not self.integer or float(value).is_integer())


# The default space: the keys that matter most when fine-tuning an encoder, in ranges that rarely diverge.
DEFAULT_SPACE = {
    "learning_rate": Dimension("learning_rate", 1e-5, 1e-4, log=True),
    "batch_size": Dimension("batch_size", choices=(8, 16, 32)),
    "epochs": Dimension("epochs", 2, 5, integer=True),
    "warmup_ratio": Dimension("warmup_ratio", 0.0, 0.2),
    "weight_decay": Dimension("weight_decay", 0.0, 0.1),
}
NOT_SEARCHABLE = {"name", "dataset", "model", "data", "seed", "select_on", "select_metric", "report_to"}
# Trials are ranked on their validation rows: a key that changes which rows those are (or what the task is)
# would rank trials on different data.
CHANGES_THE_ROWS = {"validation_size", "split_seed", "problem"}


def parse_space(specs: tuple[str, ...], task: TaskConfig, data_keys: frozenset[str] = frozenset()
                ) -> dict[str, Dimension]:
    """``--space`` values, each checked: a key tk tune may search, a well-formed range or list, values the task
    accepts. ``data_keys``: the plugin keys of dataset plugins (what a trial reads), never searched."""
    found: dict[str, Dimension] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise TkError(f"--space '{spec}': expected KEY=LOW..HIGH[:log] or KEY=A,B,C, e.g. "
                          "--space learning_rate=1e-5..1e-3:log or --space batch_size=8,16,32.")
        if key in CHANGES_THE_ROWS or key in data_keys:
            what = "the data each trial reads, and so " if key in data_keys else ""
            raise TkError(f"--space '{spec}': tk tune does not search '{key}': it changes {what}which rows each "
                          "trial is scored on, so the trials would be ranked on different validation rows; set it "
                          "for every trial with --set.")
        known = [name for name in task.describe() if name not in NOT_SEARCHABLE]
        if key in NOT_SEARCHABLE:
            raise TkError(f"--space '{spec}': tk tune never searches '{key}'.")
        if key not in known:
            raise TkError(f"--space '{spec}': unknown key '{key}'.{suggest(key, known)}")
        if key in found:
            raise TkError(f"--space: key '{key}' is given twice; give it once.")
        if key == "class_weights" and task.select_metric == "loss":
            raise TkError(f"--space '{spec}': the validation loss is weighted by class_weights, so each weighting "
                          "would be ranked on its own loss. Rank the trials on a metric the weights do not change: "
                          "add --set select_metric=f1_macro (or accuracy).")
        if text[:1] in "{[":
            raise TkError(f"--space '{spec}': --space searches numbers, words and true/false, not a table or a "
                          f"list. Set it for every trial with --set {key}={text}.")
        found[key] = _dimension(spec, key, text, task)
    return found


def data_keys(pm, task: TaskConfig) -> frozenset[str]:
    """The task keys that dataset plugins declare: which file, columns and labels a trial reads."""
    readers = {info.plugin for info in pm.datasets().values()}
    return frozenset(setting.name for setting in task.declared if setting.plugin in readers)


def _dimension(spec: str, key: str, text: str, task: TaskConfig) -> Dimension:
    body, log = text, False
    if text.endswith(":log"):
        body, log = text[:-4], True
    elif ":" in text:
        raise TkError(f"--space '{spec}': unknown scale '{text.rpartition(':')[2]}'; the only one is ':log'.")
    if ".." in body:
        parts = body.split("..")
        if len(parts) != 2 or not all(part.strip() for part in parts) or "..." in body:
            raise TkError(f"--space '{spec}': a range is LOW..HIGH with two dots, e.g. {key}=1e-5..1e-3:log.")
        low, high = (parse_value(part.strip()) for part in parts)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise TkError(f"--space '{spec}': a range's ends must be numbers, got {parts[0].strip()!r} and "
                          f"{parts[1].strip()!r}.")
        if not low < high:
            raise TkError(f"--space '{spec}': the range's low end must be below its high end.")
        if log and low <= 0:
            raise TkError(f"--space '{spec}': a log scale needs a low end above 0.")
        integer = isinstance(low, int) and isinstance(high, int) and isinstance(task.describe().get(key), int)
        for value in (low, high):
            _check_value(spec, key, value, task)
        return Dimension(key, low, high, log, integer)
    if log:
        raise TkError(f"--space '{spec}': ':log' goes with a range LOW..HIGH, not with a list of choices.")
    values = [part.strip() for part in body.split(",")]
    if any(not v for v in values):
        raise TkError(f"--space '{spec}': an empty choice (two commas, or one at an end).")
    choices = tuple(dict.fromkeys(parse_value(v) for v in values))
    if len(choices) < len(values):
        raise TkError(f"--space '{spec}': a choice is listed twice; list each once.")
    for value in choices:
        _check_value(spec, key, value, task)
    return Dimension(key, choices=choices)


def _check_value(spec: str, key: str, value: Any, task: TaskConfig) -> None:
    try:
        with_overrides(task, {key: value}, "--space")
    except TkError as error:  # with_overrides says "--space: task 'x': key ...": the spec is named once
        raise TkError(f"--space '{spec}': {str(error).removeprefix('--space: ')}") from None


def search_space(overrides: dict[str, Dimension], fixed: set[str], task: TaskConfig,
                 length_choices: tuple[int, ...] | None) -> dict[str, Dimension]:
    """The default space less the keys ``--set`` fixed, with ``--space`` on top; one value pins a key."""
    both = sorted(set(overrides) & set(fixed))
    if both:  # the docs promise a --set key is not searched: say so rather than let --space win silently
        raise TkError(f"{', '.join(both)}: given with --set (not searched) and with --space (searched). Use one.")
    space = {key: dim for key, dim in DEFAULT_SPACE.items() if key not in fixed}
    if "max_length" not in fixed and length_choices:
        space["max_length"] = Dimension("max_length", choices=length_choices)
    space.update(overrides)
    space = {key: dim for key, dim in space.items() if len(dim.choices) != 1}
    if not space:
        raise TkError("Nothing to search: every key is fixed (by --set or a --space with one value). Give a "
                      "range, e.g. --space learning_rate=1e-5..1e-4:log.")
    return space


def pinned(overrides: dict[str, Dimension]) -> dict[str, Any]:
    """``--space KEY=V`` with one value: that value for every trial."""
    return {key: dim.choices[0] for key, dim in overrides.items() if len(dim.choices) == 1}


def length_choices(stats: Any, task: TaskConfig) -> tuple[int, ...]:
    """max_length's default choices: the lengths holding 90%, 95% and 99% of the texts, rounded up, within
    the model's limit; the task's own max_length when the texts are all short."""
    wanted = [stats.p90, stats.p95, stats.p99]
    rounded = sorted({min(stats.model_limit, max(LENGTH_STEP, math.ceil(v / LENGTH_STEP) * LENGTH_STEP))
                      for v in wanted})
    return tuple(rounded) or (task.max_length,)


def check_lengths(pm, dim: Dimension, task: TaskConfig, base) -> None:
    """Every max_length a --space gives holds text and fits the model (tk run's check, with the model's
    tokenizer), before the first trial: a range is checked at its ends."""
    model = pm.model(task.model, base)
    tokenizer = pm.first("tk_load_tokenizer", f"model '{model.name}'", model.plugin, model=model)
    for value in dim.choices or (int(dim.low), int(dim.high)):
        try:
            check_max_length(with_overrides(task, {"max_length": value}, "--space"), tokenizer, model.name)
        except TkError as error:
            raise TkError(f"--space max_length={dim.describe()}: {user_message(error)}") from None


def measure_lengths(pm, task: TaskConfig, data: str | None, base) -> Any:
    """Token-length statistics of (a sample of) the task's training texts, as tk analyze-lengths gives them."""
    labelled = load_named(pm, task.dataset, data, task.data, base, task, classes=False)
    rows = labelled.split("train")
    if len(rows) > LENGTH_SAMPLE:
        rows = rows.shuffle(seed=0).select(range(LENGTH_SAMPLE))
    return analyze(pm, pm.model(task.model, base), rows, 0.95).stats


def suggest_values(trial: Any, space: dict[str, Dimension]) -> dict[str, Any]:
    """The trial's value of every searched key, drawn by the study's sampler."""
    values = {}
    for key, dim in space.items():
        if dim.choices:
            values[key] = trial.suggest_categorical(key, list(dim.choices))
        elif dim.integer:
            values[key] = trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[key] = trial.suggest_float(key, float(dim.low), float(dim.high), log=dim.log)
    return values


def parse_try(specs: tuple[str, ...], space: dict[str, Dimension], task: TaskConfig) -> list[dict[str, Any]]:
    """``--try KEY=V,KEY=V``: configurations to train first (Optuna's enqueued trials), inside the space."""
    tried = []
    for spec in specs:
        values: dict[str, Any] = {}
        for part in spec.split(","):
            key, sep, text = part.partition("=")
            key = key.strip()
            if not sep or not key or not text.strip():
                raise TkError(f"--try '{spec}': expected KEY=VALUE[,KEY=VALUE], e.g. --try learning_rate=3e-5.")
            if key not in space:
                raise TkError(f"--try '{spec}': '{key}' is not searched. Searched: {', '.join(space)}.")
            if key in values:  # the later value would replace the first, unsaid
                raise TkError(f"--try '{spec}': '{key}' is given twice; a configuration has one value of it (give "
                              "another --try for the other).")
            value = parse_value(text.strip())
            dim = space[key]
            if not dim.choices and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TkError(f"--try '{spec}': {key}={text.strip()!r} is not a number; {key} is searched over "
                              f"{dim.describe()}.")
            if not dim.holds(value):
                raise TkError(f"--try '{spec}': {key}={value!r} is outside the space ({space[key].describe()}).")
            values[key] = value
        try:
            with_overrides(task, values, "--try")
        except TkError as error:
            raise TkError(f"--try '{spec}': {error}") from None
        tried.append(values)
    return tried


EDGE = 0.1  # the outer tenth of a range (of its logarithm on a log scale) counts as its end


def edge_notes(params: dict[str, Any], space: dict[str, Dimension], task: TaskConfig,
               kept_last_epoch: bool) -> list[str]:
    """Where the best trial's value of a searched range lies at one of its ends: a better value may lie beyond,
    which no trial of this space can show. A range that starts at 0 (no warmup, no weight decay) has nothing
    below it. Choices are the user's list, not a range, and are left alone. Epochs: a run keeps its best
    epoch, so only the top end counts, and only where the trial's best epoch was its last (``kept_last_epoch``):
    one that peaked earlier had epochs to spare."""
    notes = []
    for key, dim in space.items():
        value = params.get(key)
        if dim.choices or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        place = _place(value, dim)
        if key == "epochs" and (place < 1 - EDGE or not kept_last_epoch):
            continue
        if place >= 1 - EDGE:
            end, wider = "top", _widened(dim, up=True)
        elif place <= EDGE and dim.low > 0 and key != "epochs":
            end, wider = "bottom", _widened(dim, up=False)
        else:
            continue
        advice = "a wider range would tell"
        try:
            with_overrides(task, {key: wider.low if end == "bottom" else wider.high}, "--space")
            advice += f" (--space {key}={wider.describe()})"
        except TkError:
            pass  # the widened end is not a value the key accepts: say it is at the end, without a command
        notes.append(f"The best trial's {key} ({value:g}) is at the {end} of the searched range {dim.describe()}: "
                     f"a better value may lie {'above' if end == 'top' else 'below'} it, which no trial of this "
                     f"space can show; {advice}.")
    return notes


def _place(value: float, dim: Dimension) -> float:
    """Where ``value`` lies in the range, from 0 (its low end) to 1 (its high end)."""
    if dim.integer:  # a few whole numbers (epochs 2..5): the end is the end value itself
        return 1.0 if value >= dim.high else 0.0 if value <= dim.low else 0.5
    if dim.log:
        return math.log(value / dim.low) / math.log(dim.high / dim.low)
    return (value - dim.low) / (dim.high - dim.low)


def _widened(dim: Dimension, up: bool) -> Dimension:
    """The range stretched past the end the best value reached: by half its width (on a log scale, by a
    factor of about 3; whole numbers: twice the top, half the bottom)."""
    low, high = dim.low, dim.high
    if dim.integer:
        low, high = (low, high * 2) if up else (max(1, low // 2), high)
    elif dim.log:
        low, high = (low, float(f"{high * 3:.2g}")) if up else (float(f"{low / 3:.2g}"), high)
    else:
        width = (high - low) / 2
        low, high = (low, float(f"{high + width:.3g}")) if up else (max(0.0, float(f"{low - width:.3g}")), high)
    return Dimension(dim.key, low, high, dim.log, dim.integer)


def describe(space: dict[str, Dimension]) -> dict[str, str]:
    return {key: dim.describe() for key, dim in space.items()}

