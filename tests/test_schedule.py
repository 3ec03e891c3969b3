import math

import pytest
import torch
from diffusers import DDPMScheduler

from dde.schedule import NoiseSchedule
from tests.conftest import SD_CONFIG

CONFIGS = [
    SD_CONFIG,
    {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"},
    {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"},
    {"num_train_timesteps": 200, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},
    {**SD_CONFIG, "rescale_betas_zero_snr": True},
]


def _config_id(c: dict) -> str:
    return f"{c.get('beta_schedule')}-{c['num_train_timesteps']}-zsnr{c.get('rescale_betas_zero_snr', False)}"


@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_alphas_cumprod_match_diffusers(config):
    ours = NoiseSchedule.from_scheduler_config(config)
    theirs = DDPMScheduler(**config)
    assert ours.T == config["num_train_timesteps"]
    assert ours.alphas_cumprod.dtype == torch.float64
    # diffusers computes in float32, we in float64
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.betas, theirs.betas.double(), rtol=1e-3, atol=1e-5)


def test_from_real_scheduler_config_object():
    schedule = NoiseSchedule.from_scheduler_config(DDPMScheduler(**SD_CONFIG).config)
    assert schedule.T == 1000


def test_derived_quantities(sd_schedule):
    ab = sd_schedule.alphas_cumprod
    torch.testing.assert_close(sd_schedule.snr, ab / (1 - ab))
    torch.testing.assert_close(sd_schedule.ddim_coefficient, 1 / sd_schedule.snr)
    # closed form of the first value: alpha_bar_0 = 1 - beta_start
    assert math.isclose(ab[0].item(), 1 - 0.00085, rel_tol=1e-12)
    assert (ab[1:] < ab[:-1]).all()
    # the SD schedule crosses alpha_bar = 0.5 at t = 354
    assert abs(ab[354].item() - 0.5) < 1e-3


def test_alpha_bar_at_final_step():
    schedule = NoiseSchedule.from_scheduler_config({**SD_CONFIG, "set_alpha_to_one": False})
    assert schedule.alpha_bar_at(-1).item() == schedule.alphas_cumprod[0].item()
    assert NoiseSchedule.from_scheduler_config(SD_CONFIG).alpha_bar_at(-1).item() == 1.0
    got = schedule.alpha_bar_at(torch.tensor([[0, 999]]))
    assert got.shape == (1, 2)
    with pytest.raises(ValueError, match="timesteps must lie in"):
        schedule.alpha_bar_at(1000)


def test_from_betas_roundtrip():
    betas = torch.linspace(1e-4, 0.02, 50)
    s = NoiseSchedule.from_betas(betas)
    torch.testing.assert_close(s.alphas_cumprod, torch.cumprod(1 - betas.double(), 0))


@pytest.mark.parametrize("bad, message", [
    ({"beta_schedule": "sigmoid"}, "unknown beta_schedule 'sigmoid'"),
    ({"trained_betas": [0.1]}, "at least 2 steps"),
    ({"trained_betas": [0.1, float("nan")]}, "finite"),
    ({"trained_betas": [0.1, 1.5]}, r"\[0, 1\]"),
])
def test_bad_configs_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        NoiseSchedule.from_scheduler_config(bad)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="betas has 3 steps but alphas_cumprod has 2"):
        NoiseSchedule(torch.zeros(3), torch.ones(2))
