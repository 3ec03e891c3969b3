"""Small statistics used by every table: bootstrap confidence intervals and paired win rates."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, *, stat=np.mean, n: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` over ``values`` (1-D). NaN bounds for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = stat(x[rng.integers(0, x.size, size=(n, x.size))], axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def win_rate(a, b) -> np.ndarray:
    """Per-pair outcome of ``a`` against ``b``: 1 win, 0.5 tie, 0 loss."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have one shape, got {a.shape} and {b.shape}")
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
