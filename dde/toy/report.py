"""Sample prompts from explicit seeds and judge every image; summaries for model cards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from dde.toy.judge import ATTRIBUTES, Judgement, judge
from dde.toy.world import Scene, from_model


def judged_samples(backend, prompts: list[str], seeds: list[int], *, steps: int = 25, guidance: float | None = None,
                   batch: int = 64, progress: Callable[[int], None] | None = None
                   ) -> Iterator[tuple[str, int, np.ndarray, Judgement]]:
    """Yield (prompt, seed, image uint8 [32, 32, 3], judgement) for each prompt with its seed;
    an image depends only on (model, prompt, seed), never on the batching."""
    for start in range(0, len(prompts), batch):
        chunk, chunk_seeds = prompts[start:start + batch], seeds[start:start + batch]
        out = backend.sample(chunk, seeds=chunk_seeds, steps=steps, guidance=guidance)
        for prompt, s, image in zip(chunk, chunk_seeds, from_model(out.images.numpy())):
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
