"""Estimation error of the terminal sample from step t (method.md section 6), measured on data.

For x0 from data, eps ~ N(0, I) and x_t = add_noise(x0, eps, t):
- single-shot: x0_hat = DDIM prediction from one model call at t; error mean (x0_hat - x0)^2;
- its calibrated prediction s_t r_t (r_t from a calibration table, e.g. a run's);
- K-step DDIM from t down to the clean sample (K = 1, 5, 20), conditional, eta = 0.
Each is averaged over samples with a bootstrap 95% band. Timesteps follow dde.schedule (t = 0
least noisy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.stats import bootstrap_ci
from dde import ddim
from dde.credit import CalibrationTable


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


@torch.no_grad()
def estimation_error_frame(backend, x0: torch.Tensor, captions: list[str], *,
                           timesteps: Sequence[int] = (50, 150, 250, 354, 450, 550, 650, 750, 850, 950),
                           ks: Sequence[int] = (1, 5, 20), calibration: CalibrationTable | None = None,
                           seed: int = 0, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Columns t, series, value, lo, hi. ``x0``: ``[N, C, h, w]`` latents of data; ``captions``: N.

    Series: ``single-shot (measured)``, ``s_t r_t (calibrated prediction)`` when a table is given,
    ``K-step DDIM (K=k)`` for k in ``ks`` (K = 1 equals the single-shot estimate by construction and is
    skipped), and ``data variance v`` (the error of predicting the mean).
    """
    schedule = backend.schedule
    gen = torch.Generator().manual_seed(seed)
    cond = backend.encode_prompts(captions)
    v = float(x0.float().var())
    rows = []
    for n, t in enumerate(timesteps):
        eps = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
        tt = torch.full((x0.shape[0],), int(t), dtype=torch.long)
        ab = schedule.alpha_bar_at(tt)
        x_t = ddim.add_noise(x0, eps, ab)
        eps_hat = backend.predict_eps(x_t, tt, cond)
        single = (ddim.x0_from_eps(x_t, eps_hat, ab) - x0).float().pow(2).flatten(1).mean(1).cpu().numpy()
        rows.append(_row(t, "single-shot (measured)", single))
        if calibration is not None:
            pred = float(schedule.ddim_coefficient[t] * calibration.r_at(torch.tensor([t]))[0])
            rows.append({"t": t, "series": "s_t r_t (calibrated prediction)", "value": pred, "lo": pred, "hi": pred})
        for k in ks:
            if k == 1:
                continue
            est = k_step_estimate(backend, x_t, int(t), cond, k)
            rows.append(_row(t, f"{k}-step DDIM", (est - x0).float().pow(2).flatten(1).mean(1).cpu().numpy()))
        rows.append({"t": t, "series": "data variance v", "value": v, "lo": v, "hi": v})
        if progress is not None:
            progress(n + 1, len(timesteps))
    return pd.DataFrame(rows)


def _row(t: int, series: str, values: np.ndarray) -> dict:
    lo, hi = bootstrap_ci(values)
    return {"t": int(t), "series": series, "value": float(values.mean()), "lo": lo, "hi": hi}
