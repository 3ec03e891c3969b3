"""Where a tuned model's judge gain comes from, and how much room the judge leaves.

    python -m bench.gain_anatomy [runs/make_tuned] [--renders 4]

Reads the held-out evaluation tables that ``bench.make_tuned`` cached in its runs folder
(``final/<variant>-s<seed>/eval-held-out-final.csv`` and ``final/base/``: every model on the same
prompts and noise) and prints, per model, the mean judge score, the share of images with the right
shape, and the mean score of the images with the right shape and with the wrong one: a gain made
by turning wrong shapes right moves the share; a gain made by better-drawn images moves both means.
Then the ceiling: the judge's mean score of ground-truth renders of the same held-out prompts
(``--renders`` jittered renders each), i.e. what a perfect model would score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.jobs import ROOT


def anatomy(runs: Path) -> pd.DataFrame:
    rows = []
    for table in sorted((runs / "final").glob("*/eval-held-out-final.csv")):
        t = pd.read_csv(table)
        name = table.parent.name
        rows.append({"model": name, "variant": name.rsplit("-s", 1)[0] if name != "base" else "base", "n": len(t),
                     "score": t.score.mean(), "shape_right": t.ok_shape.mean(),
                     "score_shape_right": t[t.ok_shape].score.mean(), "score_shape_wrong": t[~t.ok_shape].score.mean()})
    if not rows:
        raise SystemExit(f"no held-out tables under {runs / 'final'}: run python -m bench.make_tuned first")
    return pd.DataFrame(rows)


def ceiling(renders: int, seed: int = 0) -> float:
    """Mean judge score of ``renders`` ground-truth renders of every held-out prompt."""
    from dde.toy.judge import judge
    from dde.toy.report import held_out_prompts
    from dde.toy.world import parse_caption, render

    rng = np.random.default_rng(seed)
    return float(np.mean([judge(render(parse_caption(p), rng), p).total
                          for p in held_out_prompts() for _ in range(renders)]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.gain_anatomy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="?", default=str(ROOT / "runs" / "make_tuned"))
    ap.add_argument("--renders", type=int, default=4)
    args = ap.parse_args(argv)
    table = anatomy(Path(args.runs))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nceiling: ground-truth renders of the held-out prompts score {ceiling(args.renders):.3f} "
          f"({args.renders} renders each)")


if __name__ == "__main__":
    main()
