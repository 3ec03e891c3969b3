import os
import shutil

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


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random toy model and 40 rendered preference pairs: (folder, model dir)."""
    from dde.testing import rendered_pairs, tiny_toy_model

    root = tmp_path_factory.mktemp("world")
    model = tiny_toy_model(root / "model")
    rendered_pairs(40).to_parquet(root / "pairs.parquet")
    return root, model


def require_chromium() -> str:
    """Path of Debian's chromium. Without it a test skips on a workstation but FAILS under CI=true,
    where .ci/run must have installed it (apt-get install -y chromium)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run should have installed it")
    pytest.skip("needs chromium (apt-get install -y chromium)")
