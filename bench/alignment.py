"""The alignment study on the embedded world: does DDE's credit assignment beat uniform credit?

    python -m bench.alignment                # tune, train, evaluate, write docs/RESULTS.md (resumable)
    python -m bench.alignment --report-only  # rewrite docs/RESULTS.md from the study's saved outputs
    python -m bench.alignment --status       # where the study stands, from its ledger (runs nothing)

Stages, all with the trainer and sampler users run (configs/toy-<variant>.yaml on the shipped pairs):

1. tune (equal budget): dpo, dde and dde-closed each train on the same beta x learning-rate grid
   (at least 3 x 3) with tuning seed 1000 (never used again), checkpointed every --every steps up
   to --max-steps; every checkpoint samples --tune-prompts *training-split* prompts from fixed noise
   and the judge scores them. Each method's (beta, lr, stopping step) is the best mean score. While a
   method's choice lies on an edge of the grid, the grid grows one step beyond that edge, for every
   method alike (up to --widen times).
2. main: every variant x --seeds fresh training seeds. dpo, dde and dde-closed use their own
   choices; the ablations (dde-step, dde-single, window, gamma, spo-window) use dde's. Every model
   (and the base) samples every held-out prompt --eval-seeds times from the same noise; the judge
   scores each image. dpo, dde and dde-closed also score every checkpoint on the first
   --curve-prompts held-out prompts: the learning curves.
3. report: paired statistics (bootstrap resampling training seeds once per replicate and prompts
   within), the DDE - Diffusion-DPO difference with its interval, steps to reach Diffusion-DPO's
   best score, tables and figures under docs/alignment/ and docs/RESULTS.md.

Jobs run in --workers processes of --threads torch threads. Finished runs and scored tables are not
redone: an interrupted study resumes where it stopped, and each invocation is recorded
(<out>/invocations.json). Each finished job's tables (and the credit weight a main-stage run trained
with) are also kept in <out>/jobs/, which is committed: the study resumes from it on a fresh clone
whose --runs folder is empty, and the report needs nothing else. --budget-minutes bounds one
invocation: no job starts after it, the running ones finish, and the command exits with status 3 and
a message to run it again.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from bench.jobs import (  # noqa: F401 (choose is re-exported)
    ROOT,
    BudgetSpentError,
    Job,
    Scoring,
    choose,
    grid_scores,
    machine_line,
    preset,
    progress_printer,
    record_invocation,
    run_jobs,
    run_name,
    tuning_jobs,
)
from dde import credit
from dde.toy.report import held_out_prompts, training_prompts_spread

TUNED = ("dpo", "dde", "dde-closed")  # each tuned on the same grid; every other variant is an ablation
VARIANTS = tuple(credit.variant_names())
ABLATIONS = tuple(v for v in VARIANTS if v not in TUNED)
CURVE_VARIANTS = TUNED
BETAS = (250.0, 1000.0, 4000.0)
LRS = (1e-4, 3e-4, 1e-3)
WIDEN_FACTOR = {"beta": 4.0, "lr": 3.0}


def _config(variant: str, **overrides) -> dict:
    """The variant's preset with the study's overrides (no judge probe: the study scores its own prompts)."""
    return preset(variant, judge_prompts=0, **overrides)


# ----- 1. tuning --------------------------------------------------------------------------------
def tune(args, runs: Path, log) -> tuple[pd.DataFrame, dict]:
    """Run the grid (widening it while a choice sits on an edge); returns every (variant, beta, lr,
    step) score and the choice per variant."""
    betas, lrs = sorted(args.betas), sorted(args.lrs)
    prompts = training_prompts_spread(args.tune_prompts)
    steps = list(range(args.every, args.max_steps + 1, args.every))
    for widening in range(args.widen + 1):
        jobs = tuning_jobs(TUNED, betas, lrs, prompts, every=args.every, max_steps=args.max_steps,
                           sample_steps=args.sample_steps, folder=runs / "tune", ledger=args.ledger / "tune")
        grid = grid_scores(run_jobs(jobs, workers=args.workers, threads=args.threads, log=log, deadline=args.deadline))
        chosen = choose(grid)
        edges = grid_edges(chosen, betas, lrs)
        if not edges or widening == args.widen:
            break
        for axis, side in edges:  # grow the shared grid one step beyond each edge a choice sits on
            values = betas if axis == "beta" else lrs
            new = values[-1] * WIDEN_FACTOR[axis] if side == "high" else values[0] / WIDEN_FACTOR[axis]
            values.append(new)
            values.sort()
        print(f"widening the grid ({edges}): betas {betas}, lrs {lrs}", flush=True)
    for variant, c in chosen.items():
        c["edges"] = [f"{a} {s}" for a, s in grid_edges({variant: c}, betas, lrs)]
        c["step_on_edge"] = c["steps"] == steps[-1]
    return grid, chosen


def grid_edges(chosen: dict[str, dict], betas, lrs) -> list[tuple[str, str]]:
    """(axis, side) of every grid edge some variant's choice lies on."""
    edges = set()
    for c in chosen.values():
        for axis, values in (("beta", betas), ("lr", lrs)):
            if c[axis] == min(values):
                edges.add((axis, "low"))
            if c[axis] == max(values):
                edges.add((axis, "high"))
    return sorted(edges)


# ----- 2. main ------------------------------------------------------------------------------------
def main_stage(args, runs: Path, chosen: dict, log) -> tuple[pd.DataFrame, pd.DataFrame, list[Job]]:
    """Every variant x seed, evaluated on the held-out prompts; curves for the tuned methods."""
    held = held_out_prompts(args.prompts)
    curve_steps = list(range(args.every, args.max_steps + 1, args.every))
    jobs = []
    for variant, seed in itertools.product(args.variants, range(args.seeds)):
        c = chosen[variant if variant in chosen else "dde"]
        curve = variant in CURVE_VARIANTS
        total = args.max_steps if curve else c["steps"]  # curves run to the common horizon
        final = Scoring("held-out", held, [c["steps"] if curve and c["steps"] < total else None],
                        seeds=args.eval_seeds, sample_steps=25, seed=0)
        scorings = [final] + ([Scoring("curve", held[:args.curve_prompts], curve_steps, seeds=1, sample_steps=25,
                                       seed=0)] if curve else [])
        name = run_name(variant, c["beta"], c["lr"], seed)
        cfg = _config(variant, beta=c["beta"], lr=c["lr"], seed=seed, steps=total,
                      checkpoint_every=args.every if curve else total,
                      keep_checkpoints_every=args.every if curve else 0, output_dir=str(runs / "main" / name))
        jobs.append(Job(name, cfg, scorings, ledger=str(args.ledger / "main"), credit=True))
    base_scorings = [Scoring("held-out", held, [None], seeds=args.eval_seeds, sample_steps=25, seed=0),
                     Scoring("curve", held[:args.curve_prompts], [None], seeds=1, sample_steps=25, seed=0)]
    jobs.append(Job("base", None, base_scorings, out=str(runs / "main" / "base"), ledger=str(args.ledger / "main")))
    jobs.sort(key=lambda j: j.config is None or j.config["variant"] not in CURVE_VARIANTS)  # longest first
    done = run_jobs(jobs, workers=args.workers, threads=args.threads, log=log, deadline=args.deadline)
    finals, curves = [], []
    for job in done:
        variant = "base" if job.config is None else job.config["variant"]
        seed = -1 if job.config is None else job.config["seed"]
        finals.append(job.result["tables"]["held-out"].assign(variant=variant, train_seed=seed))
        if "curve" in job.result["tables"]:
            table = job.result["tables"]["curve"]
            curves.append(table.assign(variant=variant, train_seed=seed, step=table.step.clip(lower=0)))
    return pd.concat(finals, ignore_index=True), pd.concat(curves, ignore_index=True), done


# ----- the study ----------------------------------------------------------------------------------
def study(args) -> Path:
    from dde.io import atomic_write_json

    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    args.ledger = out / "jobs"
    times, t_start = {}, time.time()

    log = progress_printer(t_start)
    args.deadline = None if not args.budget_minutes else t_start + 60 * args.budget_minutes
    t0 = time.time()
    try:
        grid, chosen = tune(args, runs, log)
        grid.to_csv(out / "tuning.csv", index=False)
        times["tune"] = time.time() - t0
        print("chosen:", json.dumps(chosen), flush=True)
        t0 = time.time()
        images, curve, done = main_stage(args, runs, chosen, log)
    except BudgetSpentError as err:
        _record(out, {"date": time.strftime("%F %T %Z"), "minutes": round((time.time() - t_start) / 60, 1),
                      "stopped": str(err)})
        raise
    images.to_csv(out / "images.csv", index=False)
    curve.to_csv(out / "curve_images.csv", index=False)
    times["main"] = time.time() - t0
    meta = {"command": " ".join(["python -m bench.alignment", shlex.join(args.argv)]).strip(),
            "date": time.strftime("%F %T %Z"), "machine": machine_line(args.workers, args.threads),
            "chosen": chosen, "variants": list(args.variants), "seeds": args.seeds, "eval_seeds": args.eval_seeds,
            "max_steps": args.max_steps, "every": args.every, "sample_steps": args.sample_steps,
            "prompts": {"held-out": len(held_out_prompts(args.prompts)), "tune": args.tune_prompts,
                        "curve": args.curve_prompts},
            "runs": _rel(runs), "ledger": _rel(args.ledger), "minutes": {k: round(v / 60, 1) for k, v in times.items()}
            | {"total": round((time.time() - t_start) / 60, 1)},
            "train_minutes": {j.name: round(j.result["run_seconds"] / 60, 2) for j in done if j.config is not None}}
    meta["history"] = _record(out, {"date": meta["date"], "minutes": meta["minutes"]["total"],
                                    "trained": sorted(j.name for j in done if j.result.get("train_seconds", 0) > 0)})
    atomic_write_json(meta, out / "study.json")
    from bench.alignment_report import report

    return report(out, png=not args.no_png, results=args.results)


def status(args) -> str:
    """Where the study stands, read from its ledger (<out>/jobs) alone: nothing is trained or sampled.
    Every job the ledger does not hold counts as not started."""
    args.ledger, args.deadline, args.workers = Path(args.out) / "jobs", 0.0, 1
    runs = Path(args.runs)
    lines = []

    def left(err: BudgetSpentError, stage: str) -> str:
        kept = [j.result["recorded_seconds"] for j in err.finished if j.config is not None]
        mean = sum(kept) / len(kept) if kept else None
        eta = (f"; at the kept runs' mean of {mean:.0f} s a job, about {(err.total - err.done) * mean / 60 / 2:.0f} "
               "min on 2 workers" if mean and stage == "tuning" else "")
        return f"{stage}: {err.done} of {err.total} jobs kept, {err.total - err.done} to run{eta}" + (
            " (the grid may still widen)" if stage == "tuning" else "")

    try:
        grid, chosen = tune(args, runs, None)
    except BudgetSpentError as err:
        lines.append(left(err, "tuning"))
        trained = [j for j in err.finished if j.config is not None]
        if trained:
            for variant, c in choose(grid_scores(trained)).items():
                lines.append(f"  best so far: {variant} beta {c['beta']:g}, lr {c['lr']:g}, step {c['steps']}: "
                             f"{c['tune_score']:.3f}")
        lines.append("main stage: not started (it needs the tuning's choices)")
        return "\n".join(lines)
    lines.append("tuning: complete; chosen: " + "; ".join(f"{v} beta {c['beta']:g}, lr {c['lr']:g}, step {c['steps']} "
                                                         f"({c['tune_score']:.3f})" for v, c in chosen.items()))
    try:
        main_stage(args, runs, chosen, None)
    except BudgetSpentError as err:
        lines.append(left(err, "main stage"))
        return "\n".join(lines)
    lines.append("main stage: complete; `python -m bench.alignment` writes the report from the ledger")
    return "\n".join(lines)


def _record(out: Path, invocation: dict) -> list[dict]:
    """Append one invocation (finished or stopped by its budget) to <out>/invocations.json; returns all
    (invocations recorded before that file existed lived in study.json's history)."""
    study, log = out / "study.json", out / "invocations.json"
    seed = not log.is_file() and study.is_file()  # study.json is read only to start the log
    earlier = json.loads(study.read_text()).get("history", []) if seed else []
    return record_invocation(log, invocation, earlier)


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m bench.alignment", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--seeds", type=int, default=5, help="fresh training seeds per variant in the main stage")
    ap.add_argument("--eval-seeds", type=int, default=2, help="images per held-out prompt")
    ap.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    ap.add_argument("--lrs", type=float, nargs="+", default=list(LRS))
    ap.add_argument("--widen", type=int, default=2, help="times the grid may grow past an edge")
    ap.add_argument("--max-steps", type=int, default=300, help="training horizon of tuning runs and curves")
    ap.add_argument("--every", type=int, default=25, help="checkpoint interval (tuning and curves)")
    ap.add_argument("--sample-steps", type=int, default=20, help="DDIM steps of the tuning samples")
    ap.add_argument("--prompts", type=int, default=None, help="held-out prompts to evaluate (default: all 97)")
    ap.add_argument("--tune-prompts", type=int, default=48, help="training-split prompts scored while tuning")
    ap.add_argument("--curve-prompts", type=int, default=48, help="held-out prompts scored at each checkpoint")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--budget-minutes", type=float, default=135,
                    help="start no job after this many minutes (running ones finish; rerun to continue; 0: no limit)")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "alignment"), help="where the runs go (not committed)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "alignment"), help="tables and figures")
    ap.add_argument("--results", default=None, help="the markdown report (default: <out>/../RESULTS.md)")
    ap.add_argument("--no-png", action="store_true", help="skip PNG export (needs chromium)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from <out> without running")
    ap.add_argument("--status", action="store_true",
                    help="print where the study stands (jobs kept in <out>/jobs, best tuning scores) and run nothing")
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    if not {"dpo", "dde"} <= set(args.variants):
        ap.error("the study compares dde with dpo: both must be among --variants")
    from bench.alignment_report import report

    if args.report_only:
        return report(Path(args.out), png=not args.no_png, results=args.results)
    if args.status:
        print(status(args))
        return Path(args.out)
    try:
        return study(args)
    except BudgetSpentError as err:
        ap.exit(3, f"stopped: {err}\n")


if __name__ == "__main__":
    main()
