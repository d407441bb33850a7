"""What the linear baseline costs: tk run's splits of a task, then the baseline alone (no fine-tune).

    TK_DATA_DIR=../shared/data python benchmarks/linear_baseline.py imdb-minilm sentiment140-minilm

Prints, per task, the rows, the seconds of fitting (vectorising, four C values, choosing on validation) and of
the whole baseline step as tk run does it (fit, test scoring with intervals, paired comparison against a
stand-in fine-tune that predicts the majority class), and the baseline's test accuracy. Compare the seconds
with the task's own tk run wall time on the same machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(names: list[str]) -> None:
    from toolkit.data.rows import column
    from toolkit.evaluation import classical
    from toolkit.evaluation.scoring import score
    from toolkit.plugins import PluginManager
    from toolkit.runs.pipeline import prepare
    from toolkit.tasks_file import load_config
    from toolkit.training.progress import Progress

    pm = PluginManager().load((), ROOT)
    for name in names:
        task = load_config(ROOT / "tasks.toml", pm).task(name)
        prepared = prepare(pm, task, None, ROOT, Progress(echo=lambda text: None, bar=False))
        splits, names_ = prepared.splits, prepared.dataset.labels
        labels = np.asarray(column(splits["test"], "label"))
        stand_in = np.zeros((len(labels), len(names_)))
        stand_in[:, 0] = 1.0  # a fine-tune that always answers the first class
        metrics = score(pm, labels, stand_in, names_, confidence=True)
        metrics.update(select_metric=task.select_metric, problem=task.problem)
        started = time.perf_counter()
        found, _ = classical.against_fine_tune(
            lambda p, cut: score(pm, labels, p, names_, confidence=True, thresholds=cut), splits, labels, stand_in,
            None, names_, None, metrics, task.select_metric, lambda text: None)
        whole = time.perf_counter() - started
        rows = ", ".join(f"{split} {len(splits[split]):,}" for split in ("train", "validation", "test"))
        print(f"{name}: {rows}; fit {found['fit_seconds']:.1f} s, whole baseline step {whole:.1f} s; "
              f"C = {found['C']:g}; test accuracy {found['metrics']['accuracy']:.3f} "
              f"{found['metrics'].get('accuracy_ci')}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["imdb-minilm", "sentiment140-minilm"])
