"""The trainer on a tiny random toy model and rendered pairs: every variant, resume, cancel, NaN."""

import json
import threading

import pytest
import torch

from dde import credit
from dde.config import TrainConfig, field_help, from_dict, load_config, save_config
from dde.testing import rendered_pairs
from dde.train import Cancelled, parse_overrides, train


def _cfg(world, name, **kw) -> TrainConfig:
    root, model = world
    base = dict(model=str(model), data=str(root / "pairs.parquet"), steps=3, batch_pairs=2, checkpoint_every=2,
                calibration_batches=1, lora_rank=2, lr=1e-3, beta=500.0, judge_prompts=0, output_dir=str(root / name))
    return TrainConfig(**{**base, **kw})


def _rows(run, name="metrics.jsonl"):
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


@pytest.mark.parametrize("variant", credit.variant_names())
def test_every_variant_trains(world, variant):
    run = train(_cfg(world, f"v-{variant}", variant=variant), progress=False)
    rows = _rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] is not None and r["loss"] > 0 for r in rows)
    assert (run / "final" / "lora.safetensors").is_file()
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert (run / "calibration.jsonl").is_file() == credit.REGISTRY[variant].calibrated


def test_windows_draw_inside_and_calibration_measures_the_conditional_variance(world):
    run = train(_cfg(world, "win", variant="window", variant_params={"t_lo": 100, "t_hi": 600}), progress=False)
    drawn = [t for row in _rows(run, "credit.jsonl") for t in row["t"]]
    assert len(drawn) == 6 and all(100 <= t < 600 for t in drawn)
    run = train(_cfg(world, "cal", variant="dde", calibration_batches=2), progress=False)
    rows = _rows(run, "calibration.jsonl")
    # v comes from the pairs' images (pooled within-prompt variance), not the unit prior
    assert all(0 < r["v"] < 1.0 for r in rows) and len({r["v"] for r in rows}) > 1
    assert all("clipped_from" in r and "clipped_count" in r for r in rows)


def test_judge_probe_logs_the_reward_at_start_and_every_checkpoint(world):
    run = train(_cfg(world, "probe", judge_prompts=3, steps=4), progress=False)
    rows = _rows(run, "judge.jsonl")
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert all(len(r["scores"]) == 3 and 0 <= r["judge"] <= 1 for r in rows)


def test_importance_mode_and_sft_and_accumulation(world):
    run = train(_cfg(world, "imp", variant="dde-closed", weight_mode="importance", grad_accum=2), progress=False)
    assert len(_rows(run)) == 3
    run = train(_cfg(world, "sft", objective="sft", steps=2), progress=False)
    assert len(_rows(run)) == 2


def test_resume_reproduces_the_uninterrupted_curve(world):
    full = train(_cfg(world, "full", steps=6, variant="dde"), progress=False)
    part_cfg = _cfg(world, "part", steps=4, variant="dde")
    train(part_cfg, progress=False)
    resumed = train(_cfg(world, "part", steps=6, variant="dde"), progress=False)
    a, b = _rows(full), _rows(resumed)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-7), (ra["step"], ra["loss"], rb["loss"])
    cal_a, cal_b = _rows(full, "calibration.jsonl")[-1], _rows(resumed, "calibration.jsonl")[-1]
    assert cal_a["r"] == pytest.approx(cal_b["r"], rel=1e-6)


def test_resume_refuses_a_different_config(world):
    train(_cfg(world, "conflict", steps=2), progress=False)
    with pytest.raises(ValueError, match=r"different config \(\['beta'\]\)"):
        train(_cfg(world, "conflict", steps=4, beta=10.0), progress=False)


def test_cancel_between_steps_checkpoints(world):
    stop = threading.Event()
    seen = []

    def on_step(m):
        seen.append(m["step"])
        if m["step"] == 2:
            stop.set()

    run = train(_cfg(world, "cancel", steps=10), on_step=on_step, cancel=stop, progress=False)
    status = json.loads((run / "status.json").read_text())
    assert {k: status[k] for k in ("status", "step", "steps")} == {"status": "cancelled", "step": 2, "steps": 10}
    assert status["seconds"] >= 0
    assert seen == [1, 2] and not (run / "final").exists()
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2


def test_callback_can_cancel(world):
    def on_step(m):
        raise Cancelled

    run = train(_cfg(world, "cancel2", steps=5), on_step=on_step, progress=False)
    assert json.loads((run / "status.json").read_text())["step"] == 1


def test_non_finite_step_is_skipped_and_reported(world, monkeypatch):
    from dde.backends.toy import ToyBackend

    original, calls = ToyBackend.predict_eps, {"n": 0}

    def flaky(self, x_t, t, cond):
        calls["n"] += 1
        out = original(self, x_t, t, cond)
        return out * float("nan") if calls["n"] == 3 else out  # the policy pass of step 2

    monkeypatch.setattr(ToyBackend, "predict_eps", flaky)
    run = train(_cfg(world, "nan", steps=3, calibration_batches=0, variant="dpo"), progress=False)
    rows = _rows(run)
    assert [r["skipped"] for r in rows] == [False, True, False]
    assert rows[1]["loss"] is None and rows[2]["loss"] is not None


def test_config_validation_and_yaml_roundtrip(tmp_path):
    cfg = TrainConfig(variant="window", variant_params={"t_lo": 100, "t_hi": 600}, steps=7)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert load_config(tmp_path / "c.yaml", steps=9).steps == 9
    with pytest.raises(ValueError, match="variant must be one of"):
        TrainConfig(variant="ddpo")
    with pytest.raises(ValueError, match="beta must lie in"):
        TrainConfig(beta=-1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="t_range must be"):
        TrainConfig(t_range=[500, 100])
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['stepz'\]"):
        from_dict({"stepz": 3})
    (tmp_path / "bad.yaml").write_text("steps: [1, 2")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    assert "KL strength" in field_help()["beta"]
    assert parse_overrides(["steps=5", "t_range=[0, 500]", "variant=dpo"]) == {
        "steps": 5, "t_range": [0, 500], "variant": "dpo"}


def test_presets_are_valid():
    from pathlib import Path

    presets = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("toy-*.yaml"))
    assert {p.stem[4:] for p in presets} == set(credit.variant_names())  # one preset per variant
    base = load_config(presets[0].parent / "toy.yaml")
    for path in presets:
        cfg = load_config(path)
        assert cfg.variant == path.stem[4:] and cfg.output_dir == f"runs/{path.stem}"
        assert cfg.batch_pairs == base.batch_pairs and cfg.lora_rank == base.lora_rank
    dde, step = load_config(presets[0].parent / "toy-dde.yaml"), load_config(presets[0].parent / "toy-dde-step.yaml")
    assert (step.beta, step.lr, step.steps) == (dde.beta, dde.lr, dde.steps)  # ablations train with DDE's settings


@pytest.mark.parametrize("text, field, expected", [
    ("lr=1e-5", "lr", 1e-5), ("lr=1E-5", "lr", 1e-5), ("lr=.0003", "lr", 3e-4), ("lr=3e-4", "lr", 3e-4),
    ("beta=5e3", "beta", 5000.0), ("beta=5000", "beta", 5000.0), ("mixed_precision=no", "mixed_precision", "no"),
    ("random_flip=yes", "random_flip", True), ("random_flip=false", "random_flip", False),
    ("steps=3.0", "steps", 3), ("lora_alpha=16", "lora_alpha", 16.0), ("model=null", "model", None),
    ("output_dir=no", "output_dir", "no"), ("t_range=[100, 900]", "t_range", [100, 900]),
])
def test_set_values_parse_as_a_user_means_them(text, field, expected):
    cfg = from_dict(parse_overrides([text]))
    assert getattr(cfg, field) == expected and type(getattr(cfg, field)) is type(expected)


@pytest.mark.parametrize("text, message", [
    ("steps=2.5", "steps must be a whole number"), ("lora_rank=2.5", "lora_rank must be a whole number"),
    ("lr=fast", "lr must be a number"), ("lr=nan", "lr must be a finite number"), ("steps=true", "whole number"),
    ("random_flip=maybe", "random_flip must be true or false"), ("variant=[1]", "variant must be text"),
])
def test_set_values_of_the_wrong_type_are_refused_by_name(text, message):
    with pytest.raises(ValueError, match=message):
        from_dict(parse_overrides([text]))


def test_yaml_files_parse_as_a_user_means_them(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("lr: 1e-5\nmixed_precision: no\nbeta: 5e3\ngradient_checkpointing: yes\nvariant: dpo\n")
    cfg = load_config(path)
    assert (cfg.lr, cfg.mixed_precision, cfg.beta, cfg.gradient_checkpointing) == (1e-5, "no", 5000.0, True)
    (tmp_path / "child.yaml").write_text("base: mine.yaml\nvariant: window\n")
    child = load_config(tmp_path / "child.yaml")
    assert (child.variant, child.lr, child.mixed_precision) == ("window", 1e-5, "no")


def test_bad_data_fails_with_a_named_message(world, tmp_path):
    import pandas as pd

    pd.DataFrame({"caption": ["x"], "jpg_0": [b"x"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="lacks the column"):
        train(_cfg(world, "baddata", data=str(tmp_path / "bad.parquet")), progress=False)
    frame = rendered_pairs(4)
    frame.loc[2, "jpg_1"] = b"not an image"
    frame.to_parquet(tmp_path / "badimg.parquet")
    with pytest.raises(ValueError, match="jpg_1 of pair 2 is not a readable image"):
        train(_cfg(world, "badimg", data=str(tmp_path / "badimg.parquet"), val_fraction=0.0), progress=False)


def test_lora_training_moves_only_the_adapter(world):
    from dde.backends.toy import ToyBackend

    run = train(_cfg(world, "moves", steps=2, lr=1e-2), progress=False)
    _, model = world
    base = ToyBackend.load(str(model))
    tuned = ToyBackend.load(str(model), lora=str(run / "final" / "lora.safetensors"))
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([400])
    cond = base.encode_prompts(["a big red circle on a black background"])
    assert not torch.allclose(base.predict_eps(x, t, cond), tuned.predict_eps(x, t, cond))
    with tuned.reference():
        torch.testing.assert_close(tuned.predict_eps(x, t, cond), base.predict_eps(x, t, cond))
