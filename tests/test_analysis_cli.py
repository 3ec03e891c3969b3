"""The analysis command line on a tiny model and a tiny run: files, manifest and clear errors."""

import json

import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.prompts import read_prompts
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
                            calibration_batches=1, judge_prompts=2, checkpoint_every=1, output_dir=str(root / "run")),
                progress=False)
    full = train(TrainConfig(model=str(model), data=str(root / "pairs.parquet"), steps=1, batch_pairs=2, lora_rank=0,
                             calibration_batches=0, variant="dpo", judge_prompts=0, output_dir=str(root / "full")),
                 progress=False)
    return root, model, run, full


def test_evaluate_writes_tables_and_manifest(tiny, tmp_path):
    root, model, run, full = tiny
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a big red circle on a black background\n\na small blue square on a white background\n")
    out = tmp_path / "eval"
    # a LoRA run, a full fine-tune run, and the LoRA run's weights file named lora.safetensors twice
    main(["evaluate", "--models", str(model), str(run), str(full), str(run / "final" / "lora.safetensors"),
          str(run / "checkpoints" / "step-0000001" / "lora.safetensors"), "--prompts", str(prompts), "--seeds", "1",
          "--steps", "2", "--out", str(out)])
    images = pd.read_csv(out / "images.csv")
    assert images.model.nunique() == 5 and len(images) == 10  # never merged under one name
    assert {"model", "full", "run@step-0000001"} <= set(images.model)
    summary = pd.read_csv(out / "summary.csv")
    assert "win_rate" in summary and (out / "summary.md").read_text().startswith("## judge\n\n| model |")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"].startswith("python -m analysis") and manifest["n_prompts"] == 2


def test_evaluate_checks_judge_prompts_before_loading_any_model(tiny, tmp_path, monkeypatch):
    from dde.backends import spec

    root, model, run, full = tiny
    prompts = tmp_path / "real.txt"
    prompts.write_text("a photo of a cat on a sofa\n")
    monkeypatch.setattr(spec, "load_model", lambda *a, **k: pytest.fail("a model loaded before the prompt check"))
    with pytest.raises(SystemExit):
        main(["evaluate", "--models", str(model), "--prompts", str(prompts), "--out", str(tmp_path / "e")])
    with pytest.raises(ValueError, match="judge scores only the toy world's captions"):
        from analysis.prompts import check_judge_prompts

        check_judge_prompts(["a photo of a cat on a sofa"])


def test_curves_write_every_curve(tiny, tmp_path):
    require_chromium()
    from analysis.estimation import CALIBRATED, IDEAL, SINGLE, VARIANCE

    root, model, run, full = tiny
    out = tmp_path / "curves"
    main(["curves", "--runs", f"dde={run}", "--estimation", "--model", str(model), "--data",
          str(root / "pairs.parquet"), "--samples", "4", "--png", "--out", str(out)])
    names = {p.stem for p in out.glob("*.csv")}
    assert {"credit_weights", "training", "validation", "empirical_credit", "calibration_dde",
            "estimation_error"} <= names
    assert {p.stem for p in out.glob("*.png")} == names  # kaleido with the chromium that .ci/run installs
    est = pd.read_csv(out / "estimation_error.csv")
    assert {SINGLE, IDEAL, VARIANCE, CALIBRATED, "5-step DDIM", "20-step DDIM"} <= set(est.series)
    with pytest.raises(SystemExit):  # a folder that is not a run is named
        main(["curves", "--runs", f"x={root}", "--out", str(tmp_path / "c2")])


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
