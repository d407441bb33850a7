"""What an epoch's numbers are: the validation loss (per row, weighted as training weighs), the history row,
the step-level loss curve."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from toolkit.evaluation.pooling import documents_of, pool_rows
from toolkit.records import EpochRecord
from toolkit.training.divergence import NonFiniteLoss

CURVE_POINTS = 200  # most points per epoch of the step-level training-loss curve


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
