"""Sample prompts from explicit seeds and judge every image; summaries for model cards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from dde.images import to_uint8
from dde.toy.judge import ATTRIBUTES, Judgement, judge
from dde.toy.world import Scene, split_scenes


def judged_samples(backend, prompts: list[str], seeds: list[int], *, steps: int = 25, guidance: float | None = None,
                   batch: int = 64, progress: Callable[[int], None] | None = None
                   ) -> Iterator[tuple[str, int, np.ndarray, Judgement]]:
    """Yield (prompt, seed, image uint8 [32, 32, 3], judgement) for each prompt with its seed;
    an image depends only on (model, prompt, seed), never on the batching."""
    for start in range(0, len(prompts), batch):
        chunk, chunk_seeds = prompts[start:start + batch], seeds[start:start + batch]
        out = backend.sample(chunk, seeds=chunk_seeds, steps=steps, guidance=guidance)
        for prompt, s, image in zip(chunk, chunk_seeds, to_uint8(out.images.numpy())):
            yield prompt, s, image, judge(image, prompt)
        if progress is not None:
            progress(len(chunk))


def judge_scenes(backend, scenes: list[Scene], *, seeds: int = 2, steps: int = 25, guidance: float | None = None,
                 batch: int = 64, seed: int = 0) -> dict:
    """Sample every scene ``seeds`` times (image seed = seed + k * len(scenes) + i) and judge it.

    Returns ``{"n", "total", "accuracy": {attr: frac}, "colour_and_shape": frac, "all_correct": frac}``.
    """
    prompts = [s.caption for _ in range(seeds) for s in scenes]
    image_seeds = [seed + k * len(scenes) + i for k in range(seeds) for i in range(len(scenes))]
    verdicts = [j for *_, j in judged_samples(backend, prompts, image_seeds, steps=steps, guidance=guidance,
                                              batch=batch)]
    accuracy = {a: float(np.mean([j.correct[a] for j in verdicts if a in j.correct])) for a in ATTRIBUTES
                if any(a in j.correct for j in verdicts)}
    return {"n": len(verdicts), "total": float(np.mean([j.total for j in verdicts])), "accuracy": accuracy,
            "colour_and_shape": float(np.mean([j.correct["colour"] and j.correct["shape"] for j in verdicts])),
            "all_correct": float(np.mean([all(j.correct.values()) for j in verdicts]))}


def training_prompts_spread(n: int) -> list[str]:
    """``n`` fixed training-split captions, evenly spread over the split (never a held-out scene):
    a fine-tune's reward probe and the prompts settings are tuned on."""
    train, _ = split_scenes()
    stride = max(1, len(train) // max(n, 1))
    return [s.caption for s in train[::stride][:n]]


def held_out_prompts(n: int | None = None) -> list[str]:
    """The captions of the held-out scenes (never in pretraining nor in the pairs), first ``n``."""
    return [s.caption for s in split_scenes()[1]][:n]


def probe_judge(backend, n: int, *, steps: int = 20, seed: int = 10_000) -> dict:
    """Judge ``n`` :func:`training_prompts_spread` sampled from fixed noise (seeds ``seed + i``): the reward a
    fine-tune is chasing, on the same noise at every checkpoint. Returns mean and per-prompt scores."""
    prompts = training_prompts_spread(n)
    verdicts = [j for *_, j in judged_samples(backend, prompts, [seed + i for i in range(len(prompts))],
                                              steps=steps)]
    return {"judge": float(np.mean([j.total for j in verdicts])), "scores": [round(j.total, 4) for j in verdicts],
            **{f"acc_{a}": float(np.mean([j.correct[a] for j in verdicts if a in j.correct])) for a in ATTRIBUTES
               if any(a in j.correct for j in verdicts)}}
