"""Curves as tidy DataFrames with columns (t, series, value, lo, hi) plus curve-specific extras.

The app and the command line build their figures from these frames (analysis.plots), so a number
on screen and a number in a CSV come from the same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
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


# ----- curves from run directories ------------------------------------------------------------
def _jsonl(path) -> list[dict]:
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line of a run that is still writing
    return rows


TRAINING_METRICS = ("loss", "implicit_acc", "reward_margin", "grad_norm")


def training_curves_frame(runs: Mapping[str, str], metrics: Iterable[str] = TRAINING_METRICS,
                          smooth: int = 1) -> pd.DataFrame:
    """Columns step, series (run name), metric, value, lo, hi from each run's metrics.jsonl;
    ``smooth`` > 1 applies a trailing moving average (lo/hi: +- one rolling standard deviation)."""
    frames = []
    for name, run in runs.items():
        rows = pd.DataFrame(_jsonl(f"{run}/metrics.jsonl"))
        if rows.empty:
            continue
        for metric in metrics:
            if metric not in rows:
                continue
            values = rows[metric].astype(float)
            mean = values.rolling(smooth, min_periods=1).mean()
            sd = values.rolling(smooth, min_periods=2).std().fillna(0.0) if smooth > 1 else 0.0 * values
            frames.append(pd.DataFrame({"step": rows.step, "series": name, "metric": metric, "value": mean,
                                        "lo": mean - sd, "hi": mean + sd}))
    columns = ["step", "series", "metric", "value", "lo", "hi"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def empirical_credit_frame(runs: Mapping[str, str], T: int = 1000, bins: int = 20) -> pd.DataFrame:  # noqa: N803
    """Per-timestep-bin mean of |d loss_i / d delta_i| (the credit each pair's t received) from each
    run's credit.jsonl: columns t (bin centre), series, value, lo, hi (normal 95% band), n."""
    frames = []
    for name, run in runs.items():
        rows = _jsonl(f"{run}/credit.jsonl")
        t = np.array([x for r in rows for x in r["t"]], dtype=np.int64)
        c = np.array([np.nan if x is None else x for r in rows for x in r["credit"]], dtype=np.float64)
        keep = np.isfinite(c)
        if not keep.any():
            continue
        part = pd.DataFrame({"bin": (t[keep] * bins) // T, "credit": c[keep]})
        g = part.groupby("bin").credit
        stats = pd.DataFrame({"value": g.mean(), "sd": g.std().fillna(0.0), "n": g.size()}).reset_index()
        half = 1.96 * stats.sd / np.sqrt(stats.n)
        frames.append(pd.DataFrame({"t": (stats.bin + 0.5) * T / bins, "series": name, "value": stats.value,
                                    "lo": stats.value - half, "hi": stats.value + half, "n": stats.n}))
    columns = ["t", "series", "value", "lo", "hi", "n"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def calibration_frame(run: str, schedule: NoiseSchedule, every: int = 1) -> pd.DataFrame:
    """The calibration table and the calibrated DDE weight over training, from calibration.jsonl:
    columns step, t, r (interpolated at t), w_dde. ``every`` keeps every n-th logged step."""
    rows = _jsonl(f"{run}/calibration.jsonl")[::every]
    frames = []
    for row in rows:
        table = credit.CalibrationTable(schedule.T, len(row["r"]), v=row["v"], r=np.asarray(row["r"]),
                                        counts=np.asarray(row.get("counts", [0] * len(row["r"]))))
        w = credit.weights("dde", schedule, table).numpy()
        frames.append(pd.DataFrame({"step": row["step"], "t": np.arange(schedule.T), "r": table.r_at().numpy(),
                                    "w_dde": w}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "t", "r", "w_dde"])


def run_schedule(run, fallback: NoiseSchedule | None = None) -> NoiseSchedule | None:
    """The noise schedule a run trained with (its scheduler_config.json), else ``fallback``."""
    import json
    from pathlib import Path

    path = Path(run) / "scheduler_config.json"
    return NoiseSchedule.from_scheduler_config(json.loads(path.read_text())) if path.is_file() else fallback


def calibration_table_from_run(run: str, T: int) -> credit.CalibrationTable | None:  # noqa: N803
    """The run's calibration table as last logged (calibration.jsonl), or None if it has none."""
    rows = _jsonl(f"{run}/calibration.jsonl")
    if not rows:
        return None
    last = rows[-1]
    return credit.CalibrationTable(T, len(last["r"]), v=last["v"], r=np.asarray(last["r"]),
                                   counts=np.asarray(last.get("counts", [0] * len(last["r"]))))
