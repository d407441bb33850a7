"""The report page's figures: matplotlib (Agg) drawn to inline SVG strings.

Every figure function takes plain numbers and names and returns ``<svg ...>``
markup ready to sit inside the page. Names come from users' data: matplotlib
escapes text in SVG, and math parsing is off so a ``$`` in a label is a
dollar sign, not a TeX formula.
"""

from __future__ import annotations

import io
import itertools
import re
from contextlib import contextmanager
from typing import Any, Sequence

import numpy as np

LABEL_CHARS = 24  # class names on axes are cut to this many characters
BINS = 10  # reliability diagram: equal-width bins of top-label confidence
STYLE = {"text.parse_math": False, "svg.fonttype": "none", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100}
_FIGURE_NUMBER = itertools.count()
SVG_SIZE = re.compile(r'<svg([^>]*?)\swidth="([\d.]+)pt"\s+height="([\d.]+)pt"')


@contextmanager
def _figure(width: float, height: float, panels: int = 1):
    """One figure, or with ``panels`` > 1 that many separate figures (side by side on a wide page, stacked on
    a phone): yields (figure, axes) or a list of axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(STYLE):
        made = [plt.subplots(figsize=(width, height)) for _ in range(panels)]
        try:
            yield made[0] if panels == 1 else [ax for _, ax in made]
        finally:
            for fig, _ in made:
                plt.close(fig)


def pair(axes: list) -> str:
    return '<div class="panels">' + "".join(to_svg(ax.figure) for ax in axes) + "</div>"


def to_svg(fig: Any) -> str:
    """The figure as inline SVG: no XML prolog, no fixed size (it scales to the page), no date."""
    import matplotlib

    fig.tight_layout()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"tk{next(_FIGURE_NUMBER)}"}):  # ids unique within the page
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return SVG_SIZE.sub(lambda m: f'<svg{m[1]} style="max-width:{float(m[2]) * 4 / 3:.0f}px" role="img"', text, 1)


def short(name: str) -> str:
    name = str(name)
    return name if len(name) <= LABEL_CHARS else name[:LABEL_CHARS - 1] + "…"


def curves(history: list[dict], step_loss: Sequence | None, steps_per_epoch: float | None) -> str:
    """Training loss (per step when recorded) with the per-epoch validation loss; accuracy and F1 beside it."""
    with _figure(4.2, 3.2, 2) as (loss_ax, score_ax):
        epochs = [row["epoch"] for row in history]
        if step_loss and steps_per_epoch:
            steps = np.asarray(step_loss, dtype=float)
            loss_ax.plot(steps[:, 0] / steps_per_epoch, steps[:, 1], lw=0.8, alpha=0.7,
                         label="training loss (per step)")
        else:
            loss_ax.plot(epochs, [row.get("train_loss") for row in history], "o-", label="training loss")
        loss_ax.plot(epochs, [row.get("validation_loss") for row in history], "o-", label="validation loss")
        loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
        loss_ax.legend()
        for key in ("accuracy", "f1"):
            score_ax.plot(epochs, [row.get(key) for row in history], "o-", label=f"validation {key}")
        score_ax.set(xlabel="epoch", ylabel="score", title="Validation scores", ylim=(-0.02, 1.02))
        score_ax.legend()
        for ax in (loss_ax, score_ax):
            ax.set_xticks(epochs)
        return pair([loss_ax, score_ax])


def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Row-normalised: each true class's share predicted as each class (rows sum to 1), so a large class does not
    drown the rest; every share printed (up to report_classes.FIGURE_CLASSES classes, where they stay legible)."""
    counts = np.asarray(matrix, dtype=np.float64)
    support = counts.sum(axis=1)
    shares = counts / np.maximum(support, 1)[:, None]
    n = len(labels)
    side = min(max(3.6, 0.45 * n + 2.2), 10)  # about the page's width: the page shows it nearly unscaled
    with _figure(side + 1, side) as (fig, ax):
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ticks = range(n)
        small = 9 if n <= 10 else 7
        ax.set_xticks(ticks, [short(x) for x in labels], rotation=90 if n > 4 else 0, fontsize=small)
        ax.set_yticks(ticks, [f"{short(x)} (n={int(s):,})" for x, s in zip(labels, support)], fontsize=small)
        ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (share of each true class)")
        for (i, j), value in np.ndenumerate(shares):
            if counts[i, j] or n <= 12:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=small,
                        color="white" if value > 0.6 else "black")
        return to_svg(fig)


def per_class_bars(rows: list[tuple[str, float, float, float, int]]) -> str:
    """Horizontal precision / recall / F1 bars per class (rows: name, precision, recall, f1, support)."""
    n = len(rows)
    with _figure(5.5, max(2.2, 0.42 * n + 1.2)) as (fig, ax):
        y = np.arange(n)
        for k, (name, offset) in enumerate((("precision", -0.27), ("recall", 0), ("F1", 0.27))):
            ax.barh(y + offset, [row[k + 1] for row in rows], height=0.26, label=name)
        ax.set_yticks(y, [f"{short(row[0])} (n={row[4]:,})" for row in rows], fontsize=9 if n <= 20 else 6)
        ax.invert_yaxis()
        ax.set(xlim=(0, 1), xlabel="score")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False)
        return to_svg(fig)


def threshold_curves(y_true: np.ndarray, score: np.ndarray, positive: str) -> tuple[str, float, float]:
    """Precision-recall and ROC curves of the positive class; returns (svg, PR AUC, ROC AUC)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    precision, recall, _ = precision_recall_curve(y_true, score)
    fpr, tpr, _ = roc_curve(y_true, score)
    pr_auc, roc_auc = float(average_precision_score(y_true, score)), float(auc(fpr, tpr))
    with _figure(4.2, 3.4, 2) as (pr_ax, roc_ax):
        pr_ax.plot(recall, precision, drawstyle="steps-post")
        pr_ax.axhline(y_true.mean(), color="grey", ls=":", label=f"chance ({y_true.mean():.2f})")
        pr_ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall, positive: {short(positive)}",
                  xlim=(0, 1), ylim=(0, 1.02))
        pr_ax.legend(title=f"average precision {pr_auc:.3f}", loc="lower left")
        roc_ax.plot(fpr, tpr)
        roc_ax.plot([0, 1], [0, 1], color="grey", ls=":", label="chance")
        roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
        roc_ax.legend(title=f"AUC {roc_auc:.3f}", loc="lower right")
        return pair([pr_ax, roc_ax]), pr_auc, roc_auc


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS, what: str = "top-label confidence",
                hit: str = "accuracy") -> tuple[str, float]:
    """Reliability diagram of top-label confidence in equal-width bins; returns (svg, expected calibration error).
    ``what`` / ``hit`` name the two axes (multi-label: a label's probability, the share that has the label)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    accuracy = np.bincount(which, weights=correct.astype(float), minlength=bins) / np.maximum(counts, 1)
    mean_conf = np.bincount(which, weights=confidence, minlength=bins) / np.maximum(counts, 1)
    ece = float(np.sum(counts / max(len(confidence), 1) * np.abs(accuracy - mean_conf)))
    centres = (edges[:-1] + edges[1:]) / 2
    with _figure(4.2, 3.2, 2) as (rel_ax, hist_ax):
        shown = counts > 0
        rel_ax.bar(centres[shown], accuracy[shown], width=1 / bins, edgecolor="white", label=f"{hit} in bin")
        rel_ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
        rel_ax.set(xlabel=what, ylabel=hit, xlim=(0, 1), ylim=(0, 1.02), title=f"Reliability, ECE {ece:.3f}")
        rel_ax.legend(loc="upper left")
        hist_ax.bar(centres, counts, width=1 / bins, edgecolor="white")
        counted = "texts" if hit == "accuracy" else "(text, label) pairs"
        hist_ax.set(xlabel=what, ylabel=counted, xlim=(0, 1), title=f"{counted.capitalize()} per bin")
        return pair([rel_ax, hist_ax]), ece


def token_lengths(lengths: np.ndarray, max_length: int) -> str:
    """Histogram of tokens per text (special tokens included), with the task's max_length marked."""
    with _figure(6.5, 3) as (fig, ax):
        ax.hist(lengths, bins=min(60, max(10, len(set(lengths.tolist())))), color="#4c72b0")
        ax.axvline(max_length, color="#c44e52", ls="--", label=f"max_length {max_length}")
        ax.set(xlabel="tokens per text (no truncation)", ylabel="texts", title="Token lengths of the scored texts")
        ax.legend()
        return to_svg(fig)


def compare_curves(runs: list[tuple[str, list[dict]]]) -> str:
    """Validation loss per epoch of several runs on one axes: each run by its whole name (run folders of one task
    share their start), legend under the axes, whole epochs on the axis."""
    from matplotlib.ticker import MaxNLocator

    with _figure(8, 3.4 + 0.22 * len(runs)) as (fig, ax):
        for name, history in runs:
            ax.plot([r["epoch"] for r in history], [r.get("validation_loss") for r in history], "o-", label=name)
        ax.set(xlabel="epoch", ylabel="validation loss", title="Validation loss per run")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if runs:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1, frameon=False)
        return to_svg(fig)
