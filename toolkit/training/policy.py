"""The training policy: every decision a training engine must make the way the others do.

An engine (the Trainer plugin, the CUDA-graph loop, yours) only knows how to
run a step fast on its device. What it trains with and what it keeps is
decided here, once: the AdamW parameter groups, the learning-rate schedule,
gradient clipping, the training loss (single- or multi-label), the validation
loss, the history row of an epoch, the
best epoch and its tie-breaking, early stopping, and the batching rule. A new
task key that every engine must honour is read here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from toolkit.config import TaskConfig
from toolkit.data.files import column
from toolkit.errors import TkError
from toolkit.evaluation.pooling import documents_of, pool_rows
from toolkit.records import EpochRecord

MAX_GRAD_NORM = 1.0  # the Trainer's default
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
# No weight decay on biases and normalisation weights (transformers' own rule).
NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
GROUPING_PAYS_OFF = 0.10  # group by length when random batches would be at least 10% padding
CURVE_POINTS = 200  # most points per epoch of the step-level training-loss curve
# Outside these, fine-tuning an encoder almost always diverges (too high) or learns nothing (too low):
# tk warns before training, and trains anyway (docs/tasks-toml.md). BERT's own range is 1e-5 to 5e-5.
SANE_LEARNING_RATES = (1e-7, 1e-2)
SANE_CLASS_WEIGHTS = (1e-3, 1e3)  # each weight; and the largest at most this many times the smallest


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
    (the trainer engine's reused embedding gradient); they are measured and scaled there only, the same
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


# -- what stops a run that went wrong -----------------------------------------------


def range_warnings(task: TaskConfig, weights: np.ndarray | None = None) -> list[str]:
    """What tk says before training about a learning rate or class weights outside the sane ranges."""
    said = []
    low, high = SANE_LEARNING_RATES
    if not low <= task.learning_rate <= high:
        said.append(f"learning_rate = {task.learning_rate:g} is outside the usual range {low:g} to {high:g}; "
                    f"{'training is likely to diverge (a loss of nan stops the run)' if task.learning_rate > high else 'the model will barely change'}. "
                    "Fine-tuning usually takes 1e-5 to 5e-5 (--set learning_rate=2e-5).")
    if weights is not None and len(weights):
        low, high = SANE_CLASS_WEIGHTS
        smallest, largest = float(np.min(weights)), float(np.max(weights))
        if smallest < low or largest > high or (smallest > 0 and largest / smallest > high):
            said.append(f"class_weights range from {smallest:g} to {largest:g}, beyond the usual {low:g} to {high:g} "
                        "(or a ratio over 1000); the loss can overflow and training diverge. "
                        "class_weights = \"balanced\" weighs classes by their counts.")
    return said


class NonFiniteLoss(TkError):
    """Training produced a loss of nan or inf: the weights are garbage from that step on."""


def check_losses(losses: Sequence[float], first_step: int, task: TaskConfig, what: str = "Training loss") -> None:
    """Stop the run at the first non-finite loss of ``losses`` (steps ``first_step``, ``first_step + 1``...)."""
    values = np.asarray(losses, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise NonFiniteLoss(f"{what} became {values[bad[0]]} at step {first_step + int(bad[0])}: training "
                            f"diverged, and nothing it learnt can be used. {likely_cause(task)} The run is "
                            "marked failed and has no metrics.")


def likely_cause(task: TaskConfig) -> str:
    """Which settings to blame for a diverged run, most likely first."""
    causes = []
    if task.learning_rate > SANE_LEARNING_RATES[1] / 10:
        causes.append(f"learning_rate = {task.learning_rate:g} is too high (try --set learning_rate=2e-5)")
    if isinstance(task.class_weights, dict) and any(
            not SANE_CLASS_WEIGHTS[0] <= float(w) <= SANE_CLASS_WEIGHTS[1] for w in task.class_weights.values()):
        causes.append("class_weights hold an extreme weight (keep each within 1e-3 to 1e3)")
    if not causes:
        causes.append(f"the learning rate ({task.learning_rate:g}) is too high for this model and data, or the data "
                      "holds broken texts; lower learning_rate")
    return "Likely cause: " + "; ".join(causes) + "."


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
    unknown = sorted(set(task.class_weights) - set(label_names))
    if unknown:
        raise TkError(f"class_weights names {', '.join(map(repr, unknown))}, which the data does not have. "
                      f"Labels: {', '.join(label_names)}.")
    return np.array([float(task.class_weights.get(name, 1.0)) for name in label_names])


def loss_weights(task: TaskConfig, model: Any, train_split: Any) -> Any:
    """``class_weights`` as a tensor on the model's device, for ``training_loss``; None when unweighted."""
    import torch

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    weights = class_weights(task, column(train_split, "labels"), names)
    if weights is None:
        return None
    return torch.tensor(weights, dtype=torch.float32, device=next(model.parameters()).device)


def training_loss(logits: Any, labels: Any, task: TaskConfig, weights: Any = None, valid: Any = None) -> Any:
    """The loss every engine minimises: the batch mean of each row's loss.

    Single-label: cross-entropy of the true class, each row weighted by its
    class's weight (``class_weights``; the mean divides by the rows' weights,
    as ``torch.nn.CrossEntropyLoss(weight=...)`` does). Multi-label: the mean
    over labels of each label's binary cross-entropy (transformers'
    ``multi_label_classification`` loss, BCEWithLogits), ``labels`` a
    multi-hot float row. ``valid`` (0/1 per row) leaves out the padding rows
    of a fixed-size batch.
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
    return (losses * row_weights).sum() / row_weights.sum()


def probabilities_of(logits: np.ndarray, task: TaskConfig) -> np.ndarray:
    """Class probabilities from logits: softmax over the classes; multi-label: a sigmoid per label."""
    logits = np.asarray(logits, dtype=np.float64)
    if task.multi_label:
        return (1 / (1 + np.exp(-logits))).astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


# -- what an epoch's numbers are ----------------------------------------------------


def validation_loss(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean cross-entropy of the validation rows, -log p(true class), weighted as ``training_loss`` weighs.

    Multi-label (``labels`` an (n, labels) multi-hot array): the mean binary cross-entropy over rows and
    labels, -[y log p + (1 - y) log(1 - p)], the training loss's own measure.
    """
    losses, row_weights = validation_rows(labels, probabilities, weights)
    return float((losses * row_weights).sum() / row_weights.sum())


def validation_rows(labels: np.ndarray, probabilities: np.ndarray,
                    weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each validation row's loss and weight; ``validation_loss`` is their weighted mean."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
        return -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(axis=1), np.ones(len(labels))
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    row_weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)[labels]
    return -np.log(np.clip(picked, 1e-12, None)), row_weights


def paired_rise_se(rows: tuple[np.ndarray, np.ndarray], before: tuple[np.ndarray, np.ndarray]) -> float:
    """The standard error of the change in weighted mean validation loss between two epochs on the same rows,
    from the per-row differences: far smaller than two independent errors, as the rows are the same."""
    (losses, weights), (earlier, _) = rows, before
    difference = np.asarray(losses) - np.asarray(earlier)
    total = weights.sum()
    mean = (weights * difference).sum() / total
    return float(np.sqrt((weights**2 * (difference - mean) ** 2).sum()) / total)


def epoch_record(epoch: int, step_losses: Sequence[float], labels: np.ndarray, probabilities: np.ndarray,
                 seconds: float, compute_metrics: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
                 documents: Sequence[int] | None = None, pooling: str = "mean",
                 weights: np.ndarray | None = None) -> EpochRecord:
    """The history row of an epoch.

    ``step_losses`` are the epoch's per-step mean losses, in order: the
    training loss is their mean, and the curve keeps at most CURVE_POINTS of
    them (means of equal runs). The validation numbers come from
    ``probabilities`` of the validation rows. With ``documents``
    (long_text = "chunks": each row's text, in the order of the rows, from
    ``validation_documents``) the rows are windows: their probabilities are
    pooled per text first, so the validation loss, accuracy and F1 are per
    text, as the test metrics are. ``weights`` (``class_weights``, as a
    numpy array) weigh the validation loss as training weighs its loss.
    """
    labels, probabilities = pool_rows(labels, probabilities, documents, pooling)
    if not np.isfinite(probabilities).all():
        raise NonFiniteLoss(f"The model's validation predictions after epoch {epoch} hold nan: training diverged, "
                            "and nothing it learnt can be used. Lower learning_rate (e.g. --set learning_rate=2e-5) "
                            "or extreme class_weights. The run is marked failed and has no metrics.")
    scores = compute_metrics(labels, probabilities)
    losses = np.asarray(step_losses, dtype=np.float64)
    chunks = np.array_split(losses, min(len(losses), CURVE_POINTS)) if len(losses) else []
    return EpochRecord(epoch=epoch, train_loss=float(losses.mean()) if len(losses) else None,
                       validation_loss=validation_loss(labels, probabilities, weights),
                       validation_rows=validation_rows(labels, probabilities, weights),
                       accuracy=float(scores.get("accuracy", float("nan"))),
                       f1=float(scores.get("f1", float("nan"))), seconds=seconds, steps=len(losses),
                       step_losses=tuple(round(float(chunk.mean()), 6) for chunk in chunks),
                       f1_macro=float(scores.get("f1_macro", float("nan"))))


def step_curve(history: Sequence[EpochRecord]) -> list[list[float]]:
    """[global step, training loss] points over the whole run: each point at the end of the steps it averages."""
    points, done = [], 0
    for record in history:
        if record.step_losses:
            per_point = record.steps / len(record.step_losses)
            points += [[round(done + (i + 1) * per_point, 1), loss] for i, loss in enumerate(record.step_losses)]
        done += record.steps
    return points


def curve_steps(steps: int, points: int) -> list[int]:
    """The last step (counted from 1 within the epoch) that each of ``points`` curve points of
    ``epoch_record`` averages: the ends of ``np.array_split``'s runs, so every point has an exact step."""
    return [int(run[-1]) + 1 for run in np.array_split(np.arange(steps), points)] if points else []


def validation_documents(split: Any) -> np.ndarray | None:
    """The text of each row of a tokenized validation split, in its order; None unless long_text = "chunks".

    An engine that evaluates the rows in another order reorders this the same way.
    """
    return documents_of(split)


# -- which epoch is kept, and when to stop --------------------------------------------


@dataclass(frozen=True)
class Decision:
    improved: bool  # keep this epoch's weights: the best so far
    stop: bool  # no further epoch: the last one, or patience ran out


class Selection:
    """Model selection and early stopping over the epochs of one run.

    The best epoch is the one with the best validation ``select_metric``;
    ties keep the earlier epoch. Training stops after ``patience`` epochs in a
    row without improvement (0 or None: never early). Its state goes into
    every checkpoint, so a resumed run decides exactly as an uninterrupted one.
    """

    def __init__(self, task: TaskConfig) -> None:
        self.metric, self.patience, self.epochs = task.select_metric, task.patience, task.epochs
        self.history: list[EpochRecord] = []
        self.best: EpochRecord | None = None
        self.epochs_without_gain = 0
        self.lowest: EpochRecord | None = None  # the lowest validation loss so far, with its per-row losses

    def end_epoch(self, record: EpochRecord) -> Decision:
        record = self._paired_with_lowest(record)
        self.history.append(record)
        improved = self.best is None or self._better(record, self.best)
        if improved:
            self.best, self.epochs_without_gain = record, 0
        else:
            self.epochs_without_gain += 1
        out_of_patience = bool(self.patience) and self.epochs_without_gain >= self.patience
        return Decision(improved, out_of_patience or record.epoch >= self.epochs)

    def _paired_with_lowest(self, record: EpochRecord) -> EpochRecord:
        """``record`` with the standard error of its rise over the lowest validation loss before it."""
        rows, lowest = record.validation_rows, self.lowest
        se = None
        if rows is not None and lowest is not None and len(rows[0]) == len(lowest.validation_rows[0]):
            se = paired_rise_se(rows, lowest.validation_rows)
        if rows is not None and (lowest is None or record.validation_loss < lowest.validation_loss):
            self.lowest = record
        return replace(record, loss_rise_se=se, validation_rows=None)

    @property
    def best_epoch(self) -> int:
        return self.best.epoch

    def _better(self, record: EpochRecord, best: EpochRecord) -> bool:
        if self.metric == "loss":
            return record.validation_loss < best.validation_loss
        return getattr(record, self.metric) > getattr(best, self.metric)

    def state(self) -> dict[str, Any]:
        lowest = self.lowest
        return {"history": [r.as_dict() for r in self.history], "best_epoch": self.best.epoch if self.best else None,
                "epochs_without_gain": self.epochs_without_gain,
                "lowest": None if lowest is None else {"epoch": lowest.epoch,
                                                       "rows": [row.tolist() for row in lowest.validation_rows]}}

    def restore(self, state: dict[str, Any]) -> None:
        self.history = [EpochRecord(**{**row, "step_losses": tuple(row.get("step_losses", ()))})
                        for row in state["history"]]
        self.best = next((r for r in self.history if r.epoch == state["best_epoch"]), None)
        self.epochs_without_gain = state["epochs_without_gain"]
        lowest = state.get("lowest")  # absent from checkpoints written before it was kept
        if lowest:
            record = next(r for r in self.history if r.epoch == lowest["epoch"])
            self.lowest = replace(record, validation_rows=tuple(np.asarray(row) for row in lowest["rows"]))


def snapshot_weights(model: Any) -> dict[str, Any]:
    """A private copy of the model's weights, on their device (the best epoch's, kept for the end)."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def out_of_memory(task: TaskConfig, error: BaseException) -> TkError:
    return TkError(
        f"Out of memory training with batch_size = {task.batch_size} and max_length = {task.max_length} "
        f"({type(error).__name__}). Lower them, e.g. --set batch_size={max(1, task.batch_size // 2)}; "
        "the last finished epoch is saved (tk run --resume RUN)."
    )
