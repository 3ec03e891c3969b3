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


def test_single_shot_error_matches_the_gaussian_ideal_and_a_calibration_fitted_elsewhere(sd_schedule):
    """On Gaussian data with the analytic denoiser, the measured single-shot error on fresh images
    matches the Gaussian ideal at the images' own (measured) v, and the prediction s_t r_t of a
    table fitted on *other* images; v is the prompt-conditional variance (pairs share a caption)."""
    from analysis.estimation import CALIBRATED, IDEAL, SINGLE, VARIANCE

    v = 0.5
    backend = GaussianIdeal(sd_schedule, v)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(256, 3, 8, 8, dtype=torch.float64, generator=gen) * np.sqrt(v)
    captions = [f"prompt {i % 128}" for i in range(256)]  # pairs of images share a caption
    fitted = credit.CalibrationTable(sd_schedule.T, bins=1000, v=1.0)
    for _ in range(60):  # fitted on other draws of the data
        t = torch.randint(0, 1000, (256,), generator=gen)
        ab = sd_schedule.alpha_bar_at(t)[:, None]
        other = torch.randn(256, 64, dtype=torch.float64, generator=gen) * np.sqrt(v)
        eps = torch.randn(256, 64, dtype=torch.float64, generator=gen)
        x_t = ab.sqrt() * other + (1 - ab).sqrt() * eps
        fitted.update(t, ((1 - ab).sqrt() / (ab * v + 1 - ab) * x_t - eps).pow(2).mean(1))
        fitted.update_variance(credit.conditional_variance(other), 256)
    frame = estimation_error_frame(backend, x0, captions, timesteps=(100, 354, 700), ks=(5,), calibration=fitted)
    assert set(frame.series) == {SINGLE, IDEAL, VARIANCE, CALIBRATED, "5-step DDIM"}
    for t in (100, 354, 700):
        part = frame[frame.t == t].set_index("series")
        measured = part.loc[SINGLE]
        v_hat = part.loc[VARIANCE, "value"]
        ab = sd_schedule.alphas_cumprod[t].item()
        assert v_hat == pytest.approx(v, rel=0.05)
        assert part.loc[IDEAL, "value"] == pytest.approx((1 - ab) * v_hat / (ab * v_hat + 1 - ab), rel=1e-6)
        assert measured.value == pytest.approx(part.loc[IDEAL, "value"], rel=0.08)
        assert measured.value == pytest.approx(part.loc[CALIBRATED, "value"], rel=0.12)
        assert measured.lo < measured.value < measured.hi


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
    (path / "scheduler_config.json").write_text(json.dumps(SD_CONFIG))


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
    # no config here: the plain draw is uniform over [0, 1000), a share of 0.1 per bin; the two pairs
    # with credit (the one at t = 990 has none) both fell in bin 0: (1 + 3) / (2 pairs x 0.1) = 20
    assert emp.value.tolist() == pytest.approx([20.0]) and emp.n.tolist() == [2] and emp.t.tolist() == [50.0]
    cal_frame = curves.calibration_frame(tmp_path / "a", sd_schedule)
    assert len(cal_frame) == 1000 and not cal_frame.clipped.any()
    closed = credit.weights("dde", sd_schedule, ideal).numpy()
    np.testing.assert_allclose(cal_frame.w_dde.to_numpy(), closed)
    assert curves.training_curves_frame({"none": tmp_path / "missing"}).empty


def test_importance_and_inside_runs_read_on_one_credit_scale(tmp_path, sd_schedule):
    """Empirical credit per unit of the plain draw: a run that drew t from q (importance, credit
    carrying the factor p/q) reads as a run that drew uniformly with the same per-pair credit."""
    import yaml

    from dde.config import TrainConfig

    rng = np.random.default_rng(0)
    w = credit.weights("dde-closed", sd_schedule).numpy()
    per_t = 1.0 + np.sin(np.arange(1000) / 200.0)  # the credit a pair at t receives, inside mode
    inside_t = rng.integers(0, 1000, 40_000)
    imp_t = rng.choice(1000, 40_000, p=w / w.sum())
    for name, t, c in (("inside", inside_t, per_t[inside_t]), ("importance", imp_t, per_t[imp_t] / w[imp_t])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(TrainConfig(variant="dde-closed").to_dict()))
        (tmp_path / name / "scheduler_config.json").write_text(json.dumps(SD_CONFIG))
        (tmp_path / name / "credit.jsonl").write_text(json.dumps({"step": 1, "t": t.tolist(), "credit": c.tolist()}))
    frame = curves.empirical_credit_frame({"inside": tmp_path / "inside", "importance": tmp_path / "importance"},
                                          bins=10).set_index(["series", "t"]).value
    # the last bin is where q is smallest: few importance draws, so a wider tolerance there
    np.testing.assert_allclose(frame["importance"].to_numpy()[:9], frame["inside"].to_numpy()[:9], rtol=0.06)
    np.testing.assert_allclose(frame["importance"].to_numpy()[9], frame["inside"].to_numpy()[9], rtol=0.2)
