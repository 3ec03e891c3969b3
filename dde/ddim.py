"""DDIM closed forms over tensors: eps <-> x0, forward noising, and the DDIM step.

Every function takes ``alpha_bar`` values (float64, shape ``[B]`` or scalar) rather than a model or
a scheduler, broadcasts them over ``x`` of shape ``[B, ...]`` and returns tensors in ``x``'s dtype.
Timesteps follow :mod:`dde.schedule`: ``t = 0`` least noisy; a DDIM step goes from ``t`` to
``t_prev < t`` (``t_prev = -1`` lands on the clean sample with ``final_alpha_cumprod``).
"""

from __future__ import annotations

import torch

from dde.schedule import NoiseSchedule


def _coef(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Cast a float64 coefficient (scalar or ``[B]``) to ``like``'s dtype and shape ``[B, 1, ...]``."""
    value = torch.as_tensor(value, dtype=torch.float64)
    if value.ndim == 1:
        if value.numel() != like.shape[0]:
            raise ValueError(f"{value.numel()} coefficients for a batch of {like.shape[0]}")
        value = value.reshape(-1, *([1] * (like.ndim - 1)))
    return value.to(device=like.device, dtype=like.dtype)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps``; ``x0``, ``eps``: ``[B, ...]``."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return _coef(ab.sqrt(), x0) * x0 + _coef((1 - ab).sqrt(), x0) * eps


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """The DDIM prediction ``x0_hat = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)``."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return (x_t - _coef((1 - ab).sqrt(), x_t) * eps) * _coef(ab.rsqrt(), x_t)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """The noise implied by ``x0``: ``eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar)``."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return (x_t - _coef(ab.sqrt(), x_t) * x0) * _coef((1 - ab).rsqrt(), x_t)


def v_target(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """The velocity ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0`` (v-prediction's target)."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return _coef(ab.sqrt(), eps) * eps - _coef((1 - ab).sqrt(), x0) * x0


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """The noise implied by a velocity: ``eps = sqrt(alpha_bar) v + sqrt(1 - alpha_bar) x_t``."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return _coef(ab.sqrt(), x_t) * v + _coef((1 - ab).sqrt(), x_t) * x_t


PREDICTION_TYPES = ("epsilon", "v_prediction")


def eps_from_prediction(prediction_type: str, x_t: torch.Tensor, out: torch.Tensor,
                        alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """A model output of ``prediction_type`` (a diffusers scheduler config's) as the noise eps:
    every loss and sampler in this project works in eps; other types are refused by name."""
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        return eps_from_v(x_t, out, alpha_bar)
    raise ValueError(f"prediction_type {prediction_type!r} is not supported; this tool handles "
                     f"{', '.join(PREDICTION_TYPES)}")


def ddim_sigma(alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """DDIM's noise scale ``sigma = eta sqrt((1 - ab_prev) / (1 - ab)) sqrt(1 - ab / ab_prev)``, float64."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64)
    ab_prev = torch.as_tensor(alpha_bar_prev, dtype=torch.float64)
    return eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()


def ddim_step(
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    *,
    eta: float = 0.0,
    clip_x0: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the DDIM step ``x_t -> x_{t_prev}`` (``t_prev < t``).

    Args:
        x_t: ``[B, ...]`` the current sample. eps: ``[B, ...]`` the predicted noise.
        t, t_prev: int or ``[B]`` timesteps; ``t_prev = -1`` steps to the clean sample.
        eta: 0 is deterministic DDIM, 1 matches DDPM's posterior variance.
        clip_x0: clamp ``x0_hat`` to ``[-clip_x0, clip_x0]`` (diffusers' ``clip_sample``); the
            direction term keeps the model's eps, as diffusers does by default.

    Returns:
        ``(mean, std)``: ``x_{t_prev} = mean + std * noise``; ``std`` has shape ``[B, 1, ...]``
        or is a scalar tensor. Matches ``diffusers.DDIMScheduler.step``.
    """
    ab, ab_prev = schedule.alpha_bar_at(t), schedule.alpha_bar_at(t_prev)
    if (torch.as_tensor(t_prev) >= torch.as_tensor(t)).any():
        raise ValueError(f"t_prev must be below t (inference runs t descending): t={t}, t_prev={t_prev}")
    x0_hat = x0_from_eps(x_t, eps, ab)
    if clip_x0 is not None:
        x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
    sigma = ddim_sigma(ab, ab_prev, eta)
    direction = _coef((1 - ab_prev - sigma**2).clamp_min(0).sqrt(), x_t) * eps
    mean = _coef(ab_prev.sqrt(), x_t) * x0_hat + direction
    return mean, _coef(sigma, x_t)
