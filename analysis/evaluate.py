"""Paired evaluation: every model samples every prompt from the same seeds; every image is scored.

``evaluate_models`` returns the per-image table (model, prompt, seed, score, per-attribute
correctness for the judge); ``summarise`` turns it into the summary (mean with bootstrap 95% CI,
paired win rate against the baseline with CI, per-attribute accuracy).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.stats import bootstrap_ci, win_rate
from dde.toy.judge import ATTRIBUTES
from dde.toy.report import judged_samples


def evaluate_models(models: dict, prompts: list[str], *, seeds: int = 2, steps: int = 25, guidance: float = 5.0,
                    seed: int = 0, batch: int = 64, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Per-image judge scores of each model; image (prompt i, repeat k) uses seed
    ``seed + k * len(prompts) + i`` for every model, so rows pair up by (prompt, seed)."""
    all_prompts = [p for _ in range(seeds) for p in prompts]
    all_seeds = [seed + k * len(prompts) + i for k in range(seeds) for i in range(len(prompts))]
    rows = []
    for name, backend in models.items():
        for prompt, s, _, verdict in judged_samples(backend, all_prompts, all_seeds, steps=steps, guidance=guidance,
                                                    batch=batch, progress=progress):
            rows.append({"model": name, "prompt": prompt, "seed": s, "score": verdict.total,
                         **{f"ok_{a}": verdict.correct.get(a, np.nan) for a in ATTRIBUTES}})
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, baseline: str | None = None, *, seed: int = 0) -> pd.DataFrame:
    """One row per model: n, mean score with 95% CI, win rate vs ``baseline`` (paired by prompt and
    seed, ties count 1/2) with 95% CI, and per-attribute accuracy."""
    rows = []
    base = table[table.model == baseline].set_index(["prompt", "seed"]).score if baseline else None
    for name, part in table.groupby("model", sort=False):
        lo, hi = bootstrap_ci(part.score, seed=seed)
        row = {"model": name, "n": len(part), "score": part.score.mean(), "score_lo": lo, "score_hi": hi}
        if base is not None and name != baseline:
            paired = part.set_index(["prompt", "seed"]).score.reindex(base.index)
            outcome = win_rate(paired.to_numpy(), base.to_numpy())
            row["win_rate"] = outcome.mean()
            row["win_lo"], row["win_hi"] = bootstrap_ci(outcome, seed=seed)
        for a in ATTRIBUTES:
            col = part[f"ok_{a}"].dropna()
            row[f"acc_{a}"] = col.astype(float).mean() if len(col) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table of ``frame`` (floats to ``digits`` places, NaN as blank)."""
    def fmt(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    header = "| " + " | ".join(map(str, frame.columns)) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in frame.itertuples(index=False))
