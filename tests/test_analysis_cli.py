"""The analysis command line on a tiny model and a tiny run: files, manifest and clear errors."""

import json

import pandas as pd
import pytest

from analysis.__main__ import main, read_prompts
from dde.config import TrainConfig
from dde.testing import rendered_pairs, tiny_toy_model
from dde.train import train
from tests.conftest import require_chromium


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = tiny_toy_model(root / "model")
    rendered_pairs(24).to_parquet(root / "pairs.parquet")
    run = train(TrainConfig(model=str(model), data=str(root / "pairs.parquet"), steps=2, batch_pairs=2, lora_rank=2,
                            calibration_batches=1, output_dir=str(root / "run")), progress=False)
    return root, model, run


def test_evaluate_writes_tables_and_manifest(tiny, tmp_path):
    root, model, run = tiny
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a big red circle on a black background\n\na small blue square on a white background\n")
    out = tmp_path / "eval"
    main(["evaluate", "--models", str(model), str(run), "--prompts", str(prompts), "--seeds", "1", "--steps", "2",
          "--out", str(out)])
    images = pd.read_csv(out / "images.csv")
    assert len(images) == 4 and set(images.model) == {"model", "run"}
    summary = pd.read_csv(out / "summary.csv")
    assert "win_rate" in summary and (out / "summary.md").read_text().startswith("| model |")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"].startswith("python -m analysis") and manifest["n_prompts"] == 2


def test_curves_write_every_curve(tiny, tmp_path):
    require_chromium()
    root, model, run = tiny
    out = tmp_path / "curves"
    main(["curves", "--runs", f"dde={run}", "--estimation", "--model", str(model), "--data",
          str(root / "pairs.parquet"), "--samples", "4", "--png", "--out", str(out)])
    names = {p.stem for p in out.glob("*.csv")}
    assert {"credit_weights", "training", "empirical_credit", "calibration_dde", "estimation_error"} <= names
    assert {p.stem for p in out.glob("*.png")} == names  # kaleido with the chromium that .ci/run installs
    est = pd.read_csv(out / "estimation_error.csv")
    assert {"single-shot (measured)", "5-step DDIM", "20-step DDIM", "s_t r_t (calibrated prediction)"} <= set(
        est.series)


def test_prompt_files_are_checked(tmp_path):
    assert len(read_prompts("held-out")) == 97
    with pytest.raises(ValueError, match="does not exist"):
        read_prompts(str(tmp_path / "nope.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        read_prompts(str(tmp_path / "bin.txt"))
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompts(str(tmp_path / "empty.txt"))
    with pytest.raises(SystemExit):
        main(["evaluate", "--prompts", str(tmp_path / "empty.txt")])
