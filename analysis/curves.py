"""Curves as tidy DataFrames with columns (t, series, value, lo, hi) plus curve-specific extras.

The app and the command line build their figures from these frames (analysis.plots), so a number
on screen and a number in a CSV come from the same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from dde import credit
from dde.schedule import NoiseSchedule

# Named scheduler configs offered by the app and CLI; a diffusers config dict works anywhere too.
SCHEDULER_PRESETS: dict[str, dict] = {
    "scaled_linear (SD1.5 / SDXL)": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    "linear (DDPM)": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
    "squaredcos_cap_v2 (cosine)": {"beta_schedule": "squaredcos_cap_v2"},
}


def schedule_from_preset(preset: str | Mapping, num_train_timesteps: int = 1000) -> NoiseSchedule:
    """A NoiseSchedule from a preset name of :data:`SCHEDULER_PRESETS` or a scheduler config dict."""
    if isinstance(preset, str):
        if preset not in SCHEDULER_PRESETS:
            raise ValueError(f"unknown scheduler preset {preset!r}; known: {', '.join(SCHEDULER_PRESETS)}")
        preset = SCHEDULER_PRESETS[preset]
    return NoiseSchedule.from_scheduler_config({**preset, "num_train_timesteps": int(num_train_timesteps)})


def credit_weights_frame(
    variants: Iterable[str],
    schedule: NoiseSchedule,
    calibration: credit.CalibrationTable | None = None,
    *,
    t_range: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Credit weights of ``variants`` over every t: columns t, series, value, lo, hi, cumulative.

    ``value`` is ``w(t)`` (mean 1 over the support); ``cumulative`` the fraction of the variant's
    total weight at timesteps <= t. ``lo``/``hi`` equal ``value`` (a closed form has no band).
    """
    frames = []
    for name in variants:
        w = credit.weights(name, schedule, calibration, t_range=t_range).numpy()
        frames.append(pd.DataFrame({
            "t": range(schedule.T), "series": name, "value": w, "lo": w, "hi": w,
            "cumulative": w.cumsum() / w.sum(),
        }))
    if not frames:
        raise ValueError("choose at least one credit variant")
    return pd.concat(frames, ignore_index=True)


def mass_in_range(frame: pd.DataFrame, t_lo: int, t_hi: int) -> pd.Series:
    """Fraction of each series' weight with t in [t_lo, t_hi), indexed by series."""
    inside = frame[(frame.t >= t_lo) & (frame.t < t_hi)].groupby("series", sort=False).value.sum()
    return inside / frame.groupby("series", sort=False).value.sum()
