"""Judge a backend on a set of scenes: per-attribute accuracy and mean judge score."""

from __future__ import annotations

import numpy as np

from dde.toy.judge import ATTRIBUTES, judge
from dde.toy.world import Scene, from_model


def judge_scenes(backend, scenes: list[Scene], *, seeds: int = 2, steps: int = 25, guidance: float = 5.0,
                 batch: int = 64, seed: int = 0) -> dict:
    """Sample every scene ``seeds`` times (image seed = seed + k * len(scenes) + i) and judge it.

    Returns ``{"n", "total", "accuracy": {attr: frac}, "colour_and_shape": frac, "all_correct": frac}``.
    """
    jobs = [(k, i, s) for k in range(seeds) for i, s in enumerate(scenes)]
    totals, correct = [], {a: [] for a in ATTRIBUTES}
    both, every = [], []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        # one sample call per image keeps image seeds independent of the batch split
        prompts = [s.caption for _, _, s in chunk]
        seeds_ = [seed + k * len(scenes) + i for k, i, _ in chunk]
        images = _sample_with_seeds(backend, prompts, seeds_, steps, guidance)
        for img, (_, _, scene) in zip(images, chunk):
            j = judge(img, scene)
            totals.append(j.total)
            for a, ok in j.correct.items():
                correct[a].append(ok)
            both.append(j.correct["colour"] and j.correct["shape"])
            every.append(all(j.correct.values()))
    return {"n": len(totals), "total": float(np.mean(totals)),
            "accuracy": {a: float(np.mean(v)) for a, v in correct.items() if v},
            "colour_and_shape": float(np.mean(both)), "all_correct": float(np.mean(every))}


def _sample_with_seeds(backend, prompts, seeds, steps, guidance) -> np.ndarray:
    """Sample with an explicit seed per image in one batched call."""
    import torch

    noise = torch.cat([backend.initial_noise(1, s) for s in seeds])
    out = backend.sample(prompts, seed=0, steps=steps, guidance=guidance, initial_noise=noise)
    return from_model(out.images.numpy())
