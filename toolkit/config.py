"""A task's keys, parsed and validated once into a frozen ``TaskConfig`` (the file around them:
``toolkit.tasks_file``).

A task key is either a core key (a field of ``TaskConfig``, read by the
engine core and by every training engine through the shared policy) or a
plugin key (a ``Setting`` a plugin declares with ``tk_register_settings``
and reads with ``task.setting(name)``). Both are checked the same way.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from toolkit.errors import TkError, suggest
from toolkit.records import Setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


TRACKERS = ("mlflow", "tensorboard")  # report_to: toolkit/runs/tracking.py


def _key(default: Any, help: str, *choices: Any) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TaskConfig:
    """One fine-tuning task: the core keys of a ``[tasks.NAME]`` table, and the plugin keys in ``settings``."""

    name: str
    dataset: str = _key(None, "a registered dataset (`tk list`)")
    model: str = _key(None, "a registered model (`tk list`)")
    max_length: int = _key(128, "tokens kept per text; `tk analyze-lengths` recommends one; at most the model's limit")
    batch_size: int = _key(16, "training batch size per device")
    eval_batch_size: int | str = _key("auto", "rows per batch in validation and test predictions; `auto`: 64 on "
                                      "the CPU; on a GPU as many as make 32,768 tokens at the longest text's length "
                                      "(256 at 128 tokens), at least 64", "auto")
    epochs: int = _key(3, "most epochs to train (early stopping may end sooner)")
    learning_rate: float = _key(2e-5, "peak learning rate (AdamW)")
    weight_decay: float = _key(0.01, "AdamW weight decay, on every weight but biases and LayerNorm weights")
    warmup_ratio: float = _key(0.0, "share of all steps spent warming the learning rate up from 0")
    lr_scheduler: str = _key("linear", "decay after warm-up", "linear", "cosine", "constant", "constant_with_warmup")
    train_size: int | None = _key(None, "training examples, a stratified seeded subset of the training split "
                                        "(default: all)")
    validation_size: int | None = _key(None, "examples carved from the training split (disjoint from training) "
                                             "for per-epoch numbers, model selection and early stopping (default: "
                                             "a tenth of the training rows, at most 500; a validation split in the "
                                             "data: all of it, at most 500)")
    eval_size: int | None = _key(None, "test-split examples for the final report, stratified and seeded "
                                       "(default: all)")
    seed: int = _key(42, "seeds subsets, the classifier head, dropout and batch order")
    split_seed: int | None = _key(None, "seeds which rows go to training, validation and test (default: `seed`); "
                                        "set it to vary `seed` over runs that keep one split (tk tune's final runs "
                                        "do)")
    data: str | None = _key(None, "a local file or folder for the dataset, relative to tasks.toml; `--data` "
                                  "wins, `TK_DATA_DIR` and the Hub come after")
    truncation: str = _key("head", "which tokens a long text keeps: `head`, `tail`, or `head+tail` (a quarter "
                                   "from the start, the rest from the end; Sun et al., 2019)",
                           "head", "tail", "head+tail")
    long_text: str = _key("truncate", "texts longer than max_length: `truncate` keeps the tokens `truncation` says; "
                                      "`chunks` cuts them into overlapping windows of max_length tokens, trains on "
                                      "every window with its text's label and pools the windows' probabilities per "
                                      "text (docs/long-documents.md)", "truncate", "chunks")
    stride: int | None = _key(None, "long_text = \"chunks\": tokens each window shares with the one before it "
                                    "(default: max_length // 4); below max_length minus the model's special tokens")
    pooling: str = _key("logits", "long_text = \"chunks\": how a text's window probabilities become its own: "
                                  "`logits` (the mean of the windows' logits, then softmax or sigmoid), `mean` (of "
                                  "the probabilities), or `max` (each class's highest window probability, "
                                  "renormalised)", "logits", "mean", "max")
    problem: str = _key("single-label", "`single-label`: one class per text (softmax); `multi-label`: any number of "
                                        "labels per text (sigmoid per label, a threshold per label tuned on the "
                                        "validation split; docs/multi-label.md)", "single-label", "multi-label")
    calibration: str = _key("temperature", "`temperature`: after training, a temperature fitted on training rows "
                                           "train_size left unused, else on the validation split (one per label "
                                           "for multi-label), is baked into the saved "
                                           "classifier head, so every reader of the model gets calibrated "
                                           "probabilities (docs/metrics.md#calibration); `off` saves the model "
                                           "as trained", "temperature", "off")
    select_metric: str = _key("loss", "validation metric that picks the best epoch (multi-label: accuracy is subset "
                                      "accuracy and f1 micro F1, at threshold 0.5)",
                              "loss", "accuracy", "f1", "f1_macro")
    class_weights: str | dict = _key("none", "single-label tasks: the weight of each class's rows in the training "
                                             "loss: `none`, `balanced` (n / (classes x the class's count) over the "
                                             "training rows, scikit-learn's rule), or a table such as "
                                             "`{ spam = 4.0 }` (labels not named weigh 1); docs/your-data.md")
    positive_label: str | None = _key(None, "binary tasks: the label whose F1, precision and recall are the "
                                            "headline (default: the second label)")
    select_on: str = _key("validation", "`test` selects epochs on the test split (as the reference notebook "
                                        "did); tk warns that test numbers are then optimistic", "validation", "test")
    patience: int | None = _key(2, "stop after this many epochs without improvement; 0 turns early stopping off")
    engine: str = _key("auto", "how each training step runs (`tk list` shows the engines; every engine trains "
                               "through tk's one training loop): `auto` picks the fastest one available on the "
                               "machine; the choice is printed and recorded for resume")
    bf16: str = _key("auto", "bfloat16 mixed precision in training and prediction: `on`, `off`, or `auto` (on "
                             "for CUDA with bf16 and for CPUs with AVX-512 BF16 or AMX)", "auto", "on", "off")
    attention: str = _key("auto", "attention kernel: `sdpa`, `eager`, or `auto` (eager for bf16 on the CPU, "
                                  "where it trains about 2x faster than SDPA; the model's default elsewhere)",
                          "auto", "sdpa", "eager")
    dynamic_padding: bool = _key(True, "pad each batch to its longest text instead of to `max_length`")
    group_by_length: bool | str = _key("auto", "batch texts of similar length together (less padding); `auto` "
                                               "does so only where random batches would be at least 10% padding",
                                       "auto", True, False)
    report_to: tuple[str, ...] = _key((), "where the run is tracked besides its folder: `mlflow`, `tensorboard` (a "
                                          "list, or one name; `none`: nowhere); docs/tracking.md",
                                      *TRACKERS, "none")
    linear_baseline: bool = _key(True, "fit TF-IDF n-grams + logistic regression on the same training rows (C "
                                       "chosen on the validation rows) and compare the fine-tune with it on the "
                                       "test rows; `false` skips it (docs/metrics.md)")
    settings: Mapping[str, Any] = field(default_factory=dict)  # plugin keys, defaults filled in
    declared: tuple[Setting, ...] = field(default=(), compare=False, repr=False)  # the plugin keys known
    # the keys a command-line option set, and which (--set, --grid, ...): a message about such a key's value
    # names the option, not tasks.toml, which may not hold the value at all (origin_of)
    set_by: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def multi_label(self) -> bool:
        return self.problem == "multi-label"

    @property
    def reads_in_windows(self) -> bool:
        """long_text = "chunks": a long text is read as overlapping windows, pooled back into one answer."""
        return long_text_in_windows(self.long_text)

    @property
    def data_seed(self) -> int:
        """The seed of the split: which rows train, validate and test."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def window_stride(self) -> int:
        """The overlap of long_text = "chunks" windows: ``stride``, or a quarter of ``max_length``."""
        return window_stride_of(self.max_length, self.stride)

    def setting(self, name: str) -> Any:
        """A plugin key's value (its default when the task does not set it)."""
        if name not in self.settings:
            raise KeyError(f"no plugin declares the task key '{name}'")
        return self.settings[name]

    def describe(self) -> dict[str, Any]:
        """Every key and its value, core and plugin keys alike: what config.json and manifest.json record."""
        core = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("settings", "declared", "set_by")}
        return {**core, **self.settings}


def window_stride_of(max_length: int, stride: int | None) -> int:
    """The windows' overlap for these keys, for a ``TaskConfig`` and for the task a run folder recorded (the
    model card, an export's README): ``stride``, or a quarter of ``max_length`` when it is not set."""
    return int(max_length) // 4 if stride is None else int(stride)


def long_text_in_windows(long_text: str | None) -> bool:
    """The one place that decides it: for a ``TaskConfig``, and for the ``long_text`` a run folder recorded
    (read by the report and the model card without building a task)."""
    return long_text == "chunks"


CORE_SETTINGS = {
    f.name: Setting(f.name, (), f.default, f.metadata["help"], f.metadata["choices"])
    for f in fields(TaskConfig) if "help" in f.metadata
}
REQUIRED_KEYS = {"dataset", "model"}
EXAMPLES = {"dataset": "imdb", "model": "minilm"}  # what the error for a missing required key suggests


def build_task(name: str, values: dict[str, Any], path: Path | str, declared: tuple[Setting, ...] = ()) -> TaskConfig:
    where = f"task '{name}'"
    known = known_keys(declared)
    for key, value in values.items():
        check_key(key, value, known, path, where)
    missing = REQUIRED_KEYS - values.keys()
    if missing:
        key = sorted(missing)[0]
        raise TkError(f"{path}: {where} has no '{key}' key. Add it, e.g. {key} = \"{EXAMPLES[key]}\".")
    core = {k: v for k, v in values.items() if k in CORE_SETTINGS}
    for key in _NAME_LISTS & core.keys():
        core[key] = names_of(core[key], CORE_SETTINGS[key].choices)
    plugin_values = {s.name: values.get(s.name, s.default) for s in declared}
    # stride against max_length is checked where the tokenizer is known and only for a chunks task
    # (toolkit.data.tokens.window_stride): here it would block every command over one task's typo
    _check_class_weights(core.get("class_weights", "none"), f"{path}: {where}: key 'class_weights'")
    if core.get("problem") == "multi-label" and core.get("class_weights", "none") != "none":
        raise TkError(f"{path}: {where}: key 'class_weights' weighs classes of single-label tasks; a multi-label "
                      "task's loss is one binary loss per label. Leave class_weights out (docs/multi-label.md).")
    return TaskConfig(name=name, **core, settings=plugin_values, declared=declared)


def _check_class_weights(value: str | dict, name: str) -> None:
    if isinstance(value, str) and value not in ("none", "balanced"):
        raise TkError(f"{name} must be 'none', 'balanced' or a table like {{ spam = 4.0 }}, got {value!r}."
                      f"{suggest(value, ('none', 'balanced'))}")
    for label, weight in (value.items() if isinstance(value, dict) else ()):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TkError(f"{name}: the weight of '{label}' must be a number, got {weight!r}.")
        _check_number("class_weights", weight, f"{name}: the weight of '{label}'")
        if weight == 0:
            raise TkError(f"{name}: the weight of '{label}' must be above 0 (a class weighted 0 is never learned; "
                          "drop its rows instead).")


def with_overrides(task: TaskConfig, overrides: dict[str, Any], path: Path | str = "--set") -> TaskConfig:
    """A copy of ``task`` with ``--set`` / ``--grid`` values applied and checked; ``path`` is the option."""
    values = {k: v for k, v in task.describe().items() if k != "name"}
    values.update(overrides)
    built = build_task(task.name, values, path, task.declared)
    return replace(built, set_by={**task.set_by, **dict.fromkeys(overrides, str(path))})


def origin_of(task: TaskConfig, key: str, where: str | None = None) -> str:
    """How a message about ``key``'s value begins: the option that set it ('--set: task NAME'), else ``where``
    (the tasks file and the task: 'tasks.toml: task NAME'), else 'task NAME'."""
    if key in task.set_by:
        return f"{task.set_by[key]}: task '{task.name}'"
    return where or f"task '{task.name}'"


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``key=value``; the value is read as TOML, else taken as a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise TkError(f"--set '{text}': expected key=value, e.g. --set epochs=2.")
    return key, parse_value(value.strip())


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def known_keys(declared: tuple[Setting, ...]) -> dict[str, Setting]:
    """The core keys and the plugin keys ``declared``, by name."""
    return {**CORE_SETTINGS, **{s.name: s for s in declared}}


def check_key(key: str, value: Any, known: Mapping[str, Setting], path: Path | str, where: str) -> None:
    """One key's value against its declaration: type, choices, lower bound."""
    if key not in known:
        raise TkError(f"{path}: {where}: unknown key '{key}'.{suggest(key, known)}")
    spec = known[key]
    if key in _NAME_LISTS:
        names_of(value, spec.choices, f"{path}: {where}: key '{key}'")
        return
    expected = spec.types or _field_types(key)
    if value is None and type(None) in expected:
        return
    if list in expected:
        _check_list_of_strings(key, value, f"{path}: {where}: key '{key}'")
        return
    ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in expected)
    if float in expected and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        names = " or ".join(_TYPE_NAMES[t] for t in expected if t is not type(None))
        raise TkError(f"{path}: {where}: key '{key}' must be {names}, got {value!r}.")
    if spec.choices and value not in spec.choices and (isinstance(value, str) or int not in expected):
        # (a key of a number or "auto" lists only "auto" among its choices)
        raise TkError(
            f"{path}: {where}: key '{key}' must be one of {', '.join(map(repr, spec.choices))}, "
            f"got {value!r}.{suggest(str(value), map(str, spec.choices))}"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(key, value, f"{path}: {where}: key '{key}'")


def _check_list_of_strings(key: str, value: Any, name: str) -> None:
    """A list key (labels, label_columns): a TOML list of strings; the message writes the value given as one."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return
    items = value if isinstance(value, list) else str(value).split(",")
    example = json.dumps([str(item).strip() for item in items])
    raise TkError(f"{name} must be a list of strings, got {value!r}. Write it as {key} = {example} in the task, "
                  f"or --set '{key}={example.replace(', ', ',')}'.")


def _check_number(key: str, value: int | float, name: str) -> None:
    """Range checks: finite, not negative, above 0 where 0 makes no sense, shares in [0, 1], seeds in numpy's range."""
    if not math.isfinite(value):  # TOML's inf and nan: training on them gives NaN weights and NaN metrics
        raise TkError(f"{name} must be a finite number, got {value!r}.")
    if value < 0:
        raise TkError(f"{name} must not be negative, got {value!r}.")
    if key in _POSITIVE and value <= 0:
        raise TkError(f"{name} must be above 0, got {value!r}.")
    if key in _SHARES and value > 1:
        raise TkError(f"{name} is a share and must be between 0 and 1, got {value!r}.")
    if key in ("seed", "split_seed") and value > _MAX_SEED:
        raise TkError(f"{name} must be between 0 and {_MAX_SEED} (2**32 - 1), got {value!r}.")


def names_of(value: Any, choices: tuple[str, ...], name: str = "report_to") -> tuple[str, ...]:
    """A list-of-names key (report_to) as a tuple: a TOML list, one name, or names with commas (`--set
    report_to=mlflow,tensorboard`); "none" alone means none."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TkError(f"{name} must be a list of names, like [\"mlflow\"], or one name; got {value!r}.")
    for item in value:
        if item not in choices:
            raise TkError(f"{name}: unknown name {item!r}.{suggest(item, choices)} "
                          f"Choices: {', '.join(map(repr, choices))}.")
    if "none" in value and len(set(value)) > 1:
        raise TkError(f"{name}: 'none' cannot be combined with other names, got {list(value)!r}.")
    return tuple(dict.fromkeys(v for v in value if v != "none"))  # in order, once each


_NAME_LISTS = {"report_to"}
SPLIT_SIZED_BY = {"train_size": "train", "validation_size": "validation", "eval_size": "test"}  # key -> its split
_POSITIVE = {"max_length", "batch_size", "eval_batch_size", "epochs", "learning_rate", "train_size", "eval_size",
             "validation_size"}  # validation_size = 0: no epoch could be scored or chosen
_SHARES = {"warmup_ratio"}
_MAX_SEED = 2**32 - 1
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table"}


def _field_types(key: str) -> tuple[type, ...]:
    annotation = next(f.type for f in fields(TaskConfig) if f.name == key)
    names = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "None": type(None)}
    return tuple(names[part.strip()] for part in str(annotation).split("|"))


__all__ = ["TaskConfig", "CORE_SETTINGS", "build_task", "with_overrides", "origin_of", "parse_assignment",
           "parse_value", "check_key", "known_keys", "names_of", "long_text_in_windows"]
