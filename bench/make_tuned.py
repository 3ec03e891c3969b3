"""Train the shipped tuned LoRAs of the embedded world (Diffusion-DPO and DDE) with the trainer users
run, choosing their settings on training-split prompts only, and write their model cards.

    python -m bench.make_tuned                  # tune, train, evaluate, ship (resumable)

1. tune: for dpo and dde, a small beta x learning-rate grid (training seed 1000, never shipped),
   each run checkpointed every --every steps up to --max-steps; every checkpoint samples
   --tune-prompts training-split prompts (held-out scenes never appear) from fixed noise and the
   judge scores them. The (beta, lr, step) with the best mean judge score is written into
   configs/toy-<variant>.yaml (the preset users run).
2. train: each preset with training seeds 0..--seeds-1 (``python -m dde.train --config
   configs/toy-<variant>.yaml --set seed=k``); seed 0's LoRA is the one shipped.
3. evaluate: every final LoRA and the base model sample the held-out scenes' prompts from the same
   noise (--eval-seeds per prompt); judge score, paired win rate and per-attribute accuracy with
   bootstrap 95% intervals, and the spread across training seeds.
4. ship: assets/toy-<variant>/ with the LoRA, its config, its run's logs, card.json and MODEL_CARD.md.

Jobs already done (runs finished, tables written) are not redone: rerun the command to resume.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from bench.jobs import ROOT, TUNE_SEED, Job, Scoring, base_score, choose, grid_scores, preset, run_jobs, tuning_jobs
from dde.toy.judge import ATTRIBUTES as ATTRS
from dde.toy.report import held_out_prompts, training_prompts_spread

VARIANTS = ("dpo", "dde")


def tune(args, runs: Path, log) -> tuple[pd.DataFrame, float]:
    """Every (variant, beta, lr) of the grid, every checkpoint scored on training-split prompts; and
    the base model's mean score on the same prompts and noise (step 0 of every run)."""
    jobs = tuning_jobs(VARIANTS, args.betas, args.lrs, training_prompts_spread(args.tune_prompts), every=args.every,
                       max_steps=args.max_steps, sample_steps=args.sample_steps, folder=runs / "tune")
    done = run_jobs(jobs, workers=args.workers, threads=args.threads, log=log)
    return grid_scores(done), base_score(done)


def write_preset(variant: str, chosen: dict, command: str) -> Path:
    """configs/toy-<variant>.yaml: the shared toy preset with this variant's chosen settings."""
    from dde.io import atomic_write_text

    path = ROOT / "configs" / f"toy-{variant}.yaml"
    text = (f"# Toy-world fine-tune, variant {variant}: the shared preset (toy.yaml) with the beta, learning rate\n"
            f"# and steps chosen on training-split prompts by `{command}`\n"
            f"# (tuning table: assets/toy-{variant}/MODEL_CARD.md). Run: python -m dde.train --config {path.name}\n"
            f"base: toy.yaml\nvariant: {variant}\nbeta: {chosen['beta']:g}\nlr: {chosen['lr']:g}\n"
            f"steps: {chosen['steps']}\noutput_dir: runs/toy-{variant}\n")
    return atomic_write_text(text, path)


def train_and_evaluate(args, runs: Path, log) -> tuple[pd.DataFrame, list[Job]]:
    """Each preset x training seed, and the base model, on the held-out prompts (paired noise)."""
    prompts = held_out_prompts()
    scoring = Scoring("held-out", prompts, [None], seeds=args.eval_seeds, sample_steps=25, seed=0)
    jobs = [Job(f"{v}-s{k}", preset(v, seed=k, output_dir=str(runs / "final" / f"{v}-s{k}")), [scoring])
            for v in VARIANTS for k in range(args.seeds)]
    jobs.append(Job("base", None, [scoring], out=str(runs / "final" / "base")))
    done = run_jobs(jobs, workers=args.workers, threads=args.threads, log=log)
    frames = []
    for job in done:
        table = job.result["tables"]["held-out"]
        variant = "base" if job.config is None else job.config["variant"]
        frames.append(table.assign(variant=variant, train_seed=-1 if job.config is None else job.config["seed"]))
    return pd.concat(frames, ignore_index=True), done


def summarise(images: pd.DataFrame) -> pd.DataFrame:
    """Per variant, pooled over training seeds: judge score, paired gain and win rate against the
    base model, each with a 95% interval from a bootstrap that resamples training seeds once per
    replicate and prompts within; per-attribute accuracy; per-seed means (the spread)."""
    from analysis.stats import paired_outcomes, per_prompt, seed_bootstrap

    base = images[images.variant == "base"]
    rows = []
    for variant, part in images.groupby("variant", sort=False):
        scores = per_prompt(part)
        row = {"model": variant, "seeds": part.train_seed.nunique(), "n": len(part), "score": part.score.mean()}
        row["score_lo"], row["score_hi"] = seed_bootstrap(scores)
        if variant != "base":
            row["gain"] = float(part.score.mean() - base.score.mean())
            row["gain_lo"], row["gain_hi"] = seed_bootstrap(scores, per_prompt(base))
            wins = per_prompt(paired_outcomes(part, base), "win")
            row["win_rate"] = float(wins.to_numpy().mean())
            row["win_lo"], row["win_hi"] = seed_bootstrap(wins)
            row["seed_scores"] = " / ".join(f"{v:.3f}" for v in scores.mean().to_numpy())
        for a in ATTRS:
            row[f"acc_{a}"] = part[f"ok_{a}"].astype(float).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def targets(summary: pd.DataFrame) -> dict[str, dict]:
    """The world's targets for each tuned model: gain >= +0.08 with its interval above 0, win rate
    >= 70%, and the base's weakest attribute up by >= 10 points."""
    s = summary.set_index("model")
    acc = {a: s.loc["base", f"acc_{a}"] for a in ATTRS}
    weakest = min(acc, key=acc.get)
    out = {}
    for variant in s.index.drop("base"):
        r = s.loc[variant]
        lift = r[f"acc_{weakest}"] - acc[weakest]
        out[variant] = {"gain >= 0.08": bool(r.gain >= 0.08), "gain interval above 0": bool(r.gain_lo > 0),
                        "win rate >= 70%": bool(r.win_rate >= 0.70),
                        f"weakest attribute ({weakest}) +10 points": bool(lift >= 0.10),
                        "weakest": weakest, "lift": float(lift)}
    return out


def ship(variant: str, run: Path, meta: dict, summary: pd.DataFrame, grid: pd.DataFrame) -> Path:
    """assets/toy-<variant>/: the LoRA, its config, its run's logs, card.json and MODEL_CARD.md."""
    from dde.io import atomic_write_json, atomic_write_text
    from dde.run import CONFIG, LORA, RunDir
    from dde.toy import ASSETS

    out = ASSETS / f"toy-{variant}"
    out.mkdir(parents=True, exist_ok=True)
    source = RunDir(run)
    shutil.copyfile(source.weights(), out / LORA)
    shutil.copyfile(source.final / CONFIG, out / CONFIG)
    shutil.rmtree(out / "run", ignore_errors=True)
    source.copy_logs(out / "run")
    card = {**meta, "variant": variant, "summary": summary.to_dict(orient="records"),
            "tuning": grid[grid.variant == variant].to_dict(orient="records"),
            "inputs": json.loads((Path(run) / "inputs.json").read_text())}  # the base and pairs it was trained on
    atomic_write_json(card, out / "card.json")
    atomic_write_text(_card_markdown(variant, card, summary, grid), out / "MODEL_CARD.md")
    return out


def _card_markdown(variant: str, card: dict, summary: pd.DataFrame, grid: pd.DataFrame) -> str:
    from analysis.evaluate import markdown_table

    name = {"dde": "DDE", "dpo": "Diffusion-DPO"}[variant]
    chosen = card["chosen"][variant]
    s = summary.set_index("model")
    cols = ["model", "seeds", "n", "score", "score_lo", "score_hi", "gain", "gain_lo", "gain_hi", "win_rate",
            "win_lo", "win_hi", "seed_scores"]
    acc = summary[["model"] + [f"acc_{a}" for a in ATTRS]]
    delta = {a: s.loc[variant, f"acc_{a}"] - s.loc["base", f"acc_{a}"] for a in ATTRS}
    down = [f"{a} {100 * d:+.1f} points" for a, d in delta.items() if d < 0]
    tuning = grid[grid.variant == variant].pivot_table(index=["beta", "lr"], columns="step", values="score")
    tuning.columns = [f"step {c}" for c in tuning.columns]
    tuning.insert(0, "step 0 (base)", card["base_tune_score"])
    tuning = tuning.reset_index()
    tuning["beta"], tuning["lr"] = tuning.beta.map("{:g}".format), tuning.lr.map("{:g}".format)
    checks = card["targets"][variant]
    met = "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in checks.items() if isinstance(v, bool))
    return f"""# Toy {name}-tuned LoRA

A LoRA on the shipped toy base model (`assets/toy-base`), trained by the repo's own trainer on the
shipped preference pairs (`assets/toy-pairs.parquet`) with the preset `configs/toy-{variant}.yaml`:
`python -m dde.train --config configs/toy-{variant}.yaml` (training seed 0 is shipped). Its run's
logs are in `run/`. The alignment study comparing every variant with more seeds is
[docs/RESULTS.md](../../docs/RESULTS.md).

- Made by `{card['command']}` on {card['date']} ({card['machine']});
  stage times summed over its invocations (minutes): {card['minutes']}.
- Settings (chosen on training-split prompts only): variant {variant}, beta {chosen['beta']:g},
  learning rate {chosen['lr']:g}, {chosen['steps']} steps of {card['batch_pairs']} pairs, LoRA rank
  {card['lora_rank']}; training time of the shipped seed {card['train_minutes'][variant]:.1f} min.

## Held-out scenes, paired with the base model

{card['held_out_prompts']} held-out scenes (never in pretraining nor in the pairs) x {card['eval_seeds']} seeds,
DDIM 25 steps, the base model's default guidance; every model starts every image from the same
noise. {card['seeds']} training seeds per tuned model, pooled; intervals are 95% from a bootstrap that
resamples training seeds once per replicate and prompts within; "gain" is the paired difference to
the base model's score on the same image; "seed_scores" are the per-seed means (the spread across
training seeds).

{markdown_table(summary.reindex(columns=cols))}
Per-attribute accuracy (share of images where the judge finds the attribute right):

{markdown_table(acc)}
Change against the base model: {', '.join(f'{a} {100 * d:+.1f}' for a, d in delta.items())} points
({'what went down: ' + ', '.join(down) if down else 'no attribute went down'}).

Targets of the world (gain >= +0.08 with its interval above 0, win rate >= 70%, the base's weakest
attribute, {checks['weakest']}, up by >= 10 points; here {100 * checks['lift']:+.1f}): {met}.

## Tuning (training seed {TUNE_SEED}, {card['tune_prompts']} training-split prompts, 1 image each)

Mean judge score at each checkpoint for each beta and learning rate (step 0: the base model on the same
prompts and noise):

{markdown_table(tuning)}
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.make_tuned", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--betas", type=float, nargs="+", default=[250.0, 1000.0, 4000.0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=50, help="checkpoint interval scored while tuning")
    ap.add_argument("--tune-prompts", type=int, default=32)
    ap.add_argument("--sample-steps", type=int, default=20, help="DDIM steps of the tuning samples")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per shipped model (seed 0 ships)")
    ap.add_argument("--eval-seeds", type=int, default=2, help="images per held-out prompt")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "make_tuned"))
    args = ap.parse_args(argv)
    from bench.jobs import machine_line, progress_printer
    from dde.config import load_config
    from dde.run import RunDir

    runs, t_start = Path(args.runs), time.time()
    command = "python -m bench.make_tuned " + shlex.join(argv if argv is not None else sys.argv[1:])

    log = progress_printer(t_start)
    t0 = time.time()
    grid, base_tune = tune(args, runs, log)
    chosen = choose(grid)
    for variant, c in chosen.items():
        write_preset(variant, c, command)
    _record_stage(runs, "tune", t0, command)  # kept if a later stage is interrupted
    t0 = time.time()
    images, done = train_and_evaluate(args, runs, log)
    minutes = _record_stage(runs, "train and evaluate", t0, command)
    summary = summarise(images)
    cfg = load_config(ROOT / "configs" / "toy-dde.yaml")
    meta = {"command": command, "date": time.strftime("%F %T %Z"), "machine": machine_line(args.workers, args.threads),
            "minutes": minutes, "chosen": chosen, "targets": targets(summary), "seeds": args.seeds,
            "eval_seeds": args.eval_seeds, "held_out_prompts": len(held_out_prompts()),
            "tune_prompts": args.tune_prompts, "base_tune_score": base_tune, "batch_pairs": cfg.batch_pairs,
            "lora_rank": cfg.lora_rank,
            "train_minutes": {j.config["variant"]: RunDir(j.config["output_dir"]).status()["seconds"] / 60
                              for j in done if j.config is not None and j.config["seed"] == 0}}
    for variant in VARIANTS:
        ship(variant, runs / "final" / f"{variant}-s0", meta, summary, grid)
    print(summary.to_string(index=False))


def _record_stage(runs: Path, stage: str, t0: float, command: str) -> dict:
    """Log one finished stage to <runs>/invocations.json; returns the minutes per stage summed over every
    invocation into the same runs folder (a resumed invocation only adds what it redid)."""
    from bench.jobs import record_invocation

    entry = {"date": time.strftime("%F %T %Z"), "command": command, "stage": stage,
             "minutes": round((time.time() - t0) / 60, 1)}
    history = record_invocation(runs / "invocations.json", entry)
    totals: dict = {}
    for entry in history:
        totals[entry["stage"]] = round(totals.get(entry["stage"], 0.0) + entry["minutes"], 1)
    return totals


if __name__ == "__main__":
    main()
