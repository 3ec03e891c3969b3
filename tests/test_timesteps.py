import math

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


def test_importance_factor_maps_expectations_back_to_the_plain_draw(sd_schedule):
    """With q proportional to w p, E_q[f] is the w-weighted mean and E_q[factor f] = E_p[f]:
    exact by enumeration and by Monte Carlo; the factor is 1 / w for a weight of mean 1 under p."""
    w = credit.weights("dde-closed", sd_schedule)
    f = torch.sin(torch.arange(1000, dtype=torch.float64) / 50) + 2  # any per-t loss
    sampler = ImportanceSampler(w)
    q = sampler.probabilities()
    assert (q * f).sum().item() == pytest.approx((w * f).mean().item(), rel=1e-12)
    draw = sampler.sample(400_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(draw.factor, 1 / w[draw.t])
    assert (q * (1 / w) * f).sum().item() == pytest.approx(f.mean().item(), rel=1e-12)
    assert f[draw.t].mean().item() == pytest.approx((w * f).mean().item(), rel=5e-3)
    assert (draw.factor * f[draw.t]).mean().item() == pytest.approx(f.mean().item(), rel=2e-2)


def _mc_gradient(sampler, w, n, *, inside_weight=True, use_factor=True, seed=0):
    """Per-pair gradients d loss_i / d theta of the preference loss with delta_i = theta * a(t_i)
    (a toy model whose error gap depends on t), for n pairs drawn by ``sampler``: theta is one
    shared value held in n copies, so the gradient of the summed loss is the per-pair gradient."""
    from dde.losses import preference_loss

    draw = sampler.sample(n, torch.Generator().manual_seed(seed))
    a = torch.cos(draw.t.double() / 160.0)
    theta = torch.full((n,), 0.004, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(n, dtype=torch.float64)
    loss, _ = preference_loss(theta * a, zeros, zeros, zeros, beta=500.0,
                              weights=w[draw.t] if inside_weight else None,
                              factors=draw.factor if use_factor else None)
    (grad,) = torch.autograd.grad(loss * n, theta)
    return grad


def test_importance_and_inside_have_equal_expected_gradients(sd_schedule):
    """The unbiased importance mode (w inside the sigmoid, t from q proportional to w p, each pair's
    loss times p/q) has the expected gradient of the inside mode (t from p, w inside), within the
    Monte Carlo standard error; the earlier importance mode (w = 1 inside, no factor) does not."""
    w = credit.weights("dde-closed", sd_schedule)
    inside = _mc_gradient(UniformSampler(1000), w, 200_000)
    importance = _mc_gradient(ImportanceSampler(w), w, 200_000, seed=1)
    se = math.sqrt(inside.var().item() / len(inside) + importance.var().item() / len(importance))
    assert abs(inside.mean().item() - importance.mean().item()) < 4 * se
    old = _mc_gradient(ImportanceSampler(w), w, 200_000, inside_weight=False, use_factor=False, seed=2)
    se_old = math.sqrt(inside.var().item() / len(inside) + old.var().item() / len(old))
    assert abs(inside.mean().item() - old.mean().item()) > 10 * se_old


@pytest.mark.parametrize("name", ["window", "spo-window"])
def test_windows_draw_inside_their_support(sd_schedule, name):
    w, support = credit.weights_and_support(name, sd_schedule)
    for sampler in (UniformSampler(1000, support=support), ImportanceSampler(w, support=support)):
        draw = sampler.sample(50_000, torch.Generator().manual_seed(0))
        assert support[draw.t].all()
        assert w[draw.t].mean().item() == pytest.approx(1.0)  # no pair spent on a weight of zero
    # mean 1 under the draw distribution (uniform over the support)
    p = UniformSampler(1000, support=support).probabilities()
    assert (p * w).sum().item() == pytest.approx(1.0, rel=1e-12)


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
    with pytest.raises(ValueError, match="no timestep lies"):
        UniformSampler(1000, (800, 900), support=credit.weights_and_support("window", sd_schedule)[1])
    with pytest.raises(ValueError, match="0 <= t_lo < t_hi <= T=1000"):
        UniformSampler(1000, (5, 5))


def test_pair_timesteps_share_t():
    t = torch.tensor([3, 7])
    assert pair_timesteps(t).tolist() == [3, 7, 3, 7]
