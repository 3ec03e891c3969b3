"""Sampling latency of the toy model: 4 images, 25 DDIM steps, classifier-free guidance.

    python -m bench.sampling [--model DIR] [--images 4] [--steps 25] [--repeats 5] [--busy-core]

--side-by-side also times two models (the base and the base with the shipped DDE LoRA, merged, as the
app's Compare loads it) sampling the same request one after another and side by side
(``dde.backends.parallel.sample_side_by_side``, what Compare does).

--busy-core keeps one core busy (another process spinning) while timing, as a browser drawing the
app's page does; compare OpenMP's waiting policies with e.g.
``OMP_WAIT_POLICY=PASSIVE python -m bench.sampling --busy-core`` (the app's default).

Target (issue 3): under 2 s on 2 CPU cores for the shipped base model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

from bench.common import machine, median_seconds, verdict
from dde.backends.parallel import sample_side_by_side


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.sampling", description=__doc__)
    ap.add_argument("--model", default=None, help="toy model directory (default: the shipped base model)")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=None, help="default: the model's default guidance")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--target", type=float, default=2.0)
    ap.add_argument("--busy-core", action="store_true", help="time beside a process that keeps one core busy")
    ap.add_argument("--side-by-side", action="store_true", help="also time two models one after another and at once")
    args = ap.parse_args(argv)
    from dde.backends.toy import ToyBackend

    backend = ToyBackend.load(args.model)
    prompts = ["a big red circle on the left on a black background"] * args.images
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy_core else None
    try:
        median, times = median_seconds(
            lambda: backend.sample(prompts, seed=0, steps=args.steps, guidance=args.guidance), args.repeats)
        if args.side_by_side:
            pair = _two_models(args.model)
            kwargs = {"seed": 0, "steps": args.steps, "guidance": args.guidance}
            in_turn, _ = median_seconds(lambda: [m.sample(prompts, **kwargs) for m in pair], args.repeats)
            at_once, _ = median_seconds(lambda: sample_side_by_side(pair, prompts, lambda k, i, n: None, **kwargs),
                                        args.repeats)
    finally:
        if busy is not None:
            busy.kill()
    print(f"machine: {machine()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
          f"{'; one core kept busy' if busy else ''}")
    print(f"model: {backend.model_path}")
    guidance = backend.default_guidance if args.guidance is None else args.guidance
    print(f"sample {args.images} images x {args.steps} steps, guidance {guidance}: median {median:.3f} s "
          f"over {args.repeats} runs (min {min(times):.3f}, max {max(times):.3f})")
    print(f"target: {verdict(median, args.target)}")
    result = {"median_s": median, "times": times, "threads": torch.get_num_threads()}
    if args.side_by_side:
        print(f"two models (base, base + DDE LoRA merged), {args.images} images x {args.steps} steps each: one after "
              f"another {in_turn:.3f} s, side by side {at_once:.3f} s (ratio {at_once / in_turn:.2f})")
        result |= {"in_turn_s": in_turn, "side_by_side_s": at_once}
    return result


def _two_models(path):
    """The base model and the base with the shipped DDE LoRA merged into it (how the app samples a LoRA)."""
    from dde.backends.spec import SHIPPED
    from dde.backends.toy import ToyBackend

    tuned = ToyBackend.load(path, lora=SHIPPED["dde"])
    tuned.merge_lora()
    return [ToyBackend.load(path), tuned]


if __name__ == "__main__":
    main()
