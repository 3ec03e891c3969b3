"""Generate preference pairs from the base model, labelled by the judge.

    python -m dde.toy.pairs --model assets/toy-base --out assets/toy-pairs.parquet --prompts 2000

For each prompt (training scenes, cycled in a seeded order) the base model draws two samples with
different seeds; the judge scores both; the label is a Bradley-Terry draw,
P(image 0 preferred) = sigmoid((score_0 - score_1) / temperature), the annotator's noise. Pairs whose
scores differ by less than --tie-margin count as ties and are dropped. The output follows the
Pick-a-Pic v2 column schema (caption, jpg_0, jpg_1 as PNG bytes, label_0, label_1) plus the judge's
scores and the seeds, as parquet; the command line is stored in the file's metadata.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from dde.io import atomic_write_json
from dde.toy.judge import judge
from dde.toy.world import from_model, split_scenes


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def bradley_terry_labels(s0: np.ndarray, s1: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """1.0 where image 0 wins a draw with P = sigmoid((s0 - s1) / temperature), else 0.0."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    p0 = 1.0 / (1.0 + np.exp(-(np.asarray(s0) - np.asarray(s1)) / temperature))
    return (rng.random(len(p0)) < p0).astype(np.float64)


def generate_pairs(backend, prompts: list[str], *, seed: int = 0, steps: int = 20, guidance: float | None = None,
                   temperature: float = 0.05, tie_margin: float = 0.01, batch: int = 64,
                   progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Sample two images per prompt (seeds ``seed + 2i`` and ``seed + 2i + 1``), judge, label."""
    rows, rng = [], np.random.default_rng(seed)
    bar = tqdm(total=len(prompts), desc="pairs", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        both = [p for p in chunk for _ in range(2)]
        out = backend.sample(both, seed=seed + 2 * start, steps=steps, guidance=guidance)
        images = from_model(out.images.numpy())
        for k, caption in enumerate(chunk):
            i = start + k
            s0, s1 = judge(images[2 * k], caption).total, judge(images[2 * k + 1], caption).total
            rows.append({"caption": caption, "jpg_0": png_bytes(images[2 * k]), "jpg_1": png_bytes(images[2 * k + 1]),
                         "score_0": s0, "score_1": s1, "seed_0": seed + 2 * i, "seed_1": seed + 2 * i + 1})
        bar.update(len(chunk))
    bar.close()
    frame = pd.DataFrame(rows)
    labels = bradley_terry_labels(frame.score_0.to_numpy(), frame.score_1.to_numpy(), temperature, rng)
    frame["label_0"], frame["label_1"] = labels, 1.0 - labels
    ties = (frame.score_0 - frame.score_1).abs() < tie_margin
    stats = {"generated": len(frame), "ties_dropped": int(ties.sum()),
             "label_agrees_with_judge": float(((frame.score_0 > frame.score_1) == (frame.label_0 == 1))[~ties].mean())}
    return frame[~ties].reset_index(drop=True), stats


def training_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of training scenes: every scene once per round, each round shuffled."""
    train, _ = split_scenes(seed=0)
    rng = np.random.default_rng(seed)
    rounds = math.ceil(n / len(train))
    order = np.concatenate([rng.permutation(len(train)) for _ in range(rounds)])[:n]
    return [train[i].caption for i in order]


def write_parquet(frame: pd.DataFrame, path: str | Path, metadata: dict) -> Path:
    """Write atomically (temporary file, then rename) with ``metadata`` in the parquet schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dde.io import _atomic

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"dde": json.dumps(metadata).encode()})
    return _atomic(path, lambda tmp: pq.write_table(table, tmp))


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m dde.toy.pairs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="toy model directory (default: the shipped base model)")
    ap.add_argument("--out", default="assets/toy-pairs.parquet")
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=None, help="default: the model's default guidance")
    ap.add_argument("--temperature", type=float, default=0.05, help="Bradley-Terry temperature (annotator noise)")
    ap.add_argument("--tie-margin", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    from dde.backends.toy import ToyBackend

    backend = ToyBackend.load(args.model)
    t0 = time.time()
    frame, stats = generate_pairs(backend, training_prompts(args.prompts, args.seed), seed=args.seed,
                                  steps=args.steps, guidance=args.guidance, temperature=args.temperature,
                                  tie_margin=args.tie_margin, batch=args.batch)
    command = "python -m dde.toy.pairs " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {**vars(args), **stats, "pairs": len(frame), "seconds": round(time.time() - t0, 1), "command": command,
            "model": args.model or "assets/toy-base",
            "guidance": backend.default_guidance if args.guidance is None else args.guidance}
    path = write_parquet(frame, args.out, meta)
    atomic_write_json(meta, Path(args.out).with_suffix(".json"))  # the same facts, readable without pyarrow
    print(json.dumps(meta, indent=2))
    return path


if __name__ == "__main__":
    main()
