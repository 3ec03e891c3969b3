"""Paired evaluation: every model samples every prompt from the same seeds; every image is scored.

``evaluate_models`` returns the per-image table (model, prompt, seed, score, per-attribute
correctness for the judge); ``summarise`` turns it into the summary (mean with bootstrap 95% CI,
paired win rate against the baseline with CI, per-attribute accuracy).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.scorers import JudgeScorer
from analysis.stats import bootstrap_ci, win_rate
from dde.images import to_uint8
from dde.toy.judge import ATTRIBUTES


def evaluate_models(models: dict, prompts: list[str], *, seeds: int = 2, steps: int = 25, guidance: float | None = None,
                    seed: int = 0, batch: int = 64, scorers: dict | None = None,
                    progress: Callable[[int], None] | None = None, callback=None) -> pd.DataFrame:
    """Per-image scores of each model under each scorer (default: the toy judge).

    Image (prompt i, repeat k) starts from the noise of seed ``seed + k * len(prompts) + i`` for every
    model, so rows pair up by (prompt, seed). Columns: model, prompt, seed, ``score`` (the first
    scorer's), ``score_<name>`` per scorer, and ``ok_<attribute>`` when the judge is among them.
    ``progress(n)`` after each batch of n images; ``callback(i, steps)`` after every DDIM step (it
    may raise to cancel).
    """
    scorers = scorers or {"judge": JudgeScorer()}
    all_prompts = [p for _ in range(seeds) for p in prompts]
    all_seeds = [seed + k * len(prompts) + i for k in range(seeds) for i in range(len(prompts))]
    rows = []
    for name, backend in models.items():
        for start in range(0, len(all_prompts), batch):
            chunk, chunk_seeds = all_prompts[start:start + batch], all_seeds[start:start + batch]
            images = to_uint8(backend.sample(chunk, seeds=chunk_seeds, steps=steps, guidance=guidance,
                                               callback=callback).images.numpy())
            verdicts = scorers["judge"].judgements(images, chunk) if "judge" in scorers else None
            scores = {k: (np.array([v.total for v in verdicts]) if k == "judge" else scorer.score(images, chunk))
                      for k, scorer in scorers.items()}
            for i, (prompt, s) in enumerate(zip(chunk, chunk_seeds)):
                row = {"model": name, "prompt": prompt, "seed": s, "score": scores[next(iter(scores))][i],
                       **{f"score_{k}": v[i] for k, v in scores.items()}}
                if verdicts is not None:
                    row.update({f"ok_{a}": verdicts[i].correct.get(a, np.nan) for a in ATTRIBUTES})
                rows.append(row)
            if progress is not None:
                progress(len(chunk))
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
            col = part[f"ok_{a}"].dropna() if f"ok_{a}" in part else pd.Series(dtype=float)
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
