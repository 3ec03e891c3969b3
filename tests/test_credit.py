import math

import numpy as np
import pytest
import torch

from dde import credit
from dde.schedule import NoiseSchedule

# docs/method.md section 3c: dde-closed on the SD1.5 schedule, mean 1 over t in [0, 1000)
# (value, tolerance: half a unit of the last stated digit)
CLOSED_FORM_VALUES = {0: (0.007, 5e-4), 100: (0.765, 5e-4), 200: (1.501, 5e-4), 354: (2.02, 5e-3),
                      500: (1.617, 5e-4), 700: (0.612, 5e-4), 999: (0.038, 5e-4)}


def test_registry_has_every_variant_of_the_method():
    assert set(credit.variant_names()) == {
        "dpo", "dde", "dde-closed", "dde-step", "dde-single", "window", "gamma", "spo-window"}


@pytest.mark.parametrize("t, expected", CLOSED_FORM_VALUES.items())
def test_dde_closed_values(sd_schedule, t, expected):
    value, tol = expected
    w = credit.weights("dde-closed", sd_schedule)
    assert w.shape == (1000,) and w.dtype == torch.float64
    assert w[t].item() == pytest.approx(value, abs=tol)


def test_dde_closed_peak_and_mass(sd_schedule):
    w = credit.weights("dde-closed", sd_schedule)
    assert w.argmax().item() == 354
    assert w[200:700].sum().item() / w.sum().item() == pytest.approx(0.78, abs=0.005)


def test_uncalibrated_dde_is_dde_closed(sd_schedule):
    torch.testing.assert_close(credit.weights("dde", sd_schedule), credit.weights("dde-closed", sd_schedule))


@pytest.mark.parametrize("name", credit.variant_names())
@pytest.mark.parametrize("config", [
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "linear"},
    {"beta_schedule": "squaredcos_cap_v2"},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 100},
])
def test_every_variant_is_mean_one_on_its_support(name, config):
    schedule = NoiseSchedule.from_scheduler_config(config)
    w = credit.weights(name, schedule)
    assert w.shape == (schedule.T,)
    assert torch.isfinite(w).all() and (w >= 0).all()
    support = w > 0
    assert w[support].mean().item() == pytest.approx(1.0, rel=1e-12)


def test_endpoints_and_peaks_of_each_variant(sd_schedule):
    ab = sd_schedule.alphas_cumprod
    w = {n: credit.weights(n, sd_schedule) for n in credit.variant_names()}
    assert (w["dpo"] == 1).all()
    # dde-single = alpha_bar / mean(alpha_bar): largest at t = 0, smallest at T-1
    assert w["dde-single"][0].item() == pytest.approx(ab[0].item() / ab.mean().item())
    assert w["dde-single"].argmax().item() == 0 and w["dde-single"].argmin().item() == 999
    # dde-step = (1 - alpha_bar) / mean(1 - alpha_bar): vanishes at t = 0, peaks at T-1
    assert w["dde-step"][0].item() == pytest.approx((1 - ab[0].item()) / (1 - ab).mean().item())
    assert w["dde-step"].argmax().item() == 999 and w["dde-step"][0].item() < 0.01
    # window 200..700 and SPO's 0..750
    assert w["window"][199] == 0 and w["window"][200] == 1 and w["window"][699] == 1 and w["window"][700] == 0
    assert w["spo-window"][0] == 1 and w["spo-window"][749] == 1 and w["spo-window"][750] == 0
    # gamma^(T-1-t): ratio between neighbours is gamma, largest at the noisiest step
    g = w["gamma"]
    assert (g[1:] / g[:-1]).sub(1 / 0.995).abs().max().item() < 1e-9
    assert g.argmax().item() == 999
    mean = sum(0.995**k for k in range(1000)) / 1000
    assert g[999].item() == pytest.approx(1 / mean)


def test_t_range_cuts_the_support(sd_schedule):
    w = credit.weights("dpo", sd_schedule, t_range=(100, 300))
    assert (w[:100] == 0).all() and (w[300:] == 0).all() and (w[100:300] == 1).all()
    w = credit.weights("dde-closed", sd_schedule, t_range=(0, 500))
    assert w[:500].mean().item() == pytest.approx(1.0)


def test_variant_parameters(sd_schedule):
    w = credit.weights("window", sd_schedule, t_lo=10, t_hi=20)
    assert w.sum().item() == 10
    w = credit.weights("gamma", sd_schedule, gamma=1.0)
    assert (w == 1).all()


@pytest.mark.parametrize("call, message", [
    (lambda s: credit.weights("dde-plus", s), "unknown credit variant 'dde-plus'"),
    (lambda s: credit.weights("window", s, t_lo=800, t_hi=700), r"0 <= t_lo < t_hi <= T=1000"),
    (lambda s: credit.weights("gamma", s, gamma=1.5), "gamma must lie in"),
    (lambda s: credit.weights("window", s, t_range=(800, 900)), "no support inside t_range"),
    (lambda s: credit.weights("dde", s, credit.CalibrationTable(500)), "T=500 but the schedule has T=1000"),
])
def test_bad_arguments_raise(sd_schedule, call, message):
    with pytest.raises(ValueError, match=message):
        call(sd_schedule)


def test_gaussian_ideal_reliability_is_alpha_bar_for_unit_variance(sd_schedule):
    table = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=1000)  # one bin per step: no interpolation
    torch.testing.assert_close(credit.reliability(sd_schedule, table), sd_schedule.alphas_cumprod.clamp_min(1e-3))
    # v != 1: rho = ab v / (ab v + 1 - ab)
    v = 0.25
    table = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=1000, v=v)
    ab = sd_schedule.alphas_cumprod
    torch.testing.assert_close(credit.reliability(sd_schedule, table), ab * v / (ab * v + 1 - ab))


def test_binned_ideal_table_is_the_closed_form(sd_schedule):
    # r is interpolated as a ratio to the Gaussian ideal at the table's v: the ideal table is exact
    # between bin centres, also near T where rho = 1 - s_t r_t / v subtracts nearly equal numbers
    table = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=50)
    torch.testing.assert_close(credit.weights("dde", sd_schedule, table), credit.weights("dde-closed", sd_schedule))


def test_unvisited_bins_take_the_gaussian_ideal_at_the_measured_v(sd_schedule):
    table = credit.CalibrationTable(sd_schedule.T, bins=50, v=0.2)  # r = 1 stored, but never visited
    ab = sd_schedule.alphas_cumprod
    torch.testing.assert_close(table.r_at(sd_schedule), ab * 0.2 / (ab * 0.2 + 1 - ab))
    table.update(torch.tensor([990]), torch.tensor([1e-3]))  # one visited bin changes only its side
    r = table.r_at(sd_schedule)
    torch.testing.assert_close(r[:970], (ab * 0.2 / (ab * 0.2 + 1 - ab))[:970])
    ideal = lambda a: a * 0.2 / (a * 0.2 + 1 - a)  # noqa: E731
    centre = float(np.interp(989.5, np.arange(1000), ab.numpy()))  # bin 49 covers 980..999
    # beyond the last centre the ratio to the ideal is held
    assert r[995].item() == pytest.approx(1e-3 / ideal(centre) * ideal(ab[995].item()), rel=1e-6)


def test_log_interpolation_hand_computed():
    """Two bins on T = 100 with alpha_bar linear from 1 to 0.01 (hand-made schedule); centres at
    24.5 and 74.5; measured r at the centres is twice and half the ideal there. Between centres
    log(r / r_ideal) runs linearly from log 2 to log 0.5; at t = 49.5 (the midpoint) the ratio is 1."""
    ab = torch.linspace(1.0, 0.01, 100, dtype=torch.float64)
    schedule = NoiseSchedule.from_betas(1 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]]))
    torch.testing.assert_close(schedule.alphas_cumprod, ab)
    v = 0.5
    ideal = lambda a: a * v / (a * v + 1 - a)  # noqa: E731
    a_c = [float(np.interp(c, np.arange(100), ab.numpy())) for c in (24.5, 74.5)]
    table = credit.CalibrationTable(100, bins=2, v=v, r=torch.tensor([2 * ideal(a_c[0]), 0.5 * ideal(a_c[1])]),
                                    counts=torch.tensor([1, 1]))
    r = table.r_at(schedule, torch.tensor([0, 24, 49, 60, 99]))
    expected_ratio = [2.0, 2.0, 2.0 ** (1 - 2 * (24.5 / 50)), 2.0 ** (1 - 2 * (35.5 / 50)), 0.5]
    expected = [ideal(ab[t].item()) * q for t, q in zip([0, 24, 49, 60, 99], expected_ratio)]
    torch.testing.assert_close(r, torch.tensor(expected, dtype=torch.float64))


def test_calibrated_weight_responds_to_a_worse_reference(sd_schedule):
    # a reference with twice the ideal error recovers less of x0: rho falls, the peak moves to lower t
    table = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=100)
    table.r, table.counts = table.r * 2, torch.ones(100, dtype=torch.long)
    w = credit.weights("dde", sd_schedule, table)
    assert w.argmax().item() < 354
    rho = credit.reliability(sd_schedule, table)
    assert rho.min().item() == pytest.approx(credit.DEFAULT_RHO_MIN)
    # the clipped region is where s_t r_t >= v: there rho sits at rho_min
    clipped = table.clipped(sd_schedule)
    assert clipped.any() and not clipped[:300].any()
    assert (rho[clipped] == credit.DEFAULT_RHO_MIN).all() and (rho[~clipped] > credit.DEFAULT_RHO_MIN).all()
    assert not credit.CalibrationTable.gaussian_ideal(sd_schedule).clipped(sd_schedule).any()


def test_table_update_ema_and_mean():
    table = credit.CalibrationTable(T=100, bins=10, decay=0.9)
    table.update(torch.tensor([0, 5, 95]), torch.tensor([1.0, 3.0, 7.0]))
    assert table.r[0].item() == 2.0 and table.r[9].item() == 7.0 and table.counts.tolist()[:1] == [2]
    table.update(torch.tensor([1]), torch.tensor([12.0]))
    assert table.r[0].item() == pytest.approx(0.9 * 2 + 0.1 * 12)
    table.update(torch.tensor([99]), torch.tensor([1.0]), mode="mean")
    assert table.r[9].item() == pytest.approx(4.0)
    assert table.counts.sum().item() == 5
    with pytest.raises(ValueError, match="must be finite"):
        table.update(torch.tensor([3]), torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 100\)"):
        table.update(torch.tensor([100]), torch.tensor([1.0]))


def test_variance_update_replaces_the_prior_then_averages():
    table = credit.CalibrationTable(T=100, bins=10, decay=0.9, v=1.0)
    table.update_variance(0.2, 8, mode="mean")
    assert table.v == 0.2  # the first observation replaces the prior
    table.update_variance(0.4, 8, mode="mean")
    assert table.v == pytest.approx(0.3)
    table.update_variance(1.3, 16)  # EMA
    assert table.v == pytest.approx(0.9 * 0.3 + 0.1 * 1.3) and table.v_count == 32
    with pytest.raises(ValueError, match="positive and finite"):
        table.update_variance(float("nan"))


def test_conditional_variance_hand_computed():
    # two pairs of 2-element images: ||x_w - x_l||^2 = 4 + 0 and 1 + 1 -> v = (4 + 2) / 2 / (2 * 2) = 0.75
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])  # [w1, w2, l1, l2]
    assert credit.conditional_variance(x, [0, 1, 0, 1]) == pytest.approx(((4 + 0) + (1 + 1)) / 2 / (2 * 2))
    # a group of three: mean (1, 1, 1) of [0, 1, 2] per element; within sum 2 per element; 3 - 1 dof
    x3 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    assert credit.conditional_variance(x3, ["a", "a", "a"]) == pytest.approx(1.0)
    # no group holds two images: the per-element variance over all images (unbiased)
    assert credit.conditional_variance(x3) == pytest.approx(1.0)
    assert credit.conditional_variance(x3, ["a", "b", "c"]) == pytest.approx(1.0)
    # conditional below unconditional when the prompt fixes most of the image
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(50, 1, 16, generator=gen) * 3
    data = (means + 0.5 * torch.randn(50, 2, 16, generator=gen)).reshape(100, 16)
    groups = [i // 2 for i in range(100)]
    assert credit.conditional_variance(data, groups) == pytest.approx(0.25, rel=0.15)
    assert credit.conditional_variance(data) > 5
    with pytest.raises(ValueError, match="at least two"):
        credit.conditional_variance(x[:1])


def test_table_state_roundtrip(tmp_path):
    from safetensors.torch import load_file, save_file

    table = credit.CalibrationTable(T=1000, bins=50, decay=0.9, v=0.3)
    table.update(torch.randint(0, 1000, (64,)), torch.rand(64))
    save_file(table.state_dict(), tmp_path / "cal.safetensors")
    back = credit.CalibrationTable.from_state_dict(load_file(tmp_path / "cal.safetensors"))
    assert (back.T, back.bins, back.decay, back.v, back.v_count) == (1000, 50, 0.9, 0.3, 0)
    torch.testing.assert_close(back.r, table.r)
    assert torch.equal(back.counts, table.counts)
    with pytest.raises(ValueError, match="lacks"):
        credit.CalibrationTable.from_state_dict({"r": table.r})


@pytest.mark.parametrize("v", [1.0, 0.3])
def test_calibration_converges_to_the_gaussian_ideal(sd_schedule, v):
    """Synthetic Gaussian data with the analytic ideal denoiser: the EMA-updated table, started at
    the wrong prior (v = 1 when v differs), measures v from the images and converges to
    r_t = ab v / (ab v + 1 - ab)."""
    gen = torch.Generator().manual_seed(1)
    table = credit.CalibrationTable(sd_schedule.T, bins=50, decay=0.95, v=1.0)
    for _ in range(400):
        t = torch.randint(0, sd_schedule.T, (64,), generator=gen)
        ab = sd_schedule.alpha_bar_at(t)[:, None]
        x0 = torch.randn(64, 256, generator=gen, dtype=torch.float64) * math.sqrt(v)
        eps = torch.randn(64, 256, generator=gen, dtype=torch.float64)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        eps_hat = (1 - ab).sqrt() / (ab * v + 1 - ab) * x_t
        table.update(t, (eps_hat - eps).pow(2).mean(dim=1))
        table.update_variance(credit.conditional_variance(x0), len(x0))
    assert table.v == pytest.approx(v, rel=0.03)
    ideal = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=50, v=v)
    rel = (table.r - ideal.r).abs() / ideal.r
    assert rel.max().item() < 0.08, rel
    w = credit.weights("dde", sd_schedule, table)
    w_ideal = credit.weights("dde", sd_schedule, ideal)
    # where rho is small a few per cent of noise in r moves rho by as much as rho itself
    # (rho = 1 - s_t r_t / v subtracts nearly equal numbers); the weight is well determined elsewhere
    determined = credit.reliability(sd_schedule, ideal) > 0.2
    assert (w - w_ideal)[determined].abs().max().item() < 0.08
    assert abs(w.argmax().item() - w_ideal.argmax().item()) <= 20
