"""How timesteps are drawn: kept apart from how much a timestep counts (:mod:`dde.credit`).

Every sampler returns a :class:`TimestepDraw`: the drawn ``t`` ``[N]`` (training indices, ``t = 0``
least noisy) and an importance factor ``[N]`` float64 such that, for any f,
``E_draw[factor * f(t)] = mean of f over the sampler's range`` (uniform-over-range expectation).
Winners and losers of a pair share ``t``: draw once per pair and :func:`pair_timesteps` repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dde.schedule import DTYPE


@dataclass(frozen=True)
class TimestepDraw:
    t: torch.Tensor  # [N] long
    factor: torch.Tensor  # [N] float64 importance factor


def _check_range(T: int, t_range: tuple[int, int] | None) -> tuple[int, int]:  # noqa: N803
    lo, hi = (0, T) if t_range is None else (int(t_range[0]), int(t_range[1]))
    if not 0 <= lo < hi <= T:
        raise ValueError(f"timestep range must satisfy 0 <= t_lo < t_hi <= T={T}, got [{lo}, {hi})")
    return lo, hi


class UniformSampler:
    """``t`` uniform on ``[t_lo, t_hi)`` (default the whole ``[0, T)``); factors are 1."""

    def __init__(self, T: int, t_range: tuple[int, int] | None = None) -> None:  # noqa: N803
        self.T = T
        self.lo, self.hi = _check_range(T, t_range)

    def probabilities(self) -> torch.Tensor:
        """``[T]`` float64 probability of each ``t``."""
        p = torch.zeros(self.T, dtype=DTYPE)
        p[self.lo:self.hi] = 1.0 / (self.hi - self.lo)
        return p

    def sample(self, n: int, generator: torch.Generator | None = None) -> TimestepDraw:
        t = torch.randint(self.lo, self.hi, (n,), generator=generator)
        return TimestepDraw(t, torch.ones(n, dtype=DTYPE))


class ImportanceSampler:
    """``t`` drawn with probability proportional to ``weights`` ``[T]`` (>= 0) on ``[t_lo, t_hi)``.

    The factor is ``1 / (n_range * p(t))``, so ``E[factor * f(t)]`` is the uniform mean of f over
    the range, and ``E[f(t)]`` is the mean of ``w(t) f(t) / mean(w)``: drawing from the weights and
    using ``w = 1`` in the loss equals weighting the per-pair loss by ``w`` in expectation.
    """

    def __init__(self, weights: torch.Tensor, t_range: tuple[int, int] | None = None) -> None:
        weights = torch.as_tensor(weights, dtype=DTYPE).flatten()
        self.T = weights.numel()
        self.lo, self.hi = _check_range(self.T, t_range)
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("importance weights must be finite and non-negative")
        w = torch.zeros_like(weights)
        w[self.lo:self.hi] = weights[self.lo:self.hi]
        if w.sum() <= 0:
            raise ValueError(f"importance weights have no mass in [{self.lo}, {self.hi})")
        self._p = w / w.sum()

    def probabilities(self) -> torch.Tensor:
        return self._p.clone()

    def sample(self, n: int, generator: torch.Generator | None = None) -> TimestepDraw:
        t = torch.multinomial(self._p, n, replacement=True, generator=generator)
        return TimestepDraw(t, 1.0 / ((self.hi - self.lo) * self._p[t]))


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
                 weights: torch.Tensor | None = None):
    """``kind`` in ``uniform`` (or ``range``: the same, on ``t_range``), ``importance`` (needs
    ``weights``), ``stratified``."""
    if kind in ("uniform", "range"):
        return UniformSampler(T, t_range)
    if kind == "stratified":
        return StratifiedSampler(T, t_range)
    if kind == "importance":
        if weights is None:
            raise ValueError("the importance sampler needs weights")
        if torch.as_tensor(weights).numel() != T:
            raise ValueError(f"importance weights have {torch.as_tensor(weights).numel()} entries, T={T}")
        return ImportanceSampler(weights, t_range)
    raise ValueError(f"unknown timestep sampler {kind!r}; known: uniform, range, importance, stratified")


def pair_timesteps(t: torch.Tensor) -> torch.Tensor:
    """``[P]`` per-pair timesteps -> ``[2P]`` laid out ``[winners; losers]`` (shared t)."""
    return torch.cat([t, t])
