"""Preference losses over per-sample errors: pure functions of tensors, no model calls.

Convention (Diffusion-DPO, Wallace et al. 2023, as in its reference code)::

    delta = (e_theta_w - e_ref_w) - (e_theta_l - e_ref_l)
    z     = -(beta / 2) * w(t) * delta
    loss  = mean over pairs of -log sigmoid(z)

The factor 1/2 is inside: beta = 5000 for SD1.5 means what it means in Diffusion-DPO. ``w(t)`` is
the credit weight of the pair's timestep (:mod:`dde.credit`), a constant (stop-gradient); w = 1
is Diffusion-DPO, DDE passes ``w_dde(t)``. Errors are per-sample means over (C, H, W) of
``(eps_model - eps)^2`` (:func:`per_sample_error`); batches of pairs are ``[winners; losers]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` x2 -> ``[B]``: mean squared error over every non-batch dimension (float32+)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    diff = pred.float() - target.float()
    return diff.pow(2).flatten(1).mean(dim=1)


def split_pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[2P, ...]`` laid out ``[winners; losers]`` -> (winners ``[P, ...]``, losers ``[P, ...]``)."""
    if x.shape[0] % 2:
        raise ValueError(f"a [winners; losers] batch needs an even size, got {x.shape[0]}")
    return x.chunk(2, dim=0)


def _check(named: dict[str, torch.Tensor]) -> None:
    shapes = {k: tuple(v.shape) for k, v in named.items()}
    first = next(iter(shapes.values()))
    if len(first) != 1 or any(s != first for s in shapes.values()):
        raise ValueError(f"per-pair inputs must be 1-D tensors of one length, got {shapes}")
    for k, v in named.items():
        bad = ~torch.isfinite(v.detach())
        if bad.any():
            raise ValueError(f"{k} has {int(bad.sum())} non-finite value(s), e.g. {v.detach()[bad][0].item()}")


def preference_loss(
    e_theta_w: torch.Tensor,
    e_theta_l: torch.Tensor,
    e_ref_w: torch.Tensor,
    e_ref_l: torch.Tensor,
    *,
    beta: float,
    weights: torch.Tensor | None = None,
    factors: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The DPO-style diffusion preference loss (see the module docstring for the convention).

    Args:
        e_theta_w, e_theta_l: ``[P]`` policy errors of winners and losers (differentiable).
        e_ref_w, e_ref_l: ``[P]`` reference errors (no gradient needed).
        beta: KL strength, > 0; the loss uses beta / 2.
        weights: ``[P]`` credit weight ``w(t)`` of each pair's timestep, or None for w = 1.
            Detached: weights never receive gradient.
        factors: ``[P]`` importance factor ``p(t) / q(t)`` of each pair's timestep draw
            (:mod:`dde.timesteps`), multiplying that pair's loss, or None for 1. With ``t`` drawn
            from ``q`` proportional to ``w p`` and ``w`` still inside the sigmoid, this is an
            unbiased estimate of the loss with ``t`` drawn from ``p``.

    Returns:
        ``(loss, diagnostics)``. ``loss`` is a scalar. ``diagnostics`` holds detached tensors:
        scalars ``implicit_acc`` (mean of z > 0), ``reward_margin`` (mean z), ``e_theta_w``,
        ``e_theta_l``, ``e_ref_w``, ``e_ref_l`` (means), and per pair ``[P]``: ``z``, ``delta``,
        ``weight`` and ``credit`` = |d loss_i / d delta_i| = sigmoid(-z) * beta / 2 * w, the
        empirical credit of the pair's timestep (bin it by t with :func:`bin_by_timestep`).
    """
    if not (isinstance(beta, (int, float)) and beta > 0 and beta != float("inf")):
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    named = {"e_theta_w": e_theta_w, "e_theta_l": e_theta_l, "e_ref_w": e_ref_w, "e_ref_l": e_ref_l}
    named["weights"] = torch.ones_like(e_theta_w) if weights is None else weights
    named["factors"] = torch.ones_like(e_theta_w) if factors is None else factors
    _check(named)
    w = named["weights"].detach().to(e_theta_w.dtype)
    f = named["factors"].detach().to(e_theta_w.dtype)
    delta = (e_theta_w - e_ref_w) - (e_theta_l - e_ref_l)
    z = -(beta / 2) * w * delta
    loss = -(f * F.logsigmoid(z)).mean()
    zd = z.detach()
    diagnostics = {
        "implicit_acc": (zd > 0).float().mean(),
        "reward_margin": zd.mean(),
        **{k: v.detach().mean() for k, v in named.items() if k not in ("weights", "factors")},
        "z": zd,
        "delta": delta.detach(),
        "weight": w,
        "credit": f * torch.sigmoid(-zd) * (beta / 2) * w,
    }
    return loss, diagnostics


def sft_loss(e_theta_w: torch.Tensor, *, weights: torch.Tensor | None = None,
             factors: torch.Tensor | None = None) -> torch.Tensor:
    """Supervised fine-tuning on winners: mean of ``factor * w(t) * e_theta_w`` (``[P]`` each;
    w and factor 1 where None)."""
    named = {"e_theta_w": e_theta_w}
    named.update({k: v for k, v in (("weights", weights), ("factors", factors)) if v is not None})
    _check(named)
    scale = torch.ones_like(e_theta_w)
    for k in ("weights", "factors"):
        if k in named:
            scale = scale * named[k].detach().to(e_theta_w.dtype)
    return (scale * e_theta_w).mean()


def bin_by_timestep(values: torch.Tensor, t: torch.Tensor, T: int, bins: int) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: N803
    """Per-bin (sum, count) of ``values`` ``[N]`` at timesteps ``t`` ``[N]``, bins of width T / bins.

    Returns ``([bins]`` float64 sums, ``[bins]`` long counts); divide for per-bin means where
    counts > 0. Sums and counts accumulate across steps without bias.
    """
    values = values.detach().to("cpu", torch.float64).flatten()
    idx = (t.detach().cpu().long().flatten() * bins) // T
    if values.shape != idx.shape:
        raise ValueError(f"{values.numel()} values but {idx.numel()} timesteps")
    sums = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, values)
    counts = torch.zeros(bins, dtype=torch.long).index_add_(0, idx, torch.ones_like(idx))
    return sums, counts
