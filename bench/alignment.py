"""The alignment study on the embedded world: does DDE's credit assignment beat uniform credit?

    python -m bench.alignment                # tune DPO, train 7 variants x 3 seeds, evaluate, write docs/RESULTS.md
    python -m bench.alignment --report-only  # rewrite docs/RESULTS.md from the study's saved outputs

Stages, all with the trainer and sampler users run (configs/toy-<variant>.yaml, the shipped pairs):
1. tune: Diffusion-DPO alone, training seed 0, over a small beta x learning-rate grid, scored by the
   judge on prompts of *training-split* scenes (never the held-out ones); the best pair is then used
   for every variant.
2. main: every variant x every training seed with the tuned beta and learning rate and otherwise
   the same settings; each final LoRA samples every held-out prompt from the same seeds as the base
   model (paired), and the judge scores it. For dpo and dde, the checkpoints every ``--curve-every``
   steps are scored too, on the first ``--curve-prompts`` held-out prompts: the learning curves.
3. report: tables and PNG figures under docs/alignment/ and docs/RESULTS.md, with the command,
   machine, date and stage times.

Jobs run in ``--workers`` processes of ``--threads`` torch threads each (on 2 cores, two 1-thread
workers train ~13% faster than one 2-thread process). A job that finished before is not redone,
so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("dpo", "dde", "dde-closed", "dde-step", "dde-single", "window", "gamma")
CURVE_VARIANTS = ("dpo", "dde")
TUNE_GRID = ((500.0, 3e-4), (500.0, 1e-3), (2000.0, 3e-4), (2000.0, 1e-3))
ATTRS = ("shape", "colour", "size", "position", "background")


# ----- jobs (run in worker processes) ------------------------------------------------------------
def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _job_name(variant: str, beta: float, lr: float, seed: int) -> str:
    return f"{variant}-b{beta:g}-lr{lr:g}-s{seed}"


def run_job(job: dict) -> dict:
    """Train one run (unless it finished before) and score it on each prompt set of the job.
    Returns the job with ``tables``: prompt-set name -> per-image CSV path, and timings."""
    from analysis.evaluate import evaluate_models
    from dde.backends.toy import ToyBackend
    from dde.config import load_config, replace
    from dde.io import atomic_write_text
    from dde.train import train

    t0 = time.time()
    run = Path(job["run"])
    tables, train_seconds = {}, 0.0
    if job["variant"] == "base":
        models = {"final": ToyBackend.load(None)}
    else:
        cfg = replace(load_config(ROOT / "configs" / f"toy-{job['variant']}.yaml"), beta=job["beta"], lr=job["lr"],
                      seed=job["seed"], steps=job["steps"], output_dir=str(run),
                      checkpoint_every=job.get("curve_every") or job["steps"])
        status = run / "status.json"
        if not (status.is_file() and json.loads(status.read_text()).get("status") == "finished"):
            curve_dir = run / "curve"

            def keep(metrics: dict) -> None:  # checkpoints are pruned; keep the LoRAs the curve needs
                step = metrics["step"]
                if job.get("curve_every") and step % job["curve_every"] == 0 and step < cfg.steps:
                    curve_dir.mkdir(exist_ok=True)
                    shutil.copyfile(run / "checkpoints" / f"step-{step:07d}" / "lora.safetensors",
                                    curve_dir / f"step-{step:07d}.safetensors")

            train(cfg, on_step=keep, progress=False)
            train_seconds = time.time() - t0
        models = {"final": ToyBackend.load(None, lora=run / "final" / "lora.safetensors")}
        for path in sorted((run / "curve").glob("step-*.safetensors")):
            models[path.stem] = ToyBackend.load(None, lora=path)
    for set_name, prompts in job["prompt_sets"].items():
        path = run / f"eval-{set_name}.csv"
        if not path.is_file():
            chosen = {k: m for k, m in models.items() if k == "final" or set_name == "curve"}
            table = evaluate_models(chosen, prompts, seeds=1, steps=job["sample_steps"])
            table = table.rename(columns={"model": "checkpoint"})
            atomic_write_text(table.to_csv(index=False), path)
        tables[set_name] = str(path)
    return {**job, "tables": tables, "train_seconds": round(train_seconds, 1), "seconds": round(time.time() - t0, 1)}


def _run_jobs(jobs: list[dict], workers: int, threads: int, log) -> list[dict]:
    done = []
    if workers <= 1:
        _init_worker(threads)
        for job in jobs:
            done.append(run_job(job))
            log(done[-1], len(done), len(jobs))
        return done
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in as_completed(futures):
            done.append(future.result())
            log(done[-1], len(done), len(jobs))
    return done


# ----- the study ---------------------------------------------------------------------------------
def prompt_sets(n_held_out: int | None, n_tune: int, n_curve: int) -> dict[str, list[str]]:
    from dde.toy.world import split_scenes

    train_scenes, held_out = split_scenes()
    held = [s.caption for s in held_out][:n_held_out]
    step = max(1, len(train_scenes) // max(n_tune, 1))
    tune = [s.caption for s in train_scenes[::step]][:n_tune]
    return {"held-out": held, "tune": tune, "curve": held[:n_curve]}


def study(args) -> Path:
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    sets = prompt_sets(args.prompts, args.tune_prompts, args.curve_prompts)
    common = {"steps": args.steps, "sample_steps": args.sample_steps}
    grid = [tuple(map(float, g.split(":"))) for g in args.tune_grid] if args.tune_grid else list(TUNE_GRID)
    times, t_start = {}, time.time()

    def log(job, i, n):
        print(f"[{time.time() - t_start:7.0f} s] {i}/{n} {Path(job['run']).name}: {job['seconds']:.0f} s "
              f"(training {job['train_seconds']:.0f} s)", flush=True)

    def job(variant, beta, lr, seed, sets_for, curve=False):
        return {"variant": variant, "beta": beta, "lr": lr, "seed": seed, **common,
                "run": str(runs / ("base" if variant == "base" else _job_name(variant, beta, lr, seed))),
                "curve_every": args.curve_every if curve else 0, "prompt_sets": {k: sets[k] for k in sets_for}}

    # 1. tune Diffusion-DPO once
    t0 = time.time()
    tuned = []
    if len(grid) > 1:
        # curve=True: the chosen run is reused by the main stage, which scores its checkpoints
        tuned = _run_jobs([job("dpo", b, lr, 0, ["tune"], curve=True) for b, lr in grid], args.workers,
                          args.threads, log)
        tables = [(j, pd.read_csv(j["tables"]["tune"])) for j in tuned]
        scores = pd.DataFrame([{"beta": j["beta"], "lr": j["lr"], "score": t.score.mean(), "n": len(t)}
                               for j, t in tables])
        scores = scores.sort_values(["beta", "lr"]).reset_index(drop=True)
        best = scores.loc[scores.score.idxmax()]
        beta, lr = float(best.beta), float(best.lr)
    else:
        scores, (beta, lr) = pd.DataFrame([{"beta": grid[0][0], "lr": grid[0][1], "score": np.nan, "n": 0}]), grid[0]
    scores.to_csv(out / "tuning.csv", index=False)
    times["tune"] = time.time() - t0
    print(f"tuned for dpo: beta {beta:g}, lr {lr:g}", flush=True)

    # 2. every variant x seed (curve jobs first: they are the longest)
    t0 = time.time()
    jobs = [job(v, beta, lr, s, ["held-out", "curve"] if v in CURVE_VARIANTS else ["held-out"], v in CURVE_VARIANTS)
            for v in sorted(args.variants, key=lambda v: v not in CURVE_VARIANTS) for s in range(args.seeds)]
    jobs.append(job("base", 0.0, 0.0, 0, ["held-out", "curve"]))
    finished = _run_jobs(jobs, args.workers, args.threads, log) + (tuned if len(grid) > 1 else [])
    times["main"] = time.time() - t0
    collect(finished, out)
    command = " ".join(["python -m bench.alignment", shlex.join(args.argv)]).strip()
    meta = {"command": command, "date": time.strftime("%F %T %Z"),
            "machine": _machine(args), "beta": beta, "lr": lr, "grid": [list(g) for g in grid],
            "variants": list(args.variants), "seeds": args.seeds, "steps": args.steps,
            "sample_steps": args.sample_steps,
            "prompts": {k: len(v) for k, v in sets.items()}, "curve_every": args.curve_every,
            "workers": args.workers, "threads": args.threads, "runs": _rel(runs),
            "minutes": {k: round(v / 60, 1) for k, v in times.items()}
            | {"total": round((time.time() - t_start) / 60, 1)},
            "train_seconds": {Path(j["run"]).name: j["train_seconds"] for j in finished}}
    from dde.io import atomic_write_json

    meta["history"] = _history(out / "study.json") + [
        {"date": meta["date"], "minutes": meta["minutes"]["total"],
         "trained": sorted(n for n, s in meta["train_seconds"].items() if s > 0)}]
    atomic_write_json(meta, out / "study.json")
    return report(out, png=not args.no_png, results=args.results)


def _history(path: Path) -> list[dict]:
    """Earlier invocations of the study into the same folder (a resumed study reuses finished jobs,
    so the wall time that trained everything is in an earlier entry)."""
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    return old.get("history") or [{"date": old["date"], "minutes": old["minutes"]["total"],
                                   "trained": sorted(n for n, s in old.get("train_seconds", {}).items() if s > 0)}]


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def _machine(args) -> str:
    import os

    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
            f"torch {torch.__version__}, {args.workers} worker process(es) x {args.threads} thread(s)")


def collect(finished: list[dict], out: Path) -> None:
    """One per-image table of the final models and one of the curve checkpoints, with the run's
    variant and training seed; base rows have variant 'base'."""
    finals, curve = [], []
    for j in finished:
        for set_name, path in j["tables"].items():
            frame = pd.read_csv(path).assign(variant=j["variant"], train_seed=j["seed"])
            if set_name == "held-out":
                finals.append(frame)
            elif set_name == "curve":
                step = [j["steps"] if c == "final" else int(c.split("-")[1]) for c in frame.checkpoint]
                curve.append(frame.assign(step=0 if j["variant"] == "base" else step))
    pd.concat(finals, ignore_index=True).to_csv(out / "images.csv", index=False)
    if curve:
        pd.concat(curve, ignore_index=True).to_csv(out / "curve_images.csv", index=False)


# ----- statistics and the report -------------------------------------------------------------------
def prompt_bootstrap(per_prompt: pd.DataFrame, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% CI of the mean of a prompts x training-seeds matrix, resampling prompts (the paired unit:
    every model sees the same prompts and noise) and, within each, training seeds."""
    values = per_prompt.to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, values.shape[0], size=(n, values.shape[0]))
    cols = rng.integers(0, values.shape[1], size=(n, values.shape[0], values.shape[1]))
    means = np.take_along_axis(values[rows], cols, axis=2).mean(axis=(1, 2))
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summary_table(images: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean judge score and win rate vs the base model (paired by prompt and seed, ties
    1/2), each with a 95% CI resampling prompts then training seeds; per-seed means; accuracies."""
    base = images[images.variant == "base"].set_index(["prompt", "seed"]).score
    rows = []
    for variant, part in images.groupby("variant", sort=False):
        scores = part.pivot_table(index=["prompt", "seed"], columns="train_seed", values="score")
        row = {"variant": variant, "seeds": scores.shape[1], "n": int(scores.size), "score": scores.to_numpy().mean()}
        row["score_lo"], row["score_hi"] = prompt_bootstrap(scores)
        if variant != "base":
            b = base.reindex(scores.index).to_numpy()[:, None]
            wins = pd.DataFrame(np.where(scores > b, 1.0, np.where(scores < b, 0.0, 0.5)), index=scores.index)
            row["win_rate"] = wins.to_numpy().mean()
            row["win_lo"], row["win_hi"] = prompt_bootstrap(wins)
        row["seed_scores"] = " / ".join(f"{v:.3f}" for v in scores.mean().to_numpy())
        for a in ATTRS:
            row[f"acc_{a}"] = part[f"ok_{a}"].astype(float).mean() if f"ok_{a}" in part else np.nan
        rows.append(row)
    order = {v: i for i, v in enumerate(("base",) + VARIANTS)}
    return pd.DataFrame(rows).sort_values("variant", key=lambda s: s.map(order).fillna(99)).reset_index(drop=True)


def curve_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Score vs training step for the curve variants (step 0 is the base model), with 95% CIs."""
    base = curve[curve.variant == "base"]
    rows = []
    for variant in [v for v in CURVE_VARIANTS if v in set(curve.variant)]:
        part = pd.concat([curve[curve.variant == variant], base.assign(variant=variant)])
        for step, at in part.groupby("step"):
            scores = at.pivot_table(index=["prompt", "seed"], columns="train_seed", values="score")
            lo, hi = prompt_bootstrap(scores)
            rows.append({"series": variant, "step": int(step), "value": scores.to_numpy().mean(), "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def credit_table(runs: Path, variants, beta: float, lr: float, seeds: int) -> pd.DataFrame:
    """The credit weight each variant trained with: the final calibration table of every seed for
    the calibrated variants (mean over seeds), the closed form for the others."""
    from analysis.curves import calibration_table_from_run, run_schedule
    from dde import credit
    from dde.config import load_config
    frames = []
    for v in variants:
        cfg = load_config(ROOT / "configs" / f"toy-{v}.yaml")
        ws = []
        for s in range(seeds):
            run = runs / _job_name(v, beta, lr, s)
            schedule = run_schedule(run)
            if schedule is None:
                continue
            table = calibration_table_from_run(str(run), schedule.T) if credit.REGISTRY[v].calibrated else None
            ws.append(credit.weights(v, schedule, table, t_range=tuple(cfg.t_range), **cfg.variant_params).numpy())
        if ws:
            w = np.mean(ws, axis=0)
            frames.append(pd.DataFrame({"t": np.arange(len(w)), "series": v, "value": w, "lo": w, "hi": w}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def report(out: Path, png: bool = True, results: str | None = None) -> Path:
    from analysis import plots
    from analysis.__main__ import write_figures
    from dde.io import atomic_write_text

    meta = json.loads((out / "study.json").read_text())
    images = pd.read_csv(out / "images.csv")
    summary = summary_table(images)
    summary.to_csv(out / "summary.csv", index=False)
    figures = {"scores": plots.evaluation_figure(summary.rename(columns={"variant": "model"}))}
    curve = pd.DataFrame()
    if (out / "curve_images.csv").is_file():
        curve = curve_table(pd.read_csv(out / "curve_images.csv"))
        curve.to_csv(out / "curve.csv", index=False)
        figures["learning_curves"] = plots.lines_with_bands(
            curve, "step", title="Judge score on held-out prompts vs training step (95% CI)",
            x_title="training step", y_title="mean judge score")
    runs = ROOT / meta["runs"]
    weights = credit_table(runs, meta["variants"], meta["beta"], meta["lr"], meta["seeds"])
    if len(weights):
        weights.to_csv(out / "credit_weights.csv", index=False)
        figures["credit_weights"] = plots.credit_weights_figure(weights.drop(columns=["lo", "hi"]))
    notes = write_figures(out, figures, png)
    tuning = pd.read_csv(out / "tuning.csv")
    results_path = Path(results) if results else out.parent / "RESULTS.md"
    atomic_write_text(_results_md(meta, summary, curve, weights, tuning, out, results_path, notes), results_path)
    print(summary.drop(columns=["seed_scores"]).to_string(index=False))
    return results_path


def _peak(weights: pd.DataFrame, variant: str) -> str:
    part = weights[weights.series == variant]
    if part.empty:
        return "n/a"
    w = part.value.to_numpy()
    if np.ptp(w[w > 0]) < 1e-9:
        return f"flat on [{int(part.t[part.value > 0].min())}, {int(part.t[part.value > 0].max()) + 1})"
    mass = lambda lo, hi: w[lo:hi].sum() / w.sum()  # noqa: E731
    return (f"peak at t = {int(part.t.iloc[w.argmax()])}, {100 * mass(200, 700):.0f}% of the mass in [200, 700), "
            f"{100 * mass(800, 1000):.0f}% in [800, 1000)")


def _results_md(meta, summary, curve, weights, tuning, out: Path, results_path: Path, notes) -> str:
    from analysis.evaluate import markdown_table

    def rel(p) -> str:
        p = Path(p)
        return p.relative_to(results_path.parent).as_posix() if p.is_relative_to(results_path.parent) else str(p)

    s = summary.set_index("variant")
    cols = ["variant", "seeds", "n", "score", "score_lo", "score_hi", "win_rate", "win_lo", "win_hi", "seed_scores"]
    acc = ["variant"] + [f"acc_{a}" for a in ATTRS]
    tuning_md = (markdown_table(tuning.astype({"lr": str, "beta": str})) if tuning.score.notna().any()
                 else "(no tuning: one grid point given)\n")
    fig = lambda name: f"![{name}]({rel(out / (name + '.png'))})\n" if (out / f"{name}.png").is_file() else ""  # noqa: E731
    verdict = _verdict(s) if {"dde", "dpo"} <= set(s.index) else "dpo and dde were not both run."
    curve_md = (markdown_table(curve.pivot(index="step", columns="series", values="value").reset_index())
                if len(curve) else "")
    discussion = ""
    if (out / "discussion.md").is_file():  # hand-written after reading the numbers, kept apart from them
        discussion = ("\n## Discussion\n\n(Written by hand after reading the numbers above: "
                      f"`{rel(out / 'discussion.md')}`.)\n\n" + (out / "discussion.md").read_text().strip() + "\n")
    shapes = "\n".join(f"- {v}: {_peak(weights, v)}" for v in meta["variants"]) if len(weights) else ""
    return f"""# Results: the alignment study on the embedded world

Generated by `{meta['command']}` on {meta['date']}; machine: {meta['machine']}.
{_history_md(meta)} Every number and figure
below is read from the files in `{rel(out)}/`, which the same command wrote; nothing is typed in by hand.

## Setup

- Data: the shipped preference pairs (`assets/toy-pairs.parquet`); model: the shipped toy base
  model with a LoRA (rank 8), the trainer and configs users run (`configs/toy-<variant>.yaml`).
- Tuning (once, for Diffusion-DPO only, training seed 0): beta x learning rate over
  {', '.join(f'({b:g}, {lr:g})' for b, lr in meta['grid'])}, scored by the judge on
  {meta['prompts']['tune']} prompts of training-split scenes (not the held-out ones). Chosen: beta
  {meta['beta']:g}, learning rate {meta['lr']:g}, then used for every variant.
- Main: {len(meta['variants'])} variants x {meta['seeds']} training seeds, {meta['steps']} steps of 16 pairs each,
  identical settings except the variant. Each final model samples the {meta['prompts']['held-out']} held-out
  scenes' prompts (never in pretraining or the pairs) from the same noise as the base model
  (DDIM {meta['sample_steps']} steps, guidance 2.0); the judge scores every image.
- Statistics: mean judge score and win rate against the base model on the same (prompt, noise),
  ties 1/2, pooled over training seeds; 95% CIs by a bootstrap that resamples prompts and, within
  each, training seeds. "seed_scores" are the per-training-seed means, the seed-to-seed spread.

{tuning_md}
## Judge score and win rate against the base model

{markdown_table(summary.reindex(columns=cols))}
{fig('scores')}
Per-attribute accuracy (share of images where the judge finds the attribute right):

{markdown_table(summary.reindex(columns=acc))}
## Learning curves (dpo and dde)

Mean judge score on the first {meta['prompts']['curve']} held-out prompts at every {meta['curve_every']} steps
(step 0 is the base model), pooled over training seeds:

{curve_md}
{fig('learning_curves')}
## The credit weight each variant trained with

Calibrated variants use each run's final calibration table (mean over seeds):

{shapes}

{fig('credit_weights')}
## Reading

{verdict}
{discussion}
{chr(10).join('- ' + n for n in notes)}
"""


def _history_md(meta: dict) -> str:
    stages = ", ".join(f"{k} {v} min" for k, v in meta["minutes"].items())
    runs = meta.get("history", [])
    if len(runs) < 2:
        return f"Wall time: {stages}."
    parts = "; ".join(f"{h['date']}: {h['minutes']} min" for h in runs)
    return (f"Wall time, per invocation of the command into this folder (an invocation reuses the jobs finished "
            f"before it and redoes missing ones): {parts}; the last one's stages: {stages}.")


def _verdict(s: pd.DataFrame) -> str:
    d, p = s.loc["dde"], s.loc["dpo"]
    ci = lambda r: f"[{r.score_lo:.3f}, {r.score_hi:.3f}]"  # noqa: E731
    both = f"judge score {d.score:.3f} {ci(d)} vs {p.score:.3f} {ci(p)}"
    if d.score_lo > p.score_hi:
        head = f"DDE beats Diffusion-DPO here: {both}, the 95% CIs do not overlap."
    elif p.score_lo > d.score_hi:
        head = f"DDE does NOT beat Diffusion-DPO here; Diffusion-DPO is better: {both}, the CIs do not overlap."
    else:
        head = (f"DDE does not beat Diffusion-DPO here: {both}; the 95% CIs overlap, so on this world and budget "
                "the two are not distinguishable.")
    best = s.drop(index="base", errors="ignore").score.idxmax()
    return head + f" The best variant by mean judge score is {best} ({s.loc[best].score:.3f})."


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m bench.alignment", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    ap.add_argument("--steps", type=int, default=200, help="training steps per run")
    ap.add_argument("--sample-steps", type=int, default=25, help="DDIM steps when sampling for evaluation")
    ap.add_argument("--prompts", type=int, default=None, help="held-out prompts to evaluate (default: all 97)")
    ap.add_argument("--tune-prompts", type=int, default=96, help="training-split prompts for tuning DPO")
    ap.add_argument("--tune-grid", nargs="*", default=None, help="beta:lr pairs (default: %(default)s -> "
                    + " ".join(f"{b:g}:{lr:g}" for b, lr in TUNE_GRID) + "); one pair skips tuning")
    ap.add_argument("--curve-every", type=int, default=50, help="checkpoint interval scored for the learning curves")
    ap.add_argument("--curve-prompts", type=int, default=48, help="held-out prompts scored at each curve checkpoint")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "alignment"), help="where the runs go (not committed)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "alignment"), help="tables and figures")
    ap.add_argument("--results", default=None, help="the markdown report (default: <out>/../RESULTS.md)")
    ap.add_argument("--no-png", action="store_true", help="skip PNG export (needs chromium)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from <out> without running")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    if args.report_only:
        return report(Path(args.out), png=not args.no_png, results=args.results)
    return study(args)


if __name__ == "__main__":
    main()
