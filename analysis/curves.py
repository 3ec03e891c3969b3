"""Curves as tidy DataFrames with columns (t, series, value, lo, hi) plus curve-specific extras.

The app and the command line build their figures from these frames (analysis.plots), so a number
on screen and a number in a CSV come from the same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from dde import credit
from dde.run import RunDir
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


# ----- curves from run directories ------------------------------------------------------------
TRAINING_METRICS = ("loss", "implicit_acc", "reward_margin", "grad_norm")


def training_curves_frame(runs: Mapping[str, str], metrics: Iterable[str] = TRAINING_METRICS,
                          smooth: int = 1) -> pd.DataFrame:
    """Columns step, series (run name), metric, value, lo, hi, raw from each run's metrics log;
    ``smooth`` > 1 applies a trailing moving average (lo/hi: +- one rolling standard deviation;
    ``raw`` keeps the per-step value)."""
    frames = []
    for name, run in runs.items():
        rows = pd.DataFrame(RunDir(run).rows("metrics"))
        if rows.empty:
            continue
        for metric in metrics:
            if metric not in rows:
                continue
            values = rows[metric].astype(float)
            mean = values.rolling(smooth, min_periods=1).mean()
            sd = values.rolling(smooth, min_periods=2).std().fillna(0.0) if smooth > 1 else 0.0 * values
            frames.append(pd.DataFrame({"step": rows.step, "series": name, "metric": metric, "value": mean,
                                        "lo": mean - sd, "hi": mean + sd, "raw": values}))
    columns = ["step", "series", "metric", "value", "lo", "hi", "raw"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def validation_frame(runs: Mapping[str, str]) -> pd.DataFrame:
    """Held-back pairs' loss and implicit accuracy at each checkpoint (val log) and the judge score
    of the fixed training-split probe prompts (judge log): columns step, series, metric, value."""
    frames = []
    for name, run in runs.items():
        rd = RunDir(run)
        for log, metrics in (("val", ("val_loss", "val_implicit_acc")), ("judge", ("judge",))):
            rows = pd.DataFrame(rd.rows(log))
            for metric in metrics:
                if not rows.empty and metric in rows:
                    frames.append(pd.DataFrame({"step": rows.step, "series": name, "metric": metric,
                                                "value": rows[metric].astype(float)}))
    columns = ["step", "series", "metric", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def empirical_credit_frame(runs: Mapping[str, str], T: int = 1000, bins: int = 20) -> pd.DataFrame:  # noqa: N803
    """Per timestep bin, the credit each run's pairs received (|d loss_i / d delta_i|, from its
    credit log) per unit of the plain draw distribution: the bin's summed credit divided by the
    number of pairs the bin would get under uniform draws over the run's support. For uniform
    draws this is the bin's mean credit; an importance-sampled run reads on the same scale.
    Columns t (bin centre), series, value, lo, hi (normal 95% band), n (pairs drawn in the bin)."""
    frames = []
    for name, run in runs.items():
        rd = RunDir(run)
        rows = rd.rows("credit")
        t = np.array([x for r in rows for x in r["t"]], dtype=np.int64)
        c = np.array([np.nan if x is None else x for r in rows for x in r["credit"]], dtype=np.float64)
        keep = np.isfinite(c)
        if not keep.any():
            continue
        t, c = t[keep], c[keep]
        share = _plain_bin_share(rd, T, bins)  # [bins] probability of each bin under the plain draw
        idx = (t * bins) // T
        total = len(c)
        value, half, counts = np.full(bins, np.nan), np.full(bins, np.nan), np.bincount(idx, minlength=bins)
        for b in np.nonzero(share > 0)[0]:
            contrib = np.where(idx == b, c, 0.0) / share[b]  # per pair, so the mean over all pairs is the value
            value[b] = contrib.mean()
            half[b] = 1.96 * contrib.std(ddof=1) / np.sqrt(total) if total > 1 else 0.0
        ok = np.isfinite(value) & (counts > 0)
        frames.append(pd.DataFrame({"t": (np.nonzero(ok)[0] + 0.5) * T / bins, "series": name, "value": value[ok],
                                    "lo": value[ok] - half[ok], "hi": value[ok] + half[ok], "n": counts[ok]}))
    columns = ["t", "series", "value", "lo", "hi", "n"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _plain_bin_share(run: RunDir, T: int, bins: int) -> np.ndarray:  # noqa: N803
    """Share of each t-bin under the run's plain draw distribution (uniform over its support)."""
    try:
        cfg = run.config()
        schedule = run.schedule() or NoiseSchedule.from_scheduler_config({"num_train_timesteps": T})
        _, support = credit.weights_and_support(cfg.variant, schedule, None, t_range=tuple(cfg.t_range),
                                                **cfg.variant_params)
        mask = support.numpy()
    except (ValueError, TypeError, KeyError):
        mask = np.ones(T, dtype=bool)
    return np.bincount((np.nonzero(mask)[0] * bins) // T, minlength=bins)[:bins] / mask.sum()


def calibration_frame(run: str, schedule: NoiseSchedule | None = None, every: int = 1) -> pd.DataFrame:
    """The calibration over training from a run's calibration log: columns step, t, r (interpolated
    at t), s_r (the calibrated single-shot error s_t r_t), v, w_dde, clipped (s_t r_t >= v).
    ``every`` keeps every n-th logged step; ``schedule`` defaults to the run's own."""
    rd = RunDir(run)
    schedule = rd.schedule(schedule)
    frames = []
    if schedule is None:
        return pd.DataFrame(columns=["step", "t", "r", "s_r", "v", "w_dde", "clipped"])
    for step, table in rd.calibration_tables(every):
        r = table.r_at(schedule).numpy()
        s_r = schedule.ddim_coefficient.numpy() * r
        frames.append(pd.DataFrame({"step": step, "t": np.arange(schedule.T), "r": r, "s_r": s_r, "v": table.v,
                                    "w_dde": credit.weights("dde", schedule, table).numpy(),
                                    "clipped": s_r >= table.v}))
    columns = ["step", "t", "r", "s_r", "v", "w_dde", "clipped"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
