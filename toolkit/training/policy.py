"""The training policy: every decision the training loop and its step strategies make alike.

The loop (``toolkit.training.loop``) runs the epochs; a strategy (an
engine) only knows how to run a step fast on its device. What they train
with and what they keep is decided here, once: the AdamW parameter groups,
the learning-rate schedule, gradient clipping, the training loss (single- or
multi-label), the validation loss, the history row of an epoch, the best
epoch and its tie-breaking, early stopping, and the batching rule. A task key
that decides how a run trains is read here or in the loop, never in an engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from toolkit.config import CORE_SETTINGS, TaskConfig
from toolkit.data.rows import column
from toolkit.errors import TkError
from toolkit.training.distributed import world_size

# The rest of the policy, in modules of their own; one name space for the loop and for engine plugins.
from toolkit.training.divergence import (  # noqa: F401
    SANE_CLASS_WEIGHTS,
    SANE_LEARNING_RATES,
    NonFiniteLoss,
    check_losses,
    likely_cause,
    out_of_memory,
    range_warnings,
)
from toolkit.training.epochs import (  # noqa: F401
    CURVE_POINTS,
    curve_steps,
    epoch_record,
    paired_rise_se,
    step_curve,
    validation_documents,
    validation_loss,
    validation_rows,
)
from toolkit.training.selection import Decision, Selection, snapshot_weights  # noqa: F401

MAX_GRAD_NORM = 1.0  # the Trainer's default
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
# No weight decay on biases and normalisation weights (transformers' own rule).
NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
GROUPING_PAYS_OFF = 0.10  # group by length when random batches would be at least 10% padding


# -- what an engine trains with --------------------------------------------------


def parameter_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on every trainable weight but biases and normalisation weights."""
    import torch
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], NO_DECAY))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
              {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(model: Any, task: TaskConfig, rate_on: Any = None) -> Any:
    """Fused AdamW over ``parameter_groups``.

    ``rate_on``: a CUDA device to hold the learning rate as a device tensor
    that a captured CUDA graph reads (the optimizer is then capturable).
    """
    import torch

    groups = parameter_groups(model, task.weight_decay)
    capturable = rate_on is not None
    if capturable:
        groups = [{**group, "lr": torch.tensor(task.learning_rate, device=rate_on)} for group in groups]
    return torch.optim.AdamW(groups, lr=task.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPSILON,
                             fused=True, capturable=capturable)


def warmup_steps(task: TaskConfig, total_steps: int) -> int:
    return math.ceil(task.warmup_ratio * total_steps)


def build_scheduler(optimizer: Any, task: TaskConfig, total_steps: int) -> Any:
    """transformers' schedule named by ``lr_scheduler``; step it once after every optimizer step."""
    from transformers import get_scheduler

    return get_scheduler(task.lr_scheduler, optimizer, num_warmup_steps=warmup_steps(task, total_steps),
                         num_training_steps=total_steps)


def learning_rate_at(task: TaskConfig, total_steps: int) -> Callable[[int], float]:
    """The learning rate global step ``step`` (from 1) trains with under ``build_scheduler``'s schedule.

    The schedule depends on the step alone, so a tracker can log the rate of any step without asking the
    engine (or reading a device tensor). Step ``s`` runs before the scheduler's ``s``-th step: factor ``s - 1``.
    """
    import torch

    probe = build_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=task.learning_rate), task,
                            total_steps)
    return lambda step: task.learning_rate * probe.lr_lambdas[0](step - 1)


def clip_gradients(parameters: Sequence[Any]) -> Any:
    """Clip the global gradient norm to MAX_GRAD_NORM; returns the norm before clipping."""
    import torch

    return torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM, foreach=True)


def clip_gradients_if_needed(parameters: Sequence[Any], rows_of: dict[int, Any] | None = None) -> Any:
    """``clip_gradients`` for an eager step: gradients already within MAX_GRAD_NORM are left as they are rather
    than multiplied by 1.0 (the same numbers, minus a pass over every gradient: 3 ms of a 200 ms MiniLM step
    on the CPU). Not for a captured CUDA graph, which cannot branch on the norm.

    ``rows_of``: {id(parameter): row indices, each once} for gradients known to be zero outside those rows
    (the eager engine's reused embedding gradient); they are measured and scaled there only, the same
    numbers up to the order of the norm's sums."""
    import torch

    parameters = [p for p in parameters if p.grad is not None]
    rows_of = rows_of or {}
    parts = [p.grad.index_select(0, rows_of[id(p)]) if id(p) in rows_of else p.grad for p in parameters]
    norm = torch.nn.utils.get_total_norm(parts, foreach=True)
    coefficient = MAX_GRAD_NORM / (norm + 1e-6)  # clip_grad_norm_'s, before its clamp to 1
    if bool(coefficient < 1.0):
        torch.nn.utils.clip_grads_with_norm_([p for p in parameters if id(p) not in rows_of], MAX_GRAD_NORM, norm,
                                             foreach=True)
        for p, part in zip(parameters, parts):
            if id(p) in rows_of:
                p.grad.index_copy_(0, rows_of[id(p)], part.mul_(coefficient.to(part.dtype)))
    return norm


def group_by_length(task: TaskConfig, lengths: Sequence[int]) -> bool:
    """The task's group_by_length; "auto" groups only where random batches would carry much padding.

    Grouping changes which texts share a batch; where most texts are cut to
    max_length anyway (IMDB at 128) it saves nothing, so the order stays random.
    """
    if task.group_by_length != "auto":
        return bool(task.group_by_length)
    lengths = np.random.default_rng(task.seed).permutation(np.asarray(lengths))
    usable = len(lengths) - len(lengths) % task.batch_size
    if usable == 0 or not task.dynamic_padding:
        return False
    batches = lengths[:usable].reshape(-1, task.batch_size)
    padded = batches.max(axis=1).sum() * task.batch_size
    return bool(1 - batches.sum() / padded >= GROUPING_PAYS_OFF)


# -- what the loss is --------------------------------------------------------------


def class_weights(task: TaskConfig, train_labels: Sequence[int], label_names: Sequence[str]) -> np.ndarray | None:
    """Each class's weight in the loss (``class_weights``), in label order; None when unweighted.

    ``balanced`` is scikit-learn's rule over the training rows (windows, with
    long_text = "chunks"): n / (classes present x the class's count); a class
    with no training row keeps 1.
    """
    if task.class_weights == "none":
        return None
    if task.class_weights == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        labels = np.asarray(train_labels)
        present = np.unique(labels)
        weights = np.ones(len(label_names))
        weights[present] = compute_class_weight("balanced", classes=present, y=labels)
        return weights
    check_class_weight_names(task, label_names)
    return np.array([float(task.class_weights.get(name, 1.0)) for name in label_names])


def check_class_weight_names(task: TaskConfig, label_names: Sequence[str]) -> None:
    """A ``class_weights`` table names only labels the data has (a typo would otherwise weigh nothing)."""
    if isinstance(task.class_weights, str):  # "none" or "balanced"
        return
    unknown = sorted(set(task.class_weights) - set(label_names))
    if unknown:
        raise TkError(f"class_weights names {', '.join(map(repr, unknown))}, which the data does not have. "
                      f"Labels: {', '.join(label_names)}.")


def windows_to_check(task: TaskConfig, train_rows: int, count_windows: Callable[[], int] | None) -> int | None:
    """A chunks task's training windows for ``check_batch_size``, counted (the texts tokenized) only where the
    global batch (batch_size on each process) exceeds the texts: each text makes one window or more, so below that
    the batch fits. None: not counted (a task that truncates, or no need)."""
    if count_windows is None or not task.reads_in_windows or task.batch_size * world_size() <= train_rows:
        return None
    return count_windows()


def check_batch_size(task: TaskConfig, train_rows: int, windows: int | None = None) -> None:
    """batch_size at most the rows a batch is drawn from: the training texts, or with long_text = "chunks" their
    windows (``windows``), for a batch is then of windows. Every step runs batch_size rows: a short batch is filled
    with masked padding rows, so that each step has one shape (a CUDA graph replays one shape), and its plan is
    an array of batch_size slots per step (``batches.epoch_batches``). A batch beyond the data is padding that
    costs memory in proportion to batch_size, not to the data (100,000 rows of 216 took 22 GB). Refused, not
    clamped: a clamped run would train and record another setting than the one asked for. Under torchrun a step's
    batch is batch_size rows on each process (``world_size``), so that global batch is what must fit: past it a
    process trains on padding alone.

    A chunks task's windows are known only once its texts are tokenized; called before that (``windows`` None)
    it refuses nothing, as each text makes one window or more, so the texts are no bound: the callers check again
    with the windows counted, still before any training."""
    if task.reads_in_windows and windows is None:
        return
    rows, unit, of = (windows, "window", f" (of {train_rows:,} texts)") if task.reads_in_windows else \
        (train_rows, "row", "")
    processes = world_size()
    if task.batch_size * processes <= rows:
        return
    if processes == 1:
        example = min(CORE_SETTINGS["batch_size"].default, rows)
        raise TkError(f"task '{task.name}': batch_size = {task.batch_size} is larger than the {rows:,} training "
                      f"{unit}s{of}: one batch would hold every {unit}; set batch_size to at most {rows}, "
                      f"e.g. --set batch_size={example}.")
    each = rows // processes
    fix = (f"set batch_size to at most {each}, e.g. --set batch_size={min(CORE_SETTINGS['batch_size'].default, each)}"
           if each else f"run fewer than {processes} processes")
    raise TkError(f"task '{task.name}': batch_size = {task.batch_size} on each of {processes} torchrun processes is a "
                  f"global batch of {task.batch_size * processes:,}, larger than the {rows:,} training {unit}s{of}: "
                  f"a process would train on padding alone; {fix}.")


def loss_weights(task: TaskConfig, model: Any, train_split: Any) -> Any:
    """``class_weights`` as a tensor on the model's device, for ``training_loss``; None when unweighted."""
    import torch

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    weights = class_weights(task, column(train_split, "labels"), names)
    if weights is None:
        return None
    return torch.tensor(weights, dtype=torch.float32, device=next(model.parameters()).device)


def training_loss(logits: Any, labels: Any, task: TaskConfig, weights: Any = None, valid: Any = None,
                  total: Any = None) -> Any:
    """The loss every engine minimises: the batch mean of each row's loss.

    Single-label: cross-entropy of the true class, each row weighted by its
    class's weight (``class_weights``; the mean divides by the rows' weights,
    as ``torch.nn.CrossEntropyLoss(weight=...)`` does). Multi-label: the mean
    over labels of each label's binary cross-entropy (transformers'
    ``multi_label_classification`` loss, BCEWithLogits), ``labels`` a
    multi-hot float row. ``valid`` (0/1 per row) leaves out the padding rows
    of a fixed-size batch. ``total``: the summed row weights of the whole
    global batch when this process holds only its slice of it
    (``batch_weight``): the processes' losses then add up to the global
    batch's mean, and so do their summed gradients.
    """
    import torch
    import torch.nn.functional as F

    if task.multi_label:
        losses = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none").mean(dim=-1)
        row_weights = torch.ones_like(losses)
    else:
        losses = F.cross_entropy(logits.float(), labels, reduction="none")
        row_weights = weights[labels] if weights is not None else torch.ones_like(losses)
    if valid is not None:
        row_weights = row_weights * valid.to(losses.dtype)
    return (losses * row_weights).sum() / (row_weights.sum() if total is None else total)


def batch_weight(labels: Any, valid: Any, task: TaskConfig, weights: Any = None) -> Any:
    """The summed row weights ``training_loss`` divides by, for the rows of a whole global batch."""
    valid = valid.float()
    if task.multi_label or weights is None:
        return valid.sum()
    return (weights[labels] * valid).sum()


def probabilities_of(logits: np.ndarray, task: TaskConfig) -> np.ndarray:
    """Class probabilities from logits: softmax over the classes; multi-label: a sigmoid per label."""
    logits = np.asarray(logits, dtype=np.float64)
    if task.multi_label:
        return (1 / (1 + np.exp(-logits))).astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
