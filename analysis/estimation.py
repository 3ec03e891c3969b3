"""Estimation error of the terminal sample from step t (docs/method.md section 7), measured on
images held back from calibration (the pairs' validation split: no run fitted its table on them).

For x0 from those images, eps ~ N(0, I) and x_t = add_noise(x0, eps, t):
- single-shot: x0_hat = DDIM prediction from one model call at t; error mean (x0_hat - x0)^2;
- K-step DDIM from t down to the clean sample (K = 5, 20), conditional, eta = 0;
- the prompt-conditional variance v of the same images (the error of predicting E[x0 | c]), and the
  Gaussian ideal at that v, s_t r_ideal = v (1 - ab) / (ab v + 1 - ab);
- a run's calibrated prediction s_t r_t, fitted on its *training* pairs: compared with the measured
  single-shot error on other images it is a real check (on the same images it is equal by algebra).
Measured series are averaged over images with a bootstrap 95% band. Timesteps follow
dde.schedule (t = 0 least noisy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.stats import bootstrap_ci
from dde import ddim
from dde.credit import CalibrationTable, conditional_variance, gaussian_ideal_r


def k_step_estimate(backend, x_t: torch.Tensor, t: int, cond, k: int) -> torch.Tensor:
    """The x0 estimate after ``k`` model calls of DDIM (eta 0) from ``x_t`` at step ``t``: calls at
    ``k`` timesteps evenly spaced from ``t`` down to 0, a DDIM step between consecutive ones, and the
    last call's x0 prediction returned (``k = 1`` is the single-shot estimate)."""
    schedule = backend.schedule
    taus = [int(v) for v in np.linspace(t, 0, k).round()] if k > 1 else [int(t)]
    x = x_t
    for i, tau in enumerate(taus):
        tt = torch.full((x.shape[0],), tau, dtype=torch.long)
        eps = backend.predict_eps(x, tt, cond)
        x0_hat = ddim.x0_from_eps(x, eps, schedule.alpha_bar_at(tt))
        if i + 1 < len(taus) and taus[i + 1] < tau:
            x, _ = ddim.ddim_step(schedule, x, eps, tau, taus[i + 1], eta=0.0)
    return x0_hat


SINGLE, IDEAL, VARIANCE, CALIBRATED = ("single-shot (measured)", "Gaussian ideal at v",
                                       "prompt-conditional variance v", "s_t r_t (a run's calibration)")


@torch.no_grad()
def estimation_error_frame(backend, x0: torch.Tensor, captions: list[str], *,
                           timesteps: Sequence[int] = (50, 150, 250, 354, 450, 550, 650, 750, 850, 950),
                           ks: Sequence[int] = (5, 20), calibration: CalibrationTable | None = None,
                           seed: int = 0, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Columns t, series, value, lo, hi. ``x0``: ``[N, C, h, w]`` latents of held-back data;
    ``captions``: N (images with the same caption estimate v together, as the two images of a pair do).

    Series: single-shot (measured), ``K-step DDIM`` for k in ``ks`` (K = 1 is the single-shot estimate
    and is skipped), the prompt-conditional variance v, the Gaussian ideal at v, and a run's
    calibrated prediction s_t r_t when ``calibration`` (fitted on other images) is given.
    """
    schedule = backend.schedule
    gen = torch.Generator().manual_seed(seed)
    cond = backend.encode_prompts(captions)
    v = conditional_variance(x0.float().cpu(), list(captions))
    rows = []
    for n, t in enumerate(timesteps):
        eps = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
        tt = torch.full((x0.shape[0],), int(t), dtype=torch.long)
        ab = schedule.alpha_bar_at(tt)
        x_t = ddim.add_noise(x0, eps, ab)
        eps_hat = backend.predict_eps(x_t, tt, cond)
        single = (ddim.x0_from_eps(x_t, eps_hat, ab) - x0).float().pow(2).flatten(1).mean(1).cpu().numpy()
        rows.append(_row(t, SINGLE, single))
        ideal = float(schedule.ddim_coefficient[t] * gaussian_ideal_r(schedule.alphas_cumprod[t], v))
        rows.append({"t": t, "series": IDEAL, "value": ideal, "lo": ideal, "hi": ideal})
        if calibration is not None:
            pred = float(schedule.ddim_coefficient[t] * calibration.r_at(schedule, torch.tensor([t]))[0])
            rows.append({"t": t, "series": CALIBRATED, "value": pred, "lo": pred, "hi": pred})
        for k in ks:
            if k == 1:
                continue
            est = k_step_estimate(backend, x_t, int(t), cond, k)
            rows.append(_row(t, f"{k}-step DDIM", (est - x0).float().pow(2).flatten(1).mean(1).cpu().numpy()))
        rows.append({"t": t, "series": VARIANCE, "value": v, "lo": v, "hi": v})
        if progress is not None:
            progress(n + 1, len(timesteps))
    return pd.DataFrame(rows)


def held_back_images(backend, data, samples: int, *, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Latents ``[2n, C, h, w]`` and captions of the first ``n = samples // 2`` pairs of the
    validation split a run with training seed ``seed`` holds back (the trainer's default split), both
    images of each pair: no calibration table of such a run was fitted on them."""
    from dde.data import PairData, read_pairs

    size = backend.latent_shape()[-1] * getattr(backend, "vae_scale", 1)
    pairs = PairData(read_pairs(data), size=size, val_fraction=0.05, seed=seed)
    index = pairs.val_index[: max(1, samples // 2)]
    batch = pairs.batch(index)
    return backend.images_to_latents(batch.images, generator=torch.Generator().manual_seed(seed)), batch.captions * 2


def _row(t: int, series: str, values: np.ndarray) -> dict:
    lo, hi = bootstrap_ci(values)
    return {"t": int(t), "series": series, "value": float(values.mean()), "lo": lo, "hi": hi}
