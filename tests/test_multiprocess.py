"""Two training processes (torchrun, gloo on the CPU) through accelerate: replicas stay identical."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dde.testing import rendered_pairs, tiny_toy_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_keep_identical_replicas(tmp_path):
    model = tiny_toy_model(tmp_path / "model")
    rendered_pairs(40).to_parquet(tmp_path / "pairs.parquet")
    run = tmp_path / "run"
    settings = {"model": model, "data": tmp_path / "pairs.parquet", "steps": 3, "batch_pairs": 2, "lora_rank": 2,
                "calibration_batches": 1, "output_dir": run, "lr": 0.001, "device": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "dde.train"]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    env = {"OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["processes"] == 2 and status["status"] == "finished"
    assert status["replica_max_abs_diff"] == 0.0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
