"""Pick the Compare tab's example prompts: the training-split scenes where the shipped DDE model
and the base model differ most on the app's default settings, so a first-time visitor sees the
difference on the first click.

    python -m bench.make_examples                 # writes assets/compare_examples.json

Each candidate (training-split captions spread over the split; never a held-out scene) is sampled
by both models from the app's default noise (seeds 0..3, 25 DDIM steps, the base's guidance); the
judge scores every image; the examples are the prompts with the largest mean gain of the tuned
model, listed with both mean scores.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m bench.make_examples", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=96, help="training-split captions to try")
    ap.add_argument("--examples", type=int, default=6)
    ap.add_argument("--tuned", default="dde", help="the tuned model (a model spec)")
    ap.add_argument("--images", type=int, default=4, help="images per prompt (the app's default)")
    ap.add_argument("--out", default=str(ROOT / "assets" / "compare_examples.json"))
    args = ap.parse_args(argv)
    import pandas as pd

    from dde.backends.spec import load_model
    from dde.io import atomic_write_json
    from dde.toy.report import judged_samples, training_prompts_spread

    t0 = time.time()
    prompts = training_prompts_spread(args.candidates)
    means = {}
    for name, spec in (("base", "base"), ("tuned", args.tuned)):
        backend = load_model(spec)
        # the app's Compare: image k of every prompt starts from the noise of seed k, for every model
        scores = [(p, j.total) for k in range(args.images)
                  for p, _, _, j in judged_samples(backend, prompts, [k] * len(prompts), steps=25)]
        means[name] = pd.DataFrame(scores, columns=["prompt", "score"]).groupby("prompt").score.mean()
    base, tuned = means["base"], means["tuned"]
    gain = (tuned - base).sort_values(ascending=False)
    picks = [{"prompt": p, "base": round(float(base[p]), 4), "tuned": round(float(tuned[p]), 4),
              "gain": round(float(gain[p]), 4)} for p in gain.index[: args.examples]]
    meta = {"command": "python -m bench.make_examples " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%F %T %Z"), "seconds": round(time.time() - t0, 1), "candidates": len(prompts),
            "images_per_prompt": args.images, "tuned": args.tuned, "mean_gain_over_candidates": float(gain.mean()),
            "examples": picks}
    atomic_write_json(meta, args.out)
    for p in picks:
        print(f"{p['gain']:+.3f}  {p['base']:.3f} -> {p['tuned']:.3f}  {p['prompt']}")
    return Path(args.out)


if __name__ == "__main__":
    main()
