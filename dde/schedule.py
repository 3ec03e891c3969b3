"""The noise schedule: alphas_cumprod and every coefficient derived from it.

Conventions (used throughout the project):
- Timesteps are diffusers *training* indices ``t in {0, ..., T-1}``; ``t = 0`` is the least noisy.
  Inference runs ``t`` descending.
- ``alpha_bar[t] = scheduler.alphas_cumprod[t]``. All coefficient math is float64; callers cast
  at the point of use.
- ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``,
  ``snr_t = alpha_bar_t / (1 - alpha_bar_t)``,
  ``s_t = (1 - alpha_bar_t) / alpha_bar_t`` (the DDIM single-shot coefficient, ``1 / snr_t``).

The diffusers scheduler config is the single source of the schedule: build a ``NoiseSchedule``
from it with :meth:`NoiseSchedule.from_scheduler_config`; nobody recomputes alphas inline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

DTYPE = torch.float64
SUPPORTED_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _cosine_betas(num_steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the squared-cosine schedule (Nichol & Dhariwal), as diffusers' ``squaredcos_cap_v2``."""

    def alpha_bar_fn(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar_fn((i + 1) / num_steps) / alpha_bar_fn(i / num_steps), max_beta)
        for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=DTYPE)


def _rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale betas to zero terminal SNR (Lin et al. 2023), as diffusers' ``rescale_betas_zero_snr``."""
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete DDPM noise schedule of ``T`` steps, float64.

    Attributes:
        betas: ``[T]`` float64, ``betas[t]`` is the variance added going from ``t-1`` to ``t``.
        alphas_cumprod: ``[T]`` float64, ``alpha_bar[t] = prod_{k<=t} (1 - betas[k])``;
            decreasing in ``t`` (``t = 0`` least noisy).
        final_alpha_cumprod: the ``alpha_bar`` used for the step past ``t = 0`` (DDIM's
            ``set_alpha_to_one``: 1.0 by default).
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    final_alpha_cumprod: float = 1.0

    def __post_init__(self) -> None:
        for name in ("betas", "alphas_cumprod"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.ndim != 1:
                raise ValueError(f"NoiseSchedule.{name} must be a 1-D tensor, got {value!r:.80}")
        if self.betas.shape != self.alphas_cumprod.shape:
            raise ValueError(
                f"betas has {self.betas.numel()} steps but alphas_cumprod has "
                f"{self.alphas_cumprod.numel()}"
            )
        if self.betas.numel() < 2:
            raise ValueError(f"a schedule needs at least 2 steps, got {self.betas.numel()}")
        object.__setattr__(self, "betas", self.betas.detach().to("cpu", DTYPE))
        object.__setattr__(self, "alphas_cumprod", self.alphas_cumprod.detach().to("cpu", DTYPE))
        ab = self.alphas_cumprod
        if not torch.isfinite(ab).all() or (ab < 0).any() or (ab > 1).any():
            raise ValueError("alphas_cumprod must lie in [0, 1]")
        if (ab[1:] > ab[:-1]).any():
            raise ValueError("alphas_cumprod must be non-increasing in t (t = 0 least noisy)")

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def from_betas(cls, betas: Any, *, final_alpha_cumprod: float = 1.0) -> NoiseSchedule:
        """Build from per-step betas (any array-like of length T, values in (0, 1))."""
        betas = torch.as_tensor(betas, dtype=DTYPE).flatten()
        if not torch.isfinite(betas).all() or (betas < 0).any() or (betas > 1).any():
            raise ValueError("betas must be finite and lie in [0, 1]")
        return cls(betas, torch.cumprod(1.0 - betas, dim=0), final_alpha_cumprod)

    @classmethod
    def from_scheduler_config(cls, config: Mapping[str, Any]) -> NoiseSchedule:
        """Build from a diffusers scheduler config (a dict, or ``scheduler.config``).

        Reads ``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule``
        (``linear``, ``scaled_linear`` or ``squaredcos_cap_v2``), ``trained_betas``,
        ``rescale_betas_zero_snr`` and ``set_alpha_to_one``, with diffusers' defaults for any
        that are missing. Betas are computed in float64 (diffusers computes float32; the two
        agree to about 1e-6 relative).
        """
        cfg = dict(config)
        num = int(cfg.get("num_train_timesteps", 1000))
        beta_start = float(cfg.get("beta_start", 0.0001))
        beta_end = float(cfg.get("beta_end", 0.02))
        kind = cfg.get("beta_schedule", "linear")
        if cfg.get("trained_betas") is not None:
            betas = torch.as_tensor(cfg["trained_betas"], dtype=DTYPE)
        elif kind == "linear":
            betas = torch.linspace(beta_start, beta_end, num, dtype=DTYPE)
        elif kind == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, num, dtype=DTYPE) ** 2
        elif kind == "squaredcos_cap_v2":
            betas = _cosine_betas(num)
        else:
            raise ValueError(
                f"unknown beta_schedule {kind!r}; supported: {', '.join(SUPPORTED_BETA_SCHEDULES)}"
            )
        if cfg.get("rescale_betas_zero_snr", False):
            betas = _rescale_zero_terminal_snr(betas)
        schedule = cls.from_betas(betas)
        final = 1.0 if cfg.get("set_alpha_to_one", True) else float(schedule.alphas_cumprod[0])
        return cls(schedule.betas, schedule.alphas_cumprod, final)

    # ----- derived quantities ([T], float64) ---------------------------------------------
    @property
    def T(self) -> int:  # noqa: N802 - the paper's symbol
        """Number of training timesteps."""
        return self.alphas_cumprod.numel()

    @property
    def snr(self) -> torch.Tensor:
        """``[T]`` signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)`` (inf where alpha_bar = 1)."""
        ab = self.alphas_cumprod
        return ab / (1.0 - ab)

    @property
    def ddim_coefficient(self) -> torch.Tensor:
        """``[T]`` ``s_t = (1 - alpha_bar_t) / alpha_bar_t``: the squared x0 error of a one-step
        DDIM jump per unit squared eps error (inf where alpha_bar = 0)."""
        ab = self.alphas_cumprod
        return (1.0 - ab) / ab

    def alpha_bar_at(self, t: torch.Tensor | int) -> torch.Tensor:
        """``alpha_bar`` gathered at integer timesteps ``t`` (any shape), float64, on the CPU.

        ``t = -1`` (the step past ``t = 0``, where DDIM lands last) gives ``final_alpha_cumprod``.
        """
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        if (t < -1).any() or (t >= self.T).any():
            raise ValueError(f"timesteps must lie in [-1, {self.T - 1}], got {t.min()}..{t.max()}")
        padded = torch.cat([self.alphas_cumprod, torch.tensor([self.final_alpha_cumprod], dtype=DTYPE)])
        return padded[t]  # index -1 picks the appended final value
