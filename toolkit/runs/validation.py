"""What a trained model is scored on before the test split: the validation split, per text (windows
pooled), its prior (the base rates' loss), and multi-label thresholds tuned on it."""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.data.rows import column
from toolkit.evaluation import thresholds
from toolkit.evaluation.diagnosis import PRIOR_MARGIN, beats_prior, prior_loss
from toolkit.evaluation.inference import predict_probabilities
from toolkit.evaluation.pooling import documents_of, pool_rows
from toolkit.runs.prepared import Prepared
from toolkit.training import policy
from toolkit.training.device import use_bf16
from toolkit.training.progress import Progress


def validation_scores(model: Any, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of the validation split, per text (windows pooled)."""
    return split_scores(model, prepared.tokenized["validation"], prepared.task)


def split_scores(model: Any, tokenized: Any, task: Any) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a split ``tokenize_splits`` made, per text (windows pooled)."""
    probabilities = predict_probabilities(model, tokenized, task.eval_batch_size, use_bf16(task.bf16))
    return pool_rows(column(tokenized, "labels"), probabilities, documents_of(tokenized), task.pooling)


def tune_on_validation(model: Any, prepared: Prepared, progress: Progress,
                       scored: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> tuple[np.ndarray, list[str], str | None]:
    """Multi-label: each label's threshold tuned on the validation split (per text; ``scored``: its labels and
    probabilities, already predicted), saved in the model's config; returns them, the labels left at 0.5, and
    why none was tuned (None when they were).

    A model whose validation loss is not clearly below the base rates' keeps 0.5 everywhere: tuned on
    probabilities that carry no signal, each label's best-F1 cut-off falls near its base rate and tags
    nearly every text with nearly every label."""
    names = prepared.dataset.labels
    labels, probabilities = scored if scored is not None else validation_scores(model, prepared)
    loss, prior = policy.validation_loss(labels, probabilities), validation_prior(prepared)
    if not beats_prior(loss, prior):
        kept = np.full(len(names), thresholds.DEFAULT_THRESHOLD)
        thresholds.save_to_config(model.config, names, kept)
        why = (f"the model's validation loss {loss:.4f} is not clearly below the {prior:.4f} of predicting each "
               f"label's base rate (less than {PRIOR_MARGIN:.0%} lower): it has learned too little for tuned "
               "thresholds to mean anything, and tuning would put near-base-rate cut-offs that tag most texts with "
               "most labels")
        progress.note(f"Thresholds kept at {thresholds.DEFAULT_THRESHOLD} for every label: {why}.")
        return kept, list(names), why
    found, untuned = thresholds.tune_thresholds(labels, probabilities)
    thresholds.save_to_config(model.config, names, found)
    progress.note(thresholds.describe(found, untuned, names))
    return found, [names[j] for j in untuned], None


def validation_prior(prepared: Prepared) -> float | None:
    """The validation loss of predicting the training split's base rates (weighted as the loss is)."""
    names = prepared.dataset.labels
    weights = (np.array([prepared.class_weights[name] for name in names]) if prepared.class_weights else None)
    return prior_loss(column(prepared.splits["train"], "label"), column(prepared.splits["validation"], "label"),
                      weights)
