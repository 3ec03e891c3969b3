"""Generate the world's preference pairs from the base model, labelled by the judge, resumably.

    python -m bench.make_pairs --out assets/toy-pairs.parquet --prompts 6500

Each prompt is a training-split caption (every training scene once per round, rounds shuffled; the
held-out scenes never appear). For prompt i the base model draws two images from seeds
``seed + 2i`` and ``seed + 2i + 1``: a pair is two independent samples, not chosen by their
difference (so the two images of a pair estimate the prompt-conditional variance without bias).
The judge scores both; the label is a Bradley-Terry draw,
``P(image 0 preferred) = sigmoid((score_0 - score_1) / temperature)`` (the annotator's noise),
from a generator seeded by (seed, i); pairs whose scores differ by less than --tie-margin are
ties and are dropped. Output: the Pick-a-Pic v2 column schema (caption, jpg_0, jpg_1 as PNG bytes,
label_0, label_1) plus the judge's scores and the seeds, as parquet, and a JSON sidecar with the
command, the settings and the pairing rule.

Resume: chunks of --chunk prompts are written to --work as they finish; running the same command
again samples only the chunks that are missing, so an interrupted run neither repeats nor
duplicates pairs.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from dde.data import png_bytes, write_parquet
from dde.images import to_uint8
from dde.io import atomic_write_json
from dde.toy.judge import judge
from dde.toy.world import split_scenes

PAIRING = ("two independent base-model samples per prompt (image seeds seed+2i and seed+2i+1), "
           "not selected by their difference; label: Bradley-Terry draw on the judge scores; ties dropped")


def bradley_terry_labels(s0: np.ndarray, s1: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """1.0 where image 0 wins a draw with P = sigmoid((s0 - s1) / temperature), else 0.0."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    p0 = 1.0 / (1.0 + np.exp(-(np.asarray(s0) - np.asarray(s1)) / temperature))
    return (rng.random(len(p0)) < p0).astype(np.float64)


def training_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of training scenes: every scene once per round, each round shuffled."""
    train, _ = split_scenes(seed=0)
    rng = np.random.default_rng(seed)
    rounds = math.ceil(n / len(train))
    order = np.concatenate([rng.permutation(len(train)) for _ in range(rounds)])[:n]
    return [train[i].caption for i in order]


def sample_pairs(backend, prompts: list[str], first: int, *, seed: int = 0, steps: int = 20,
                 guidance: float | None = None, batch: int = 64) -> pd.DataFrame:
    """Unlabelled pairs for ``prompts``, numbered from ``first``: pair i draws its images from seeds
    ``seed + 2i`` and ``seed + 2i + 1`` (an image depends only on model, prompt and seed)."""
    rows = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        ids = [first + start + k for k in range(len(chunk))]
        seeds = [seed + 2 * i + j for i in ids for j in (0, 1)]
        out = backend.sample([p for p in chunk for _ in range(2)], seeds=seeds, steps=steps, guidance=guidance)
        images = to_uint8(out.images.numpy())
        for k, (caption, i) in enumerate(zip(chunk, ids)):
            a, b = images[2 * k], images[2 * k + 1]
            rows.append({"pair": i, "caption": caption, "jpg_0": png_bytes(a), "jpg_1": png_bytes(b),
                         "score_0": judge(a, caption).total, "score_1": judge(b, caption).total,
                         "seed_0": seed + 2 * i, "seed_1": seed + 2 * i + 1})
    return pd.DataFrame(rows)


def label_pairs(frame: pd.DataFrame, *, seed: int, temperature: float, tie_margin: float) -> tuple[pd.DataFrame, dict]:
    """Bradley-Terry labels (pair i's draw from a generator seeded by (seed, i)); ties dropped."""
    p0 = 1.0 / (1.0 + np.exp(-(frame.score_0 - frame.score_1).to_numpy() / temperature))
    u = np.array([np.random.default_rng([seed, int(i)]).random() for i in frame.pair])
    frame = frame.assign(label_0=(u < p0).astype(np.float64))
    frame["label_1"] = 1.0 - frame.label_0
    ties = (frame.score_0 - frame.score_1).abs() < tie_margin
    agrees = ((frame.score_0 > frame.score_1) == (frame.label_0 == 1))[~ties]
    stats = {"generated": len(frame), "ties_dropped": int(ties.sum()), "label_agrees_with_judge": float(agrees.mean())}
    columns = ["caption", "jpg_0", "jpg_1", "label_0", "label_1", "score_0", "score_1", "seed_0", "seed_1", "pair"]
    return frame.loc[~ties, columns].reset_index(drop=True), stats


def generate(backend, n: int, work: Path, *, seed: int = 0, steps: int = 20, guidance: float | None = None,
             chunk: int = 256, batch: int = 64, progress: bool = True) -> pd.DataFrame:
    """All ``n`` unlabelled pairs, sampling only the chunks missing from ``work`` (resume)."""
    work.mkdir(parents=True, exist_ok=True)
    prompts = training_prompts(n, seed)
    starts = list(range(0, n, chunk))
    bar = tqdm(total=n, desc="pairs", disable=not progress, dynamic_ncols=True)
    parts = []
    for start in starts:
        path = work / f"part-{start:07d}-{min(start + chunk, n):07d}.parquet"
        if not path.is_file():
            write_parquet(sample_pairs(backend, prompts[start:start + chunk], start, seed=seed, steps=steps,
                                       guidance=guidance, batch=batch), path)
        parts.append(pd.read_parquet(path))
        bar.update(min(chunk, n - start))
    bar.close()
    return pd.concat(parts, ignore_index=True)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m bench.make_pairs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="toy model directory (default: the shipped base model)")
    ap.add_argument("--out", default="assets/toy-pairs.parquet")
    ap.add_argument("--work", default="runs/toy-pairs", help="folder of finished chunks (resume from here)")
    ap.add_argument("--prompts", type=int, default=6500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps per image")
    ap.add_argument("--guidance", type=float, default=None, help="default: the model's default guidance")
    ap.add_argument("--temperature", type=float, default=0.05, help="Bradley-Terry temperature (annotator noise)")
    ap.add_argument("--tie-margin", type=float, default=0.01)
    ap.add_argument("--chunk", type=int, default=256, help="prompts per resumable chunk")
    ap.add_argument("--batch", type=int, default=64, help="prompts per sampling batch")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.temperature <= 0:
        ap.exit(2, f"error: --temperature must be positive, got {args.temperature}\n")
    import torch

    from dde.backends.toy import ToyBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = ToyBackend.load(args.model)
    guidance = backend.default_guidance if args.guidance is None else args.guidance
    work = Path(args.work)
    # what the chunks depend on (labels are drawn afterwards; more prompts extend the same order)
    settings = {k: getattr(args, k) for k in ("model", "seed", "steps", "chunk")} | {"guidance": guidance}
    _check_work(work, settings, ap)
    t0 = time.time()
    frame = generate(backend, args.prompts, work, seed=args.seed, steps=args.steps, guidance=guidance,
                     chunk=args.chunk, batch=args.batch)
    frame, stats = label_pairs(frame, seed=args.seed, temperature=args.temperature, tie_margin=args.tie_margin)
    seconds = json.loads((work / "time.json").read_text())["seconds"] if (work / "time.json").is_file() else 0.0
    seconds += time.time() - t0
    atomic_write_json({"seconds": seconds}, work / "time.json")
    command = "python -m bench.make_pairs " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {**vars(args), "model": args.model or "assets/toy-base", "guidance": guidance, **stats,
            "pairs": len(frame), "pairing": PAIRING, "seconds": round(seconds, 1), "command": command,
            "threads": torch.get_num_threads()}
    path = write_parquet(frame, args.out, meta)
    atomic_write_json(meta, Path(args.out).with_suffix(".json"))  # the same facts, readable without pyarrow
    print(json.dumps(meta, indent=2))
    return path


def _check_work(work: Path, settings: dict, ap: argparse.ArgumentParser) -> None:
    """A resume must continue the same settings, or its chunks would mix two pair sets."""
    path = work / "settings.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(settings)):
            ap.exit(2, f"error: {work} holds chunks made with other settings ({saved}); use another --work\n")
    else:
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(settings, path)


if __name__ == "__main__":
    main()
