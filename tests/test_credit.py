import math

import pytest
import torch

from dde import credit
from dde.schedule import NoiseSchedule

# method.md section 3c: dde-closed on the SD1.5 schedule, mean 1 over t in [0, 1000)
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


def test_binned_ideal_table_is_close_to_the_closed_form(sd_schedule):
    table = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=50)
    w_binned = credit.weights("dde", sd_schedule, table)
    w_exact = credit.weights("dde-closed", sd_schedule)
    # near T, rho = 1 - s_t r_t / v is a small difference of large numbers, so the linear
    # interpolation of r between 50 bin centres shows there most
    assert (w_binned - w_exact)[:700].abs().max().item() < 0.02
    assert (w_binned - w_exact).abs().max().item() < 0.05
    assert abs(w_binned.argmax().item() - 354) <= 10


def test_calibrated_weight_responds_to_a_worse_reference(sd_schedule):
    # a reference with twice the ideal error recovers less of x0: rho falls, the peak moves to lower t
    table = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=100)
    table.r = table.r * 2
    w = credit.weights("dde", sd_schedule, table)
    assert w.argmax().item() < 354
    rho = credit.reliability(sd_schedule, table)
    assert rho.min().item() == pytest.approx(credit.DEFAULT_RHO_MIN)


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


def test_table_interpolation():
    table = credit.CalibrationTable(T=100, bins=2, r=torch.tensor([1.0, 3.0]))
    # centres at 24.5 and 74.5; flat beyond them, linear between
    r = table.r_at()
    assert r[0].item() == 1.0 and r[99].item() == 3.0
    assert r[49].item() == pytest.approx(1.0 + 2.0 * (49 - 24.5) / 50)


def test_table_state_roundtrip(tmp_path):
    from safetensors.torch import load_file, save_file

    table = credit.CalibrationTable(T=1000, bins=50, decay=0.9, v=0.3)
    table.update(torch.randint(0, 1000, (64,)), torch.rand(64))
    save_file(table.state_dict(), tmp_path / "cal.safetensors")
    back = credit.CalibrationTable.from_state_dict(load_file(tmp_path / "cal.safetensors"))
    assert (back.T, back.bins, back.decay, back.v) == (1000, 50, 0.9, 0.3)
    torch.testing.assert_close(back.r, table.r)
    assert torch.equal(back.counts, table.counts)
    with pytest.raises(ValueError, match="lacks"):
        credit.CalibrationTable.from_state_dict({"r": table.r})


@pytest.mark.parametrize("v", [1.0, 0.3])
def test_calibration_converges_to_the_gaussian_ideal(sd_schedule, v):
    """Synthetic Gaussian data with the analytic ideal denoiser: the EMA-updated table, started at
    the wrong prior (ideal for v = 1 when v differs), converges to r_t = ab v / (ab v + 1 - ab)."""
    gen = torch.Generator().manual_seed(1)
    table = credit.CalibrationTable(sd_schedule.T, bins=50, decay=0.95, v=v)
    for _ in range(400):
        t = torch.randint(0, sd_schedule.T, (64,), generator=gen)
        ab = sd_schedule.alpha_bar_at(t)[:, None]
        x0 = torch.randn(64, 256, generator=gen, dtype=torch.float64) * math.sqrt(v)
        eps = torch.randn(64, 256, generator=gen, dtype=torch.float64)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        eps_hat = (1 - ab).sqrt() / (ab * v + 1 - ab) * x_t
        table.update(t, (eps_hat - eps).pow(2).mean(dim=1))
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
