"""Where two models differ along the denoising trajectory: per DDIM step, the distance between a
tuned model's x0 prediction and the base model's, both sampling the same prompts from the same
noise. A fine-tune that acts at the middle timesteps shows a distance that rises there.

Distances are root-mean-square per latent element (pixels for the toy world), averaged over images
with a bootstrap 95% band. Timesteps follow dde.schedule (t = 0 least noisy; sampling runs t down).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.stats import bootstrap_ci

COLUMNS = ["step", "t", "series", "value", "lo", "hi"]


def x0_divergence(base_x0: Sequence[torch.Tensor], tuned_x0: Sequence[torch.Tensor], timesteps: Sequence[int],
                  series: str) -> pd.DataFrame:
    """Columns step (1-based DDIM step), t, series, value, lo, hi from per-step x0 predictions
    (``[B, C, h, w]`` each) of two trajectories that started from the same noise."""
    if len(base_x0) != len(tuned_x0) or len(base_x0) != len(timesteps):
        raise ValueError(f"{len(base_x0)} and {len(tuned_x0)} x0 predictions for {len(timesteps)} steps")
    rows = []
    for i, (a, b, t) in enumerate(zip(base_x0, tuned_x0, timesteps)):
        rms = (a.float() - b.float()).pow(2).flatten(1).mean(1).sqrt().numpy()
        lo, hi = bootstrap_ci(rms) if len(rms) > 1 else (float(rms[0]), float(rms[0]))
        rows.append({"step": i + 1, "t": int(t), "series": series, "value": float(rms.mean()), "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=COLUMNS)


@torch.no_grad()
def divergence_frame(models: dict, prompts: list[str], *, seeds: int = 1, steps: int = 25, batch: int = 32,
                     progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """For every model after the first (the base), its x0 divergence from the base over ``prompts``
    x ``seeds`` images (image (prompt i, repeat k) from seed ``k * len(prompts) + i`` for all)."""
    names = list(models)
    all_prompts = [p for _ in range(seeds) for p in prompts]
    all_seeds = [k * len(prompts) + i for k in range(seeds) for i in range(len(prompts))]
    x0 = {n: [] for n in names}
    timesteps = []
    for start in range(0, len(all_prompts), batch):
        chunk, chunk_seeds = all_prompts[start:start + batch], all_seeds[start:start + batch]
        for name in names:
            out = models[name].sample(chunk, seeds=chunk_seeds, steps=steps, return_x0=True)
            x0[name].append(out.x0_latents)
            timesteps = out.timesteps
        if progress is not None:
            progress(len(chunk))
    joined = {n: [torch.cat([part[i] for part in x0[n]]) for i in range(len(timesteps))] for n in names}
    frames = [x0_divergence(joined[names[0]], joined[n], timesteps, n) for n in names[1:]]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def weight_at(timesteps: Sequence[int], weights: np.ndarray) -> np.ndarray:
    """A credit weight ``[T]`` read at the sampler's timesteps (for a second axis)."""
    return np.asarray(weights)[np.asarray(timesteps, dtype=int)]
