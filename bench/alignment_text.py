"""docs/RESULTS.md for the alignment study: every number comes from the tables the study wrote.

The reading is generated from the intervals: a difference is called a difference only where its
95% interval excludes zero, and every statement carries its interval (its power)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.evaluate import markdown_table
from dde.toy.judge import ATTRIBUTES


def _iv(lo, hi) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]"


def _compare(name: str, value: float, lo: float, hi: float, other: str) -> str:
    """One sentence on a paired difference, decided by its interval."""
    if lo > 0:
        verdict = f"better than {other}"
    elif hi < 0:
        verdict = f"worse than {other}"
    else:
        verdict = f"not distinguishable from {other} (the interval contains 0)"
    return f"{name} is {verdict}: {value:+.3f} {_iv(lo, hi)}"


def reading(summary: pd.DataFrame, reach: dict) -> str:
    s = summary.set_index("variant")
    lines = []
    d = s.loc["dde"]
    half = (d.vs_dpo_hi - d.vs_dpo_lo) / 2
    verdict = _compare("DDE", d.vs_dpo, d.vs_dpo_lo, d.vs_dpo_hi, "Diffusion-DPO")
    lines.append(f"- **DDE vs Diffusion-DPO** (the question): {verdict}; interval half-width {half:.3f} "
                 f"(target 0.02: {'reached' if half <= 0.02 else 'NOT reached'}).")
    for v in s.index.drop(["base"]):
        r = s.loc[v]
        lines.append(f"- {_compare(v, r.vs_base, r.vs_base_lo, r.vs_base_hi, 'the base model')}; win rate "
                     f"{r.win_rate:.1%} [{r.win_lo:.1%}, {r.win_hi:.1%}]"
                     + (f"; against Diffusion-DPO {r.vs_dpo:+.3f} {_iv(r.vs_dpo_lo, r.vs_dpo_hi)}"
                        if v != "dpo" and pd.notna(r.get("vs_dpo")) else "") + ".")
    for half_name in ("dde-step", "dde-single"):
        if half_name in s.index:
            diff = s.loc["dde"].score - s.loc[half_name].score
            lines.append(f"- DDE against its {half_name.split('-')[1]} half ({half_name}): mean score difference "
                         f"{diff:+.3f} (intervals of each against Diffusion-DPO above).")
    if reach:
        target = next(iter(reach.values()))["target"]
        parts = []
        for v, r in reach.items():
            if r["step"] is None:
                parts.append(f"{v}: not reached within the horizon ({r['reached_share']:.0%} of bootstrap replicates "
                             "reach it)")
            else:
                parts.append(f"{v}: step {r['step']} (95% interval {r['lo']:.0f}-{r['hi']:.0f}, reached in "
                             f"{r['reached_share']:.0%} of replicates)")
        lines.append(f"- **Speed**: steps to reach Diffusion-DPO's best mean curve score ({target:.3f}): "
                     + "; ".join(parts) + ".")
    return "\n".join(lines)


def _tuning_md(tuning: pd.DataFrame, chosen: dict) -> str:
    out = []
    for variant, part in tuning.groupby("variant", sort=False):
        best = part.loc[part.groupby(["beta", "lr"]).score.idxmax()]
        table = best.pivot_table(index="beta", columns="lr", values="score")
        steps = best.pivot_table(index="beta", columns="lr", values="step")
        cells = table.map(lambda x: f"{x:.3f}").astype(str) + " @" + steps.map(lambda x: f"{x:.0f}").astype(str)
        cells.columns = [f"lr {c:g}" for c in cells.columns]
        c = chosen[variant]
        edge = (f" The choice lies on the grid's edge ({', '.join(c['edges'])}) after widening." if c.get("edges")
                else " The choice is inside the grid.")
        out.append(f"**{variant}** (best mean tune score @ its best step, per beta and learning rate): chosen "
                   f"beta {c['beta']:g}, lr {c['lr']:g}, {c['steps']} steps (tune score {c['tune_score']:.3f})."
                   f"{edge}{' The stopping step is the horizon.' if c.get('step_on_edge') else ''}\n\n"
                   + markdown_table(cells.reset_index().rename(columns={"beta": "beta"})))
    return "\n".join(out)


def results_markdown(meta: dict, summary: pd.DataFrame, curve: pd.DataFrame, reach: dict, weights: pd.DataFrame,
                     tuning: pd.DataFrame, out: Path, results_path: Path, notes: list[str]) -> str:
    def rel(p) -> str:
        p = Path(p)
        return p.relative_to(results_path.parent).as_posix() if p.is_relative_to(results_path.parent) else str(p)

    fig = lambda name: f"![{name}]({rel(out / (name + '.png'))})\n" if (out / f"{name}.png").is_file() else ""  # noqa: E731
    main_cols = ["variant", "seeds", "n", "score", "score_lo", "score_hi", "vs_base", "vs_base_lo", "vs_base_hi",
                 "vs_dpo", "vs_dpo_lo", "vs_dpo_hi", "win_rate", "win_lo", "win_hi"]
    acc = ["variant"] + [f"acc_{a}" for a in ATTRIBUTES]
    curve_md = markdown_table(curve.pivot(index="step", columns="series", values="value").reset_index())
    discussion = ""
    if (out / "discussion.md").is_file():  # hand-written after reading the numbers, kept apart from them
        discussion = ("\n## Discussion\n\n(Written by hand after reading the numbers above: "
                      f"`{rel(out / 'discussion.md')}`.)\n\n" + (out / "discussion.md").read_text().strip() + "\n")
    shapes = "\n".join(f"- {v}: {_peak(weights, v)}" for v in meta["variants"]) if len(weights) else ""
    chosen = meta["chosen"]
    return f"""# Results: the alignment study on the embedded world

Generated by `{meta['command']}`; machine: {meta['machine']}.
{_history_md(meta)} Every number and figure below is read from the files in `{rel(out)}/`, which the
same command wrote; nothing is typed in by hand except the marked discussion.

## Reading

{reading(summary, reach)}

## Setup

- Data: the shipped preference pairs (`assets/toy-pairs.parquet`); model: the shipped toy base
  model with a LoRA, trained by the trainer and presets users run (`configs/toy-<variant>.yaml`).
- Tuning, the same budget for dpo, dde and dde-closed: one beta x learning-rate grid, training seed
  1000 (never used again), checkpoints every {meta['every']} steps up to {meta['max_steps']}, each scored by the
  judge on {meta['prompts']['tune']} training-split prompts (1 image each, DDIM {meta['sample_steps']} steps); the best
  (beta, lr, step) per method. The ablations use dde's choice.
- Main: {len(meta['variants'])} variants x {meta['seeds']} fresh training seeds. Every model samples the
  {meta['prompts']['held-out']} held-out scenes' prompts (never in pretraining nor the pairs)
  {meta['eval_seeds']} times, from the same noise as every other model (DDIM 25 steps, the base
  model's default guidance); the judge scores each image.
- Statistics: means pooled over training seeds; "vs_base" and "vs_dpo" are paired differences on
  the same images; win rate against the base on the same (prompt, noise), ties 1/2. 95% intervals
  from a bootstrap that resamples each model's training seeds once per replicate and the prompts
  within (jointly across models). "seed_scores" are per-seed means: the seed-to-seed spread.

{_tuning_md(tuning, chosen)}
## Judge score against the base model and Diffusion-DPO

{markdown_table(summary.reindex(columns=main_cols))}
Per training seed: {'; '.join(f"{r.variant} {r.seed_scores}" for r in summary.itertuples())}.

{fig('scores')}
Per-attribute accuracy (share of images where the judge finds the attribute right):

{markdown_table(summary.reindex(columns=acc))}
## Learning curves

Mean judge score on the first {meta['prompts']['curve']} held-out prompts (1 image each) at every {meta['every']} steps,
pooled over training seeds (step 0 is the base model); intervals in `{rel(out / 'curve.csv')}`:

{curve_md}
{fig('learning_curves')}
## The credit weight each variant trained with

Calibrated variants use each run's final calibration table (mean over seeds):

{shapes}

{fig('credit_weights')}
{discussion}
{chr(10).join('- ' + n for n in notes)}
"""


def _peak(weights: pd.DataFrame, variant: str) -> str:
    part = weights[weights.series == variant]
    if part.empty:
        return "n/a"
    w = part.value.to_numpy()
    if w[w > 0].max() - w[w > 0].min() < 1e-9:
        return f"flat on [{int(part.t[part.value > 0].min())}, {int(part.t[part.value > 0].max()) + 1})"
    mass = lambda lo, hi: w[lo:hi].sum() / w.sum()  # noqa: E731
    return (f"peak at t = {int(part.t.iloc[w.argmax()])}, {100 * mass(200, 700):.0f}% of the mass in [200, 700), "
            f"{100 * mass(800, 1000):.0f}% in [800, 1000)")


def _history_md(meta: dict) -> str:
    stages = ", ".join(f"{k} {v} min" for k, v in meta["minutes"].items())
    runs = meta.get("history", [])
    if len(runs) < 2:
        return f"Wall time: {stages}."
    parts = "; ".join(f"{h['date']}: {h['minutes']} min" for h in runs)
    return (f"Wall time, per invocation of the command into this folder (an invocation reuses the jobs finished "
            f"before it and redoes missing ones): {parts}; the last one's stages: {stages}.")
