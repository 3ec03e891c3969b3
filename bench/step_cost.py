"""Training-step cost of every credit variant relative to Diffusion-DPO, same model and batch.

    python -m bench.step_cost [--backend toy|sd-tiny] [--rounds 12] [--batch-pairs 16]
    python -m bench.step_cost --finetune-steps 200        # also time a whole toy fine-tune

One training session per variant (each its own LoRA and optimizer) on the same data; steps are
interleaved round-robin in one process, in a shuffled order each round, and the median step time
per variant is compared with dpo's. Peak memory: CUDA's max allocated per variant on a GPU, the
process's peak RSS on a CPU. Targets (issue 4): DDE's step at most 1.05x DPO's; a 200-step toy
fine-tune under 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.common import machine, verdict
from dde import credit
from dde.config import TrainConfig


def _sessions(args, root: Path) -> dict:
    from dde.train import setup

    kw = {}
    if args.backend == "sd-tiny":
        from dde.testing import rendered_pairs, tiny_sd_pipeline

        kw = {"backend": "sd", "model": str(tiny_sd_pipeline(root / "sd")), "resolution": 16}
        rendered_pairs(64).to_parquet(root / "pairs.parquet")
        kw["data"] = str(root / "pairs.parquet")
    elif args.model:
        kw["model"] = args.model
    sessions = {}
    for variant in args.variants:
        cfg = TrainConfig(variant=variant, batch_pairs=args.batch_pairs, steps=10_000, lora_rank=8,
                          calibration_batches=2, output_dir=str(root / variant), **kw)
        sessions[variant] = setup(cfg)
    return sessions


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.step_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["toy", "sd-tiny"], default="toy")
    ap.add_argument("--model", default=None, help="toy model directory (default: the shipped base model)")
    ap.add_argument("--variants", nargs="+", default=credit.variant_names())
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--batch-pairs", type=int, default=16)
    ap.add_argument("--finetune-steps", type=int, default=0, help="also time a whole toy fine-tune of this many steps")
    args = ap.parse_args(argv)
    if "dpo" not in args.variants:
        args.variants = ["dpo", *args.variants]
    from dde.train import train_step

    root = Path(tempfile.mkdtemp(prefix="dde-bench-"))
    sessions = _sessions(args, root)
    times = {v: [] for v in sessions}
    peaks = {v: 0 for v in sessions}
    order = list(sessions)
    rng = random.Random(0)
    for v in order:  # warm-up step each
        train_step(sessions[v], 0)
    for r in range(args.rounds):
        rng.shuffle(order)
        for v in order:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            train_step(sessions[v], r + 1)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                peaks[v] = max(peaks[v], torch.cuda.max_memory_allocated())
            times[v].append(time.perf_counter() - t0)
    base = statistics.median(times["dpo"])
    print(f"machine: {machine()}")
    print(f"backend {args.backend}, {args.batch_pairs} pairs per step, {args.rounds} interleaved rounds")
    print(f"{'variant':<12} {'median s':>9} {'ratio':>7} {'peak MiB':>9}")
    result = {}
    for v in sessions:
        med = statistics.median(times[v])
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak = peaks[v] / 2**20 if torch.cuda.is_available() else rss_mib
        result[v] = {"median_s": med, "ratio": med / base, "peak_mib": peak}
        print(f"{v:<12} {med:>9.4f} {med / base:>7.3f} {peak:>9.0f}")
    if not torch.cuda.is_available():
        print("(peak on a CPU: the whole process's RSS, not per variant)")
    if "dde" in result:
        print(f"dde / dpo step time: {verdict(result['dde']['ratio'], 1.05)}")
    if args.finetune_steps:
        result["finetune_s"] = _time_finetune(args, root)
    return result


def _time_finetune(args, root: Path) -> float:
    from dde.train import train

    cfg = TrainConfig(variant="dde", steps=args.finetune_steps, batch_pairs=args.batch_pairs,
                      checkpoint_every=50, output_dir=str(root / "finetune"),
                      **({"model": args.model} if args.model else {}))
    t0 = time.perf_counter()
    train(cfg, progress=False)
    seconds = time.perf_counter() - t0
    print(f"{args.finetune_steps}-step toy DDE fine-tune (batch {args.batch_pairs} pairs, with calibration, "
          f"checkpoints and validation): {seconds:.1f} s; target: {verdict(seconds, 180.0)}")
    return seconds


if __name__ == "__main__":
    main()
