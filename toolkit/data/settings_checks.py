"""The task settings only the data can judge (its labels, its training rows). tk run calls these as soon as it
knows what they judge (the labels once loaded, the training rows once split), and tk check calls them on the
same splits, so the two stop on the same settings with the same words."""

from __future__ import annotations

from collections.abc import Sequence

from toolkit.config import TaskConfig
from toolkit.evaluation.scoring import positive_class
from toolkit.training.policy import check_batch_size, check_class_weight_names


def check_settings_on_data(task: TaskConfig, label_names: Sequence[str], train_rows: int,
                           where: str | None = None, windows: int | None = None) -> None:
    """A TkError for the first setting the data refutes (``check_label_settings``, then a batch_size over the
    ``train_rows`` of the training split tk run made, or with long_text = "chunks" over their ``windows``)."""
    check_label_settings(task, label_names, where)
    check_batch_size(task, train_rows, windows)


def check_label_settings(task: TaskConfig, label_names: Sequence[str], where: str | None = None) -> None:
    """positive_label or class_weights naming a label the data lacks."""
    positive_class(task, tuple(label_names), where)
    check_class_weight_names(task, label_names)
