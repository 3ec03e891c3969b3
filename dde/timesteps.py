"""How timesteps are drawn: kept apart from how much a timestep counts (:mod:`dde.credit`).

Every sampler draws from a *support*: the training range ``[t_lo, t_hi)``, optionally cut to a
mask (a window variant draws only inside its window). The plain draw distribution ``p`` is uniform
over the support. Every sampler returns a :class:`TimestepDraw`: the drawn ``t`` ``[N]`` (training
indices, ``t = 0`` least noisy) and an importance factor ``[N]`` float64, ``p(t) / q(t)`` for the
distribution ``q`` actually drawn from, so that for any f ``E_q[factor * f(t)] = E_p[f(t)]``.
Winners and losers of a pair share ``t``: draw once per pair and :func:`pair_timesteps` repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dde.schedule import DTYPE


@dataclass(frozen=True)
class TimestepDraw:
    t: torch.Tensor  # [N] long
    factor: torch.Tensor  # [N] float64 importance factor p(t) / q(t)


def _check_range(T: int, t_range: tuple[int, int] | None) -> tuple[int, int]:  # noqa: N803
    lo, hi = (0, T) if t_range is None else (int(t_range[0]), int(t_range[1]))
    if not 0 <= lo < hi <= T:
        raise ValueError(f"timestep range must satisfy 0 <= t_lo < t_hi <= T={T}, got [{lo}, {hi})")
    return lo, hi


def support_mask(T: int, t_range: tuple[int, int] | None = None,  # noqa: N803
                 support: torch.Tensor | None = None) -> torch.Tensor:
    """``[T]`` bool: ``[t_lo, t_hi)`` intersected with ``support`` (if given); never empty."""
    lo, hi = _check_range(T, t_range)
    mask = torch.zeros(T, dtype=torch.bool)
    mask[lo:hi] = True
    if support is not None:
        support = torch.as_tensor(support, dtype=torch.bool).flatten()
        if support.numel() != T:
            raise ValueError(f"support mask has {support.numel()} entries, T={T}")
        mask &= support
    if not mask.any():
        raise ValueError(f"no timestep lies in [{lo}, {hi}) and the support")
    return mask


class UniformSampler:
    """``t`` uniform on the support (default the whole ``[0, T)``); factors are 1."""

    def __init__(self, T: int, t_range: tuple[int, int] | None = None,  # noqa: N803
                 support: torch.Tensor | None = None) -> None:
        self.T = T
        self.mask = support_mask(T, t_range, support)
        self._allowed = self.mask.nonzero().flatten()

    def probabilities(self) -> torch.Tensor:
        """``[T]`` float64 probability of each ``t``."""
        return self.mask.to(DTYPE) / self.mask.sum()

    def sample(self, n: int, generator: torch.Generator | None = None) -> TimestepDraw:
        t = self._allowed[torch.randint(0, len(self._allowed), (n,), generator=generator)]
        return TimestepDraw(t, torch.ones(n, dtype=DTYPE))


class ImportanceSampler:
    """``t`` drawn from ``q`` proportional to ``weights`` ``[T]`` (>= 0) times the uniform ``p`` on
    the support; the factor is ``p(t) / q(t)`` (``= 1 / w(t)`` for a weight of mean 1 under ``p``).

    Used by DDE's "importance" mode: the loss keeps ``w(t)`` inside the sigmoid exactly as the
    "inside" mode does and multiplies each pair's loss by the factor, so both modes have the same
    expected loss and gradient while importance spends the pairs where the weight is large.
    """

    def __init__(self, weights: torch.Tensor, t_range: tuple[int, int] | None = None,
                 support: torch.Tensor | None = None) -> None:
        weights = torch.as_tensor(weights, dtype=DTYPE).flatten()
        self.T = weights.numel()
        self.mask = support_mask(self.T, t_range, support)
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("importance weights must be finite and non-negative")
        w = torch.where(self.mask, weights, torch.zeros_like(weights))
        if w.sum() <= 0:
            raise ValueError("importance weights have no mass on the support")
        self._q = w / w.sum()
        self._p = self.mask.to(DTYPE) / self.mask.sum()

    def probabilities(self) -> torch.Tensor:
        return self._q.clone()

    def sample(self, n: int, generator: torch.Generator | None = None) -> TimestepDraw:
        t = torch.multinomial(self._q, n, replacement=True, generator=generator)
        return TimestepDraw(t, self._p[t] / self._q[t])


class StratifiedSampler:
    """One ``t`` per equal-width stratum of ``[t_lo, t_hi)``, uniform within it (the calibration
    pass uses it so every calibration bin is visited). Factors are 1."""

    def __init__(self, T: int, t_range: tuple[int, int] | None = None) -> None:  # noqa: N803
        self.T = T
        self.lo, self.hi = _check_range(T, t_range)

    def sample(self, n: int, generator: torch.Generator | None = None) -> TimestepDraw:
        edges = torch.linspace(self.lo, self.hi, n + 1, dtype=DTYPE)
        u = torch.rand(n, generator=generator, dtype=DTYPE)
        t = (edges[:-1] + u * (edges[1:] - edges[:-1])).floor().long().clamp(self.lo, self.hi - 1)
        return TimestepDraw(t, torch.ones(n, dtype=DTYPE))


def make_sampler(kind: str, T: int, *, t_range: tuple[int, int] | None = None,  # noqa: N803
                 weights: torch.Tensor | None = None, support: torch.Tensor | None = None):
    """``kind`` in ``uniform`` (or ``range``: the same, on ``t_range``), ``importance`` (needs
    ``weights``), ``stratified``; ``support`` cuts the uniform and importance draws to a mask."""
    if kind in ("uniform", "range"):
        return UniformSampler(T, t_range, support)
    if kind == "stratified":
        return StratifiedSampler(T, t_range)
    if kind == "importance":
        if weights is None:
            raise ValueError("the importance sampler needs weights")
        if torch.as_tensor(weights).numel() != T:
            raise ValueError(f"importance weights have {torch.as_tensor(weights).numel()} entries, T={T}")
        return ImportanceSampler(weights, t_range, support)
    raise ValueError(f"unknown timestep sampler {kind!r}; known: uniform, range, importance, stratified")


def pair_timesteps(t: torch.Tensor) -> torch.Tensor:
    """``[P]`` per-pair timesteps -> ``[2P]`` laid out ``[winners; losers]`` (shared t)."""
    return torch.cat([t, t])
