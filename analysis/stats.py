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


def per_prompt(table, value: str = "score"):
    """A per-image table (columns prompt, seed, train_seed, ``value``) -> prompts x training seeds
    matrix of means over each prompt's images (sampling seeds)."""
    return table.pivot_table(index="prompt", columns="train_seed", values=value, aggfunc="mean")


def seed_bootstrap(a, b=None, *, n: int = 4000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """95% interval of ``mean(a)`` (or ``mean(a) - mean(b)``) for prompts x training-seeds matrices
    (DataFrames with aligned prompt index; :func:`per_prompt`).

    Each replicate resamples every matrix's training seeds once (columns, with replacement: one draw
    of seeds for all prompts, so the seed-to-seed spread counts in full) and the prompts jointly
    (rows, with replacement: the paired unit, every model saw the same prompts and noise). A matrix
    with one column (the base model) is resampled over prompts only.
    """
    import pandas as pd

    mats = [a] if b is None else [a, b]
    index = mats[0].index
    for m in mats[1:]:
        if not m.index.equals(index):
            raise ValueError("the matrices must hold the same prompts in the same order")
    values = [pd.DataFrame(m).to_numpy(dtype=np.float64) for m in mats]
    if any(np.isnan(v).any() for v in values):
        raise ValueError("a prompt lacks a score for some training seed")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(index), size=(n, len(index)))
    stats = np.zeros(n)
    for k, v in enumerate(values):
        cols = rng.integers(0, v.shape[1], size=(n, v.shape[1]))
        per_prompt_mean = v[:, cols].mean(axis=2).T  # [n, prompts]: each replicate's seeds
        replicate = np.take_along_axis(per_prompt_mean, rows, axis=1).mean(axis=1)
        stats += replicate if k == 0 else -replicate
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def paired_outcomes(model, base):
    """Per image of ``model`` (prompt, seed, train_seed, score): 1 if it beats the base model's image
    from the same prompt and noise, 1/2 on a tie, 0 if it loses (column ``win``)."""
    ref = base.drop_duplicates(["prompt", "seed"]).set_index(["prompt", "seed"]).score
    b = ref.reindex(list(zip(model.prompt, model.seed))).to_numpy()
    if np.isnan(b).any():
        raise ValueError("some images have no base-model image from the same prompt and seed")
    return model.assign(win=win_rate(model.score.to_numpy(), b))
