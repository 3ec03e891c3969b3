import pytest
import torch

from dde import credit
from dde.timesteps import ImportanceSampler, StratifiedSampler, UniformSampler, make_sampler, pair_timesteps


def test_uniform_range():
    draw = UniformSampler(1000, (200, 300)).sample(5000, torch.Generator().manual_seed(0))
    assert draw.t.min() >= 200 and draw.t.max() < 300 and (draw.factor == 1).all()
    assert draw.t.unique().numel() == 100


def test_stratified_visits_every_stratum():
    draw = StratifiedSampler(1000).sample(50, torch.Generator().manual_seed(0))
    assert ((draw.t * 50) // 1000).tolist() == list(range(50))


def test_importance_probabilities_follow_weights(sd_schedule):
    w = credit.weights("dde-closed", sd_schedule)
    sampler = ImportanceSampler(w)
    torch.testing.assert_close(sampler.probabilities(), w / w.sum())
    draw = sampler.sample(200_000, torch.Generator().manual_seed(0))
    hist = torch.bincount(draw.t, minlength=1000).double() / 200_000
    # coarse bins, Monte-Carlo tolerance
    torch.testing.assert_close(hist.view(10, 100).sum(1), (w / w.sum()).view(10, 100).sum(1), atol=5e-3, rtol=0)


def test_importance_sampling_equals_weighting_in_expectation(sd_schedule):
    """Drawing t from p ∝ w with w = 1 in the loss equals weighting the per-pair loss by w under
    uniform t; the factor maps expectations back to the uniform mean. Exact (by enumeration) and
    by Monte Carlo."""
    w = credit.weights("dde-closed", sd_schedule)
    f = torch.sin(torch.arange(1000, dtype=torch.float64) / 50) + 2  # any per-t loss
    sampler = ImportanceSampler(w)
    p = sampler.probabilities()
    assert (p * f).sum().item() == pytest.approx((w * f).mean().item(), rel=1e-12)
    factor_all = 1 / (1000 * p)
    assert (p * factor_all * f).sum().item() == pytest.approx(f.mean().item(), rel=1e-12)
    draw = sampler.sample(400_000, torch.Generator().manual_seed(0))
    assert f[draw.t].mean().item() == pytest.approx((w * f).mean().item(), rel=5e-3)
    assert (draw.factor * f[draw.t]).mean().item() == pytest.approx(f.mean().item(), rel=2e-2)


def test_importance_with_range_restricts_draws(sd_schedule):
    sampler = ImportanceSampler(credit.weights("dpo", sd_schedule), t_range=(10, 20))
    draw = sampler.sample(1000, torch.Generator().manual_seed(0))
    assert draw.t.min() >= 10 and draw.t.max() < 20
    torch.testing.assert_close(draw.factor, torch.ones(1000, dtype=torch.float64))


def test_make_sampler_and_errors(sd_schedule):
    assert isinstance(make_sampler("range", 1000, t_range=(0, 10)), UniformSampler)
    with pytest.raises(ValueError, match="unknown timestep sampler 'beta'"):
        make_sampler("beta", 1000)
    with pytest.raises(ValueError, match="needs weights"):
        make_sampler("importance", 1000)
    with pytest.raises(ValueError, match="10 entries, T=1000"):
        make_sampler("importance", 1000, weights=torch.ones(10))
    with pytest.raises(ValueError, match="no mass"):
        ImportanceSampler(credit.weights("window", sd_schedule), t_range=(800, 900))
    with pytest.raises(ValueError, match="0 <= t_lo < t_hi <= T=1000"):
        UniformSampler(1000, (5, 5))


def test_pair_timesteps_share_t():
    t = torch.tensor([3, 7])
    assert pair_timesteps(t).tolist() == [3, 7, 3, 7]
