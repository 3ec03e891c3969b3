"""Faults: a training process killed mid-step, corrupt checkpoints and LoRAs, runs that go
non-finite. Nothing is lost beyond the last checkpoint and a failed operation writes nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dde.config import TrainConfig
from dde.testing import rendered_pairs
from dde.train import train

ROOT = Path(__file__).resolve().parents[1]


def _settings(world, out, **kw) -> dict:
    root, model = world
    return {"model": str(model), "data": str(root / "pairs.parquet"), "steps": 14, "batch_pairs": 2,
            "checkpoint_every": 4, "calibration_batches": 1, "lora_rank": 2, "lr": 1e-3, "output_dir": str(out),
            "device": "cpu", **kw}


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_loses_nothing_past_the_checkpoint(world, tmp_path):
    reference = train(TrainConfig(**_settings(world, tmp_path / "reference")), progress=False)
    run = tmp_path / "killed"
    args = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in _settings(world, run).items()]
    cmd = [sys.executable, "-m", "dde.train", *[x for a in args for x in ("--set", a)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill after the step-8 checkpoint, mid-way to the next one
        rows = (run / "metrics.jsonl").read_text().count("\n") if (run / "metrics.jsonl").exists() else 0
        if rows >= 10 or proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    assert latest in (8, 12)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    for line in lines[:-1]:
        json.loads(line)  # every complete row parses (only a torn last line may not)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    resumed = _losses(run)
    assert len(resumed) == 14
    for a, b in zip(resumed, _losses(reference)):
        assert a == pytest.approx(b, rel=1e-5)


def test_a_truncated_checkpoint_is_refused_before_anything_is_rewritten(world, tmp_path):
    run = train(TrainConfig(**_settings(world, tmp_path / "run", steps=6)), progress=False)
    weights = run / "checkpoints" / "step-0000006" / "lora.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"checkpoint .*step-0000006 is missing or corrupt"):
        train(TrainConfig(**_settings(world, tmp_path / "run", steps=8)), progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_corrupt_or_foreign_loras_get_clear_errors(world, tmp_path):
    from dde.backends.spec import load_model
    from dde.backends.toy import ToyBackend

    _, model = world
    run = train(TrainConfig(**_settings(world, tmp_path / "run", steps=2)), progress=False)
    good = run / "final" / "lora.safetensors"
    (tmp_path / "truncated.safetensors").write_bytes(good.read_bytes()[:100])
    (tmp_path / "text.safetensors").write_text("not tensors")
    for bad in ("truncated", "text"):
        with pytest.raises(ValueError, match=bad):
            load_model(str(tmp_path / f"{bad}.safetensors"), base=str(model))
    with pytest.raises(ValueError):  # trained on the tiny model, refused by the shipped one (other shapes)
        ToyBackend.load(None, lora=good)


def test_a_run_that_stays_non_finite_stops_and_says_so(world, tmp_path, monkeypatch):
    from dde.backends.toy import ToyBackend

    original = ToyBackend.predict_eps
    monkeypatch.setattr(ToyBackend, "predict_eps", lambda self, x, t, c: original(self, x, t, c) * float("inf"))
    with pytest.raises(RuntimeError, match="3 steps in a row had a non-finite loss"):
        train(TrainConfig(**_settings(world, tmp_path / "inf", steps=10, max_skipped_steps=3,
                                      calibration_batches=0)), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "inf" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in rows] == [True, True, True] and all(r["loss"] is None for r in rows)
    status = json.loads((tmp_path / "inf" / "status.json").read_text())
    assert status["status"] == "failed" and "non-finite" in status["error"]
    assert not (tmp_path / "inf" / "final").exists()


def test_bad_data_leaves_no_run_directory(world, tmp_path):
    import pandas as pd

    pd.DataFrame({"caption": ["x"], "jpg_0": [b"x"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="lacks the column"):
        train(TrainConfig(**_settings(world, tmp_path / "new-run", data=str(tmp_path / "bad.parquet"))),
              progress=False)
    assert not (tmp_path / "new-run").exists()
    frame = rendered_pairs(4)
    frame.loc[1, "jpg_0"] = b"GIF89a not really"
    frame.to_parquet(tmp_path / "badimg.parquet")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="jpg_0 of pair 1 is not a readable image"):
        train(TrainConfig(**_settings(world, tmp_path / "kept", data=str(tmp_path / "badimg.parquet"),
                                      val_fraction=0.0)), progress=False)
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]
