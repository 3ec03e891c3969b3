"""The alignment study's statistics and report (docs/RESULTS.md), from the files the study wrote.

Every interval is a 95% bootstrap that resamples each model's training seeds once per replicate
(one draw of seeds for all prompts, so the seed-to-seed spread counts in full) and the held-out
prompts within (jointly for every model: the paired unit, since every model saw the same prompts
and noise). See :func:`analysis.stats.seed_bootstrap`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.stats import paired_outcomes, per_prompt, seed_bootstrap
from bench.alignment import CURVE_VARIANTS, VARIANTS
from dde.toy.judge import ATTRIBUTES

N_BOOT = 4000


def summary_table(images: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean score; paired difference to the base and to dpo; win rate against the base;
    per-attribute accuracy; per-seed means. Each with its 95% interval."""
    base, dpo = images[images.variant == "base"], images[images.variant == "dpo"]
    rows = []
    for variant in [v for v in ("base",) + VARIANTS if v in set(images.variant)]:
        part = images[images.variant == variant]
        m = per_prompt(part)
        row = {"variant": variant, "seeds": part.train_seed.nunique(), "n": len(part), "score": part.score.mean()}
        row["score_lo"], row["score_hi"] = seed_bootstrap(m, n=N_BOOT)
        if variant != "base":
            row["vs_base"] = part.score.mean() - base.score.mean()
            row["vs_base_lo"], row["vs_base_hi"] = seed_bootstrap(m, per_prompt(base), n=N_BOOT)
            wins = per_prompt(paired_outcomes(part, base), "win")
            row["win_rate"] = float(wins.to_numpy().mean())
            row["win_lo"], row["win_hi"] = seed_bootstrap(wins, n=N_BOOT)
        if variant not in ("base", "dpo") and len(dpo):
            row["vs_dpo"] = part.score.mean() - dpo.score.mean()
            row["vs_dpo_lo"], row["vs_dpo_hi"] = seed_bootstrap(m, per_prompt(dpo), n=N_BOOT)
        row["seed_scores"] = " / ".join(f"{v:.3f}" for v in m.mean().to_numpy())
        for a in ATTRIBUTES:
            row[f"acc_{a}"] = part[f"ok_{a}"].astype(float).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _curve_arrays(curve: pd.DataFrame, variant: str) -> tuple[list[int], np.ndarray, pd.Index]:
    """Steps (0 = the base model) and a [steps, prompts, seeds] array of per-prompt means."""
    base = curve[curve.variant == "base"]
    part = curve[curve.variant == variant]
    steps = [0] + sorted(part.step.unique().tolist())
    mats = []
    seeds = sorted(part.train_seed.unique())
    for step in steps:
        at = base.assign(train_seed=0) if step == 0 else part[part.step == step]
        m = per_prompt(at)
        if step == 0:
            m = pd.concat([m.iloc[:, 0]] * len(seeds), axis=1, keys=seeds)
        mats.append(m)
    index = mats[0].index
    return steps, np.stack([m.reindex(index).to_numpy() for m in mats]), index


def curve_table(curve: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Mean held-out score against training step per curve variant, with 95% intervals, and the
    steps each needs to reach Diffusion-DPO's best mean score on the same curve (median and 95%
    interval of the first step at or above it, per bootstrap replicate; None where not reached)."""
    variants = [v for v in CURVE_VARIANTS if v in set(curve.variant)]
    arrays = {v: _curve_arrays(curve, v) for v in variants}
    n_prompts = next(iter(arrays.values()))[1].shape[1]
    rng = np.random.default_rng(0)
    rows_idx = rng.integers(0, n_prompts, size=(N_BOOT, n_prompts))
    boot = {}
    for v, (_, arr, _) in arrays.items():  # [replicate, step] curve means
        cols = rng.integers(0, arr.shape[2], size=(N_BOOT, arr.shape[2]))
        seed_means = arr[:, :, cols].mean(axis=3)  # [steps, prompts, replicates]
        boot[v] = np.take_along_axis(seed_means.transpose(2, 0, 1), rows_idx[:, None, :], axis=2).mean(axis=2)
    rows = []
    for v, (steps, arr, _) in arrays.items():
        mean = arr.mean(axis=(1, 2))
        lo, hi = np.quantile(boot[v], [0.025, 0.975], axis=0)
        rows += [{"series": v, "step": s, "value": mean[i], "lo": lo[i], "hi": hi[i]} for i, s in enumerate(steps)]
    reach = {}
    if "dpo" in arrays:
        target_point = arrays["dpo"][1].mean(axis=(1, 2))[1:].max()
        target_boot = boot["dpo"][:, 1:].max(axis=1)
        for v, (steps, arr, _) in arrays.items():
            first = _first_reach(arr.mean(axis=(1, 2))[None, :], np.array([target_point]), steps)[0]
            firsts = _first_reach(boot[v], target_boot, steps)
            reached = firsts[~np.isnan(firsts)]
            reach[v] = {"step": None if np.isnan(first) else int(first),
                        "reached_share": float(len(reached) / len(firsts)),
                        "lo": float(np.quantile(reached, 0.025)) if len(reached) else None,
                        "hi": float(np.quantile(reached, 0.975)) if len(reached) else None,
                        "target": float(target_point)}
    return pd.DataFrame(rows), reach


def _first_reach(curves: np.ndarray, targets: np.ndarray, steps: list[int]) -> np.ndarray:
    """Per row of ``curves`` [R, steps], the first trained step (> 0) whose value reaches the row's
    target (a tolerance of 1e-12 so that Diffusion-DPO reaches its own best), NaN if none."""
    hit = curves[:, 1:] >= targets[:, None] - 1e-12
    first = np.where(hit.any(axis=1), np.asarray(steps[1:])[hit.argmax(axis=1)], np.nan)
    return first.astype(float)


def credit_table(meta: dict, ledger: Path) -> pd.DataFrame:
    """The credit weight each variant trained with: the mean over its main-stage runs of the weight each
    run trained with (its final calibration for the calibrated variants), from the study's ledger
    (``ledger``: <out>/jobs/main; the runs this study used: those in its train_minutes)."""
    frames = []
    names = set(meta.get("train_minutes", {}))
    records = [json.loads(p.read_text()) for p in sorted(ledger.glob("*/job.json")) if p.parent.name in names]
    for v in meta["variants"]:
        ws = [r["credit"] for r in records if r.get("config") and r["config"]["variant"] == v and "credit" in r]
        if ws:
            w = np.mean(ws, axis=0)
            frames.append(pd.DataFrame({"t": np.arange(len(w)), "series": v, "value": w, "lo": w, "hi": w}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def report(out: Path, png: bool = True, results: str | None = None) -> Path:
    from analysis import plots
    from analysis.figures import write_figures
    from dde.io import atomic_write_text

    meta = json.loads((out / "study.json").read_text())
    images = pd.read_csv(out / "images.csv")
    summary = summary_table(images)
    summary.to_csv(out / "summary.csv", index=False)
    figures = {"scores": plots.evaluation_figure(summary.rename(columns={"variant": "model"}))}
    curve, reach = curve_table(pd.read_csv(out / "curve_images.csv"))
    curve.to_csv(out / "curve.csv", index=False)
    figures["learning_curves"] = plots.lines_with_bands(
        curve, "step", title="Judge score on held-out prompts vs training step (95% interval)",
        x_title="training step", y_title="mean judge score")
    weights = credit_table(meta, out / "jobs" / "main")
    if len(weights):
        weights.to_csv(out / "credit_weights.csv", index=False)
        figures["credit_weights"] = plots.credit_weights_figure(weights.drop(columns=["lo", "hi"]))
    notes = write_figures(out, figures, png)
    tuning = pd.read_csv(out / "tuning.csv")
    results_path = Path(results) if results else out.parent / "RESULTS.md"
    from bench.alignment_text import results_markdown

    text = results_markdown(meta, summary, curve, reach, weights, tuning, out, results_path, notes)
    atomic_write_text(text, results_path)
    print(summary.drop(columns=["seed_scores"]).to_string(index=False))
    return results_path
