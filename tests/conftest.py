import os

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dde.schedule import NoiseSchedule  # noqa: E402

SD_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear"}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def sd_schedule() -> NoiseSchedule:
    """The SD1.5 / SDXL training schedule: scaled-linear betas 0.00085..0.012, T = 1000."""
    return NoiseSchedule.from_scheduler_config(SD_CONFIG)
