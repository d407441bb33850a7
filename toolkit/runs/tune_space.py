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
from toolkit.errors import TkError, suggest

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


def parse_space(specs: tuple[str, ...], task: TaskConfig) -> dict[str, Dimension]:
    """``--space`` values, each checked: a known task key, a well-formed range or list, values the task accepts."""
    found: dict[str, Dimension] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise TkError(f"--space '{spec}': expected KEY=LOW..HIGH[:log] or KEY=A,B,C, e.g. "
                          "--space learning_rate=1e-5..1e-3:log or --space batch_size=8,16,32.")
        known = [name for name in task.describe() if name not in NOT_SEARCHABLE]
        if key not in known:
            why = " (tk tune never searches it)" if key in NOT_SEARCHABLE else ""
            raise TkError(f"--space '{spec}': unknown key '{key}'{why}.{suggest(key, known)}")
        if key in found:
            raise TkError(f"--space: key '{key}' is given twice; give it once.")
        found[key] = _dimension(spec, key, text, task)
    return found


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
        integer = isinstance(low, int) and isinstance(high, int) and isinstance(getattr(task, key, None), int)
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
    except TkError as error:
        raise TkError(f"--space '{spec}': {error}") from None


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
            value = parse_value(text.strip())
            if not space[key].holds(value):
                raise TkError(f"--try '{spec}': {key}={value!r} is outside the space ({space[key].describe()}).")
            values[key] = value
        try:
            with_overrides(task, values, "--try")
        except TkError as error:
            raise TkError(f"--try '{spec}': {error}") from None
        tried.append(values)
    return tried


def describe(space: dict[str, Dimension]) -> dict[str, str]:
    return {key: dim.describe() for key, dim in space.items()}

