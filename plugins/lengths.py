"""The default token-length summary behind `tk analyze-lengths`."""

from __future__ import annotations

import numpy as np

from toolkit.api import LengthStats, hookimpl

CUTOFFS = (32, 64, 70, 100, 128, 256, 512)


@hookimpl(trylast=True)
def tk_analyze_lengths(lengths, model, model_limit, coverage):
    lengths = np.asarray(lengths)
    recommended = recommend(lengths, coverage, model_limit)
    cutoffs = sorted(set(CUTOFFS) | {recommended})  # the recommendation gets its own row, however short
    return LengthStats(
        model=model.name,
        count=int(lengths.size),
        mean=float(lengths.mean()),
        median=float(np.median(lengths)),
        p90=float(np.percentile(lengths, 90)),
        p95=float(np.percentile(lengths, 95)),
        p99=float(np.percentile(lengths, 99)),
        max=int(lengths.max()),
        model_limit=model_limit,
        coverage=coverage,
        recommended_max_length=recommended,
        truncated_share={cut: float((lengths > cut).mean()) for cut in cutoffs},
        padding_share={cut: padding_share(lengths, cut) for cut in cutoffs},
    )


def recommend(lengths: np.ndarray, coverage: float, model_limit: int) -> int:
    """The smallest multiple of 8 that holds ``coverage`` of the texts whole, capped at the model's limit."""
    needed = float(np.quantile(lengths, coverage, method="higher"))
    return int(min(model_limit, max(8, int(np.ceil(needed / 8.0)) * 8)))


def padding_share(lengths: np.ndarray, max_length: int) -> float:
    """Share of tokens that are padding when every text is padded (or cut) to ``max_length``."""
    real = np.minimum(lengths, max_length).sum()
    return float(1.0 - real / (max_length * lengths.size))
