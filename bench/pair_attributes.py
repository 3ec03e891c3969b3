"""What a preference-pair file can teach, attribute by attribute: the judge's reading of every image.

    python -m bench.pair_attributes [assets/toy-pairs.parquet] [--limit N]

For each attribute: how often the images get it right, how often the two images of a pair differ on
it (only those pairs contrast it), and how often the preferred image is the right one there. Then
the per-caption accuracy of the shape (a caption the model always or never gets right contributes
no shape contrast), the confusion of asked and drawn shapes, and the fill ratio the judge measures
on images asked for a square (the judge calls a shape a square above a fill of 0.92).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import pandas as pd
from PIL import Image

from dde.toy.judge import ATTRIBUTES, judge
from dde.toy.world import parse_caption


def judge_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per image: pair, which image, caption, preferred, per attribute right (NaN where the
    caption does not name it), the drawn shape and the fill ratio."""
    rows = []
    for r in frame.itertuples():
        for j, data in ((0, r.jpg_0), (1, r.jpg_1)):
            g = judge(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), r.caption)
            rows.append({"pair": r.Index, "image": j, "caption": r.caption,
                         "preferred": (r.label_0 == 1) == (j == 0), "drawn_shape": g.predicted.get("shape"),
                         "fill": g.features.get("fill", np.nan),
                         **{a: float(g.correct[a]) if a in g.correct else np.nan for a in ATTRIBUTES}})
    return pd.DataFrame(rows)


def contrast_table(images: pd.DataFrame) -> pd.DataFrame:
    """Per attribute: right (share of images), pairs differing, preferred image right where they differ."""
    first, second = images[images.image == 0].set_index("pair"), images[images.image == 1].set_index("pair")
    out = []
    for a in ATTRIBUTES:
        named = first[a].notna()
        x, y = first.loc[named, a].astype(bool), second.loc[named, a].astype(bool)
        differ = x != y
        preferred_right = np.where(first.loc[named, "preferred"], x, y)[differ.to_numpy()]
        out.append({"attribute": a, "images": int(2 * named.sum()), "right": float(np.r_[x, y].mean()),
                    "pairs_differing": float(differ.mean()),
                    "preferred_right_where_differing": float(preferred_right.mean()) if len(preferred_right)
                    else np.nan})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.pair_attributes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="?", default="assets/toy-pairs.parquet")
    ap.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    args = ap.parse_args(argv)
    frame = pd.read_parquet(args.pairs, columns=["caption", "jpg_0", "jpg_1", "label_0"])
    frame = frame[frame.label_0.isin([0.0, 1.0])]  # a tie (0.5) prefers neither image
    if args.limit:
        frame = frame.head(args.limit)
    images = judge_pairs(frame)
    table = contrast_table(images)
    pct = {c: "{:.1%}".format for c in ("right", "pairs_differing", "preferred_right_where_differing")}
    print(f"{args.pairs}: {len(frame)} pairs\n")
    print(table.to_string(index=False, formatters=pct))
    per_caption = images.groupby("caption")["shape"].mean()
    bins = pd.cut(per_caption, [-0.001, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]).value_counts().sort_index()
    print(f"\nshape right per caption ({len(per_caption)} captions; how many captions in each band):")
    print(bins.to_string())
    asked = images.caption.map(lambda c: parse_caption(c).shape)
    confusion = pd.crosstab(asked.rename("asked"), images.drawn_shape.fillna("none").rename("drawn"),
                            normalize="index")
    print("\nasked shape -> drawn shape (share of images):")
    print(confusion.round(2).to_string())
    fill = images.loc[asked == "square", "fill"].dropna()  # no fill: the judge found no shape
    quantiles = fill.quantile([0.1, 0.5, 0.9, 0.97])
    print(f"\nfill ratio of images asked for a square ({len(fill)} with a shape): "
          + ", ".join(f"q{int(100 * q)} {v:.3f}" for q, v in quantiles.items())
          + f"; above 0.92 (called a square): {(fill > 0.92).mean():.1%}")
    return {"table": table, "per_caption": per_caption, "confusion": confusion, "square_fill": fill}


if __name__ == "__main__":
    main()
