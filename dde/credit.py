"""Per-timestep credit weights w(t) and DDE's calibration table.

This module holds every formula of the method's credit assignment (docs/method.md, sections 3-5), as
DERIVED IN THIS PROJECT FROM THE PAPER'S PUBLISHED DESCRIPTION. A user holding the paper's exact
closed form changes :func:`reliability` (and nothing else) to swap it in.

Conventions: ``t`` is the diffusers training index, ``t = 0`` least noisy, ``T`` steps; weights
are float64 tensors of shape ``[T]`` indexed by ``t``. Every variant is normalised to mean 1 under
the distribution t is drawn from (uniform over its support, intersected with the training range), so
beta keeps Diffusion-DPO's meaning. Weights
are constants of the loss (stop-gradient). How ``t`` is *drawn* lives in :mod:`dde.timesteps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from dde.schedule import DTYPE, NoiseSchedule

DEFAULT_RHO_MIN = 1e-3


# ----- calibration (method section 4) --------------------------------------------------------
class CalibrationTable:
    """Calibration coefficients ``r_t`` (the reference model's per-element eps error at ``t``) and
    ``v``, the per-element variance of x0 given its prompt, measured on the same images.

    ``r`` is kept in ``bins`` equal-width bins over ``[0, T)``. Between bin centres it is
    interpolated in a well-conditioned form, linearly in ``log(r / r_ideal)`` where ``r_ideal`` is
    the Gaussian ideal at the table's ``v`` (:func:`gaussian_ideal_r`); the ratio is held constant
    beyond the outer centres. A bin never visited (count 0) has ratio 1: it takes the Gaussian ideal
    at the measured ``v``, whatever is stored in ``r`` for it.

    A bin's first observation replaces its prior value; later ones update it by an EMA with
    ``decay`` per bin visit (``mode="ema"``) or by a running mean (``mode="mean"``, used by the
    calibration pass). ``v`` is updated the same way, once per observed batch
    (:meth:`update_variance`).
    """

    def __init__(self, T: int, bins: int = 50, *, decay: float = 0.95, v: float = 1.0,  # noqa: N803
                 r: torch.Tensor | None = None, counts: torch.Tensor | None = None, v_count: int = 0) -> None:
        if not 1 <= bins <= T:
            raise ValueError(f"bins must lie in [1, T={T}], got {bins}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        _check_variance(v)
        self.T, self.bins, self.decay, self.v, self.v_count = int(T), int(bins), float(decay), float(v), int(v_count)
        self.r = torch.ones(bins, dtype=DTYPE) if r is None else torch.as_tensor(r, dtype=DTYPE).clone()
        self.counts = torch.zeros(bins, dtype=torch.long) if counts is None else torch.as_tensor(counts).long().clone()
        if self.r.shape != (bins,) or self.counts.shape != (bins,):
            shapes = (tuple(self.r.shape), tuple(self.counts.shape))
            raise ValueError(f"r and counts must have shape [{bins}], got {shapes}")

    @classmethod
    def gaussian_ideal(cls, schedule: NoiseSchedule, bins: int = 50, *, v: float = 1.0,
                       decay: float = 0.95) -> CalibrationTable:
        """The table of the ideal denoiser on Gaussian data of variance ``v``: no bin visited, so
        ``r_t = alpha_bar v / (alpha_bar v + 1 - alpha_bar)`` at every ``t``."""
        table = cls(schedule.T, bins, decay=decay, v=v)
        table.r = table.ideal_at_centres(schedule)
        return table

    @property
    def bin_centres(self) -> torch.Tensor:
        """``[bins]`` float64 centre timestep of each bin."""
        width = self.T / self.bins
        return (torch.arange(self.bins, dtype=DTYPE) + 0.5) * width - 0.5

    def bin_index(self, t: torch.Tensor) -> torch.Tensor:
        """Bin of each timestep ``t`` (``[N]`` long in ``[0, T)``) as ``[N]`` long."""
        t = torch.as_tensor(t).long().cpu()
        if (t < 0).any() or (t >= self.T).any():
            raise ValueError(f"timesteps must lie in [0, {self.T}), got {t.min()}..{t.max()}")
        return (t * self.bins) // self.T

    def ideal_at_centres(self, schedule: NoiseSchedule) -> torch.Tensor:
        """``[bins]`` Gaussian-ideal ``r`` at the bin centres for the table's ``v``."""
        return gaussian_ideal_r(_alpha_bar_at(schedule, self.bin_centres), self.v)

    def r_at(self, schedule: NoiseSchedule, t: torch.Tensor | None = None) -> torch.Tensor:
        """``r`` interpolated at timesteps ``t`` (default: all ``T``), float64 (see the class doc)."""
        self._check_schedule(schedule)
        t = torch.arange(self.T) if t is None else torch.as_tensor(t).cpu()
        ratio = torch.where(self.counts > 0, self.r / self.ideal_at_centres(schedule), torch.ones_like(self.r))
        log_ratio = np.interp(t.numpy().astype(np.float64), self.bin_centres.numpy(), ratio.log().numpy())
        return gaussian_ideal_r(_alpha_bar_at(schedule, t), self.v) * torch.from_numpy(log_ratio).exp()

    def update(self, t: torch.Tensor, err: torch.Tensor, *, mode: str = "ema") -> None:
        """Fold per-sample reference errors ``err`` ``[N]`` observed at timesteps ``t`` ``[N]`` into the table."""
        _check_mode(mode)
        err = torch.as_tensor(err).detach().to("cpu", DTYPE).flatten()
        idx = self.bin_index(t).flatten()
        if err.shape != idx.shape:
            raise ValueError(f"{idx.numel()} timesteps but {err.numel()} errors")
        if not torch.isfinite(err).all() or (err < 0).any():
            raise ValueError("calibration errors must be finite and non-negative")
        for b in idx.unique().tolist():
            sel = err[idx == b]
            n_old, n_new = int(self.counts[b]), sel.numel()
            self.r[b] = _fold(float(self.r[b]), float(sel.mean()), n_old, n_new, mode, self.decay)
            self.counts[b] += n_new
        self.r = self.r.clamp_min(1e-12)  # a bin of exact zeros would have no logarithm

    def update_variance(self, v_batch: float, n: int = 1, *, mode: str = "ema") -> None:
        """Fold one batch's estimate of ``v`` (from :func:`conditional_variance`, over ``n`` images)."""
        _check_mode(mode)
        _check_variance(v_batch)
        self.v = _fold(self.v, float(v_batch), self.v_count, int(n), mode, self.decay)
        self.v_count += int(n)

    def clipped(self, schedule: NoiseSchedule) -> torch.Tensor:
        """``[T]`` bool: where ``s_t r_t >= v``, the single-shot estimate from ``t`` is no better than
        the prompt-conditional mean, so rho is clipped to rho_min (logged and shown, never hidden)."""
        return schedule.ddim_coefficient * self.r_at(schedule) >= self.v

    def _check_schedule(self, schedule: NoiseSchedule) -> None:
        if self.T != schedule.T:
            raise ValueError(f"calibration table has T={self.T} but the schedule has T={schedule.T}")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so the table saves with safetensors beside a checkpoint."""
        return {"r": self.r.clone(), "counts": self.counts.clone(),
                "v": torch.tensor([self.v], dtype=DTYPE), "v_count": torch.tensor([self.v_count]),
                "T": torch.tensor([self.T]), "decay": torch.tensor([self.decay], dtype=DTYPE)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> CalibrationTable:
        missing = {"r", "counts", "v", "T", "decay"} - set(state)
        if missing:
            raise ValueError(f"calibration state lacks {sorted(missing)}")
        v_count = int(state["v_count"].item()) if "v_count" in state else 0
        return cls(int(state["T"].item()), state["r"].numel(), decay=float(state["decay"].item()),
                   v=float(state["v"].item()), r=state["r"], counts=state["counts"], v_count=v_count)


def _check_mode(mode: str) -> None:
    if mode not in ("ema", "mean"):
        raise ValueError(f"mode must be 'ema' or 'mean', got {mode!r}")


def _check_variance(v: float) -> None:
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"the data variance v must be positive and finite, got {v}")


def _fold(old: float, new: float, n_old: int, n_new: int, mode: str, decay: float) -> float:
    """A first observation replaces the prior; then an EMA per visit or a running mean."""
    if n_old == 0:
        return new
    if mode == "ema":
        return decay * old + (1 - decay) * new
    return (old * n_old + new * n_new) / (n_old + n_new)


def _alpha_bar_at(schedule: NoiseSchedule, t: torch.Tensor) -> torch.Tensor:
    """alpha_bar at (possibly fractional) timesteps, linear between integers, float64."""
    t = torch.as_tensor(t, dtype=DTYPE)
    return torch.from_numpy(np.interp(t.numpy(), np.arange(schedule.T), schedule.alphas_cumprod.numpy()))


def conditional_variance(x0: torch.Tensor, groups: list | None = None) -> float:
    """The per-element variance of x0 given its prompt, ``v = (1/d) E ||x0 - E[x0 | c]||^2``, from
    ``x0`` ``[N, ...]`` and a prompt (or any group key) per image.

    Pooled within-group variance, ``sum_g sum_i ||x_i - mean_g||^2 / ((N - G) d)`` for ``G``
    groups: for the pairs of a [winners; losers] batch (groups of two) this is
    ``mean ||x_w - x_l||^2 / (2 d)``. Preference labels select which image wins, not the pair, so
    for pairs drawn as two samples of a prompt it is unbiased; pairs chosen for their difference
    would make it high. Where no group has two images (``N == G``) it falls back to the per-element
    variance around the per-element mean over all images (the prompt-unconditional variance).
    """
    x = torch.as_tensor(x0).detach().to("cpu", DTYPE).flatten(1)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"the variance needs at least two images, got {n}")
    keys = list(range(n)) if groups is None else list(groups)
    if len(keys) != n:
        raise ValueError(f"{n} images but {len(keys)} group keys")
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    g = torch.tensor([index[k] for k in keys])
    if len(index) == n:
        return float((x - x.mean(0)).pow(2).sum() / ((n - 1) * d))
    sums = torch.zeros(len(index), d, dtype=DTYPE).index_add_(0, g, x)
    sizes = torch.bincount(g, minlength=len(index)).to(DTYPE)
    within = (x - (sums / sizes[:, None])[g]).pow(2).sum()
    return float(within / ((n - len(index)) * d))


def gaussian_ideal_r(alpha_bar: torch.Tensor, v: float = 1.0) -> torch.Tensor:
    """The ideal denoiser's per-element eps error on N(0, v) data: ``ab v / (ab v + 1 - ab)``."""
    ab = torch.as_tensor(alpha_bar, dtype=DTYPE)
    return ab * v / (ab * v + 1 - ab)


def reliability(schedule: NoiseSchedule, calibration: CalibrationTable | None = None,
                *, rho_min: float = DEFAULT_RHO_MIN) -> torch.Tensor:
    """``[T]`` rho_t = clip(1 - s_t r_t / v, rho_min, 1): the fraction of the terminal sample's
    prompt-conditional variance that the single-shot DDIM estimate from ``t`` recovers (an R^2).

    Without a table, ``r`` is the Gaussian ideal with ``v = 1``, where rho_t = alpha_bar_t exactly.
    """
    if calibration is None:
        rho = schedule.alphas_cumprod.clone()
    else:
        rho = 1 - schedule.ddim_coefficient * calibration.r_at(schedule) / calibration.v
    return rho.nan_to_num(nan=rho_min, neginf=rho_min).clamp(rho_min, 1.0)


# ----- the weight registry (method section 5) --------------------------------------------
WeightFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    fn: WeightFn  # (schedule, calibration, **params) -> (raw [T], support mask [T])
    calibrated: bool = False


REGISTRY: dict[str, Variant] = {}


def _register(name: str, description: str, calibrated: bool = False):
    def wrap(fn: WeightFn) -> WeightFn:
        REGISTRY[name] = Variant(name, description, fn, calibrated)
        return fn
    return wrap


def _everywhere(schedule: NoiseSchedule) -> torch.Tensor:
    return torch.ones(schedule.T, dtype=torch.bool)


def _window_mask(T: int, t_lo: int, t_hi: int) -> torch.Tensor:  # noqa: N803
    if not 0 <= t_lo < t_hi <= T:
        raise ValueError(f"window must satisfy 0 <= t_lo < t_hi <= T={T}, got [{t_lo}, {t_hi})")
    t = torch.arange(T)
    return (t >= t_lo) & (t < t_hi)


@_register("dpo", "Diffusion-DPO baseline: w = 1")
def _dpo(schedule, calibration, **_):
    return torch.ones(schedule.T, dtype=DTYPE), _everywhere(schedule)


@_register("dde", "DDE: rho (1 - rho), calibrated", calibrated=True)
def _dde(schedule, calibration, rho_min=DEFAULT_RHO_MIN, **_):
    rho = reliability(schedule, calibration, rho_min=rho_min)
    return rho * (1 - rho), _everywhere(schedule)


@_register("dde-closed", "DDE without calibration: alpha_bar (1 - alpha_bar)")
def _dde_closed(schedule, calibration, **_):
    ab = schedule.alphas_cumprod
    return ab * (1 - ab), _everywhere(schedule)


@_register("dde-step", "ablation, stepwise estimation only: 1 - rho", calibrated=True)
def _dde_step(schedule, calibration, rho_min=DEFAULT_RHO_MIN, **_):
    return 1 - reliability(schedule, calibration, rho_min=rho_min), _everywhere(schedule)


@_register("dde-single", "ablation, single-shot estimation only: rho", calibrated=True)
def _dde_single(schedule, calibration, rho_min=DEFAULT_RHO_MIN, **_):
    return reliability(schedule, calibration, rho_min=rho_min), _everywhere(schedule)


@_register("window", "ablation: 1 on [t_lo, t_hi) (default 0.2T..0.7T, i.e. 200..700), else 0")
def _window(schedule, calibration, t_lo=None, t_hi=None, **_):
    T = schedule.T  # noqa: N806
    mask = _window_mask(T, round(0.2 * T) if t_lo is None else int(t_lo), round(0.7 * T) if t_hi is None else int(t_hi))
    return mask.to(DTYPE), mask


@_register("gamma", "peer (dense-reward style): gamma^(T-1-t), discounted from the noisiest step")
def _gamma(schedule, calibration, gamma=0.995, **_):
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    exponent = (schedule.T - 1 - torch.arange(schedule.T)).to(DTYPE)
    return torch.as_tensor(gamma, dtype=DTYPE) ** exponent, _everywhere(schedule)


@_register("spo-window", "peer: SPO's timestep window, 1 on [0, 0.75T) (i.e. 0..750)")
def _spo_window(schedule, calibration, t_hi=None, **_):
    mask = _window_mask(schedule.T, 0, round(0.75 * schedule.T) if t_hi is None else int(t_hi))
    return mask.to(DTYPE), mask


def variant_names() -> list[str]:
    """Every registered variant name, in registry order."""
    return list(REGISTRY)


def weights_and_support(name: str, schedule: NoiseSchedule, calibration: CalibrationTable | None = None,
                        *, t_range: tuple[int, int] | None = None, **params) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, support)``: the credit weight ``w(t)`` of a variant, ``[T]`` float64, index = training
    timestep ``t`` (``t = 0`` least noisy), and its support ``[T]`` bool, cut to ``t_range``.

    ``w`` is zero outside the support and has mean 1 under the distribution ``t`` is drawn from,
    which is uniform over the support (a window draws inside its window, so no pair is spent on a
    weight of zero); beta then keeps Diffusion-DPO's meaning.

    Args:
        name: a key of :data:`REGISTRY` (``dpo``, ``dde``, ``dde-closed``, ``dde-step``,
            ``dde-single``, ``window``, ``gamma``, ``spo-window``).
        schedule: the noise schedule (from the backend's scheduler config).
        calibration: DDE's table of ``r_t`` and ``v``; ``None`` uses the Gaussian ideal with
            ``v = 1`` (then ``dde`` equals ``dde-closed``). Ignored by uncalibrated variants.
        t_range: ``[t_lo, t_hi)``, the training range of ``t``; the support is cut to it.
        params: variant parameters (``rho_min``, ``t_lo``/``t_hi`` for windows, ``gamma``).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown credit variant {name!r}; known: {', '.join(REGISTRY)}")
    raw, support = REGISTRY[name].fn(schedule, calibration, **params)
    if t_range is not None:
        support = support & _window_mask(schedule.T, int(t_range[0]), int(t_range[1]))
    if not support.any():
        raise ValueError(f"variant {name!r} has no support inside t_range={t_range}")
    raw = torch.where(support, raw, torch.zeros_like(raw))
    mean = raw[support].mean()
    if not torch.isfinite(mean) or mean <= 0:
        raise ValueError(f"variant {name!r} has non-positive or non-finite mass ({mean.item()}) on its support")
    return raw / mean, support


def weights(name: str, schedule: NoiseSchedule, calibration: CalibrationTable | None = None,
            *, t_range: tuple[int, int] | None = None, **params) -> torch.Tensor:
    """The credit weight ``w(t)`` of a variant, ``[T]`` float64: see :func:`weights_and_support`."""
    return weights_and_support(name, schedule, calibration, t_range=t_range, **params)[0]
