import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from dde import ddim
from dde.schedule import NoiseSchedule
from tests.conftest import SD_CONFIG


def test_eps_x0_roundtrip(sd_schedule):
    x0, eps = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    ab = sd_schedule.alpha_bar_at(torch.tensor([0, 250, 600, 999]))
    x_t = ddim.add_noise(x0, eps, ab)
    torch.testing.assert_close(ddim.x0_from_eps(x_t, eps, ab), x0)
    torch.testing.assert_close(ddim.eps_from_x0(x_t, x0, ab), eps)


def test_add_noise_matches_diffusers(sd_schedule):
    x0, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([5, 354, 990])
    ours = ddim.add_noise(x0, eps, sd_schedule.alpha_bar_at(t))
    theirs = DDPMScheduler(**SD_CONFIG).add_noise(x0, eps, t)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_step_matches_diffusers(eta, set_alpha_to_one, clip):
    config = {**SD_CONFIG, "clip_sample": clip, "set_alpha_to_one": set_alpha_to_one, "steps_offset": 1}
    scheduler = DDIMScheduler(**config)
    scheduler.set_timesteps(25)
    schedule = NoiseSchedule.from_scheduler_config(config)
    step = 1000 // 25
    for t in scheduler.timesteps.tolist()[::6] + [scheduler.timesteps[-1].item()]:
        x, eps, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
        theirs = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        mean, std = ddim.ddim_step(schedule, x, eps, t, max(t - step, -1), eta=eta,
                                   clip_x0=1.0 if clip else None)
        torch.testing.assert_close(mean + std * noise, theirs, rtol=1e-4, atol=1e-4)


def test_ddim_step_batched_timesteps(sd_schedule):
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mean, std = ddim.ddim_step(sd_schedule, x, eps, torch.tensor([500, 100]), torch.tensor([400, -1]), eta=1.0)
    one, _ = ddim.ddim_step(sd_schedule, x[:1], eps[:1], 500, 400, eta=1.0)
    torch.testing.assert_close(mean[:1], one)
    assert std.shape == (2, 1, 1, 1) and std[1].item() == 0.0  # landing on alpha_bar = 1 adds no noise


def test_ddim_eta0_is_deterministic_and_exact_for_true_eps(sd_schedule):
    # with the true eps, a DDIM step lands exactly on q(x_prev | x0) at the same eps
    x0, eps = torch.randn(1, 3, 4, 4, dtype=torch.float64), torch.randn(1, 3, 4, 4, dtype=torch.float64)
    x_t = ddim.add_noise(x0, eps, sd_schedule.alpha_bar_at(700))
    mean, std = ddim.ddim_step(sd_schedule, x_t, eps, 700, 300)
    torch.testing.assert_close(mean, ddim.add_noise(x0, eps, sd_schedule.alpha_bar_at(300)))
    assert std.item() == 0


def test_ddim_bad_arguments(sd_schedule):
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="t_prev must be below t"):
        ddim.ddim_step(sd_schedule, x, x, 100, 200)
    with pytest.raises(ValueError, match="eta must lie in"):
        ddim.ddim_step(sd_schedule, x, x, 200, 100, eta=2.0)
    with pytest.raises(ValueError, match="3 coefficients for a batch of 1"):
        ddim.add_noise(x, x, torch.tensor([0.5, 0.5, 0.5]))
