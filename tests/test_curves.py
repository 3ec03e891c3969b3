"""Curves: estimation error on Gaussian data with the analytic denoiser; curves from run dirs."""

import json

import numpy as np
import pytest
import torch

from analysis import curves
from analysis.estimation import estimation_error_frame, k_step_estimate
from dde import credit
from tests.conftest import SD_CONFIG


class GaussianIdeal:
    """A stand-in backend whose eps prediction is the exact posterior mean for N(0, v) data."""

    def __init__(self, schedule, v):
        self.schedule, self.v, self.scheduler_config = schedule, v, SD_CONFIG

    def encode_prompts(self, prompts):
        return None

    def predict_eps(self, x_t, t, cond):
        ab = self.schedule.alpha_bar_at(t).view(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
        return (1 - ab).sqrt() / (ab * self.v + 1 - ab) * x_t


def test_single_shot_error_matches_the_calibrated_prediction(sd_schedule):
    v = 0.5
    backend = GaussianIdeal(sd_schedule, v)
    x0 = torch.randn(256, 3, 8, 8, dtype=torch.float64) * np.sqrt(v)
    table = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=1000, v=v)
    frame = estimation_error_frame(backend, x0, [""] * 256, timesteps=(100, 354, 700), ks=(1, 5), calibration=table)
    for t in (100, 354, 700):
        part = frame[frame.t == t].set_index("series")
        measured = part.loc["single-shot (measured)"]
        predicted = part.loc["s_t r_t (calibrated prediction)", "value"]
        ab = sd_schedule.alphas_cumprod[t].item()
        assert predicted == pytest.approx((1 - ab) * v / (ab * v + 1 - ab), rel=1e-6)
        assert measured.value == pytest.approx(predicted, rel=0.05)
        assert measured.lo < measured.value < measured.hi
    assert set(frame.series) == {"single-shot (measured)", "s_t r_t (calibrated prediction)", "5-step DDIM",
                                 "data variance v"}


def test_k_step_with_one_call_is_the_single_shot(sd_schedule):
    backend = GaussianIdeal(sd_schedule, 1.0)
    x_t = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    tt = torch.full((4,), 500)
    expected = (x_t - (1 - sd_schedule.alpha_bar_at(tt)).sqrt().view(-1, 1, 1, 1) * backend.predict_eps(x_t, tt, None))
    expected = expected / sd_schedule.alpha_bar_at(tt).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(k_step_estimate(backend, x_t, 500, None, 1), expected)
    assert k_step_estimate(backend, x_t, 500, None, 20).shape == x_t.shape


def _write_run(path, rows, credit_rows, cal_rows=()):
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn')
    (path / "credit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in credit_rows))
    (path / "calibration.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cal_rows))


def test_curves_from_run_dirs(tmp_path, sd_schedule):
    rows = [{"step": s, "loss": 0.7 - 0.1 * s, "implicit_acc": 0.5, "reward_margin": 0.1 * s, "grad_norm": 1.0}
            for s in range(1, 5)]
    credit_rows = [{"step": 1, "t": [10, 20, 990], "credit": [1.0, 3.0, None]}]
    ideal = credit.CalibrationTable.gaussian_ideal(sd_schedule, bins=50)
    cal = [{"step": 1, "r": ideal.r.tolist(), "v": 1.0, "counts": [0] * 50}]
    _write_run(tmp_path / "a", rows, credit_rows, cal)
    frame = curves.training_curves_frame({"a": tmp_path / "a"})
    assert set(frame.metric) == set(curves.TRAINING_METRICS)
    assert frame[frame.metric == "loss"].value.tolist() == pytest.approx([0.6, 0.5, 0.4, 0.3])
    smooth = curves.training_curves_frame({"a": tmp_path / "a"}, smooth=2)
    assert smooth[smooth.metric == "loss"].value.tolist() == pytest.approx([0.6, 0.55, 0.45, 0.35])
    emp = curves.empirical_credit_frame({"a": tmp_path / "a"}, bins=10)
    assert emp.value.tolist() == [2.0] and emp.n.tolist() == [2] and emp.t.tolist() == [50.0]
    cal_frame = curves.calibration_frame(tmp_path / "a", sd_schedule)
    assert len(cal_frame) == 1000
    closed = credit.weights("dde", sd_schedule, ideal).numpy()
    np.testing.assert_allclose(cal_frame.w_dde.to_numpy(), closed)
    assert curves.training_curves_frame({"none": tmp_path / "missing"}).empty
