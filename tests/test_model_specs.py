"""Model specs as users type them: one parser for the CLI, the app and the benchmarks."""

import json

import pytest
import torch
from safetensors.torch import save_file

from dde.backends.spec import ModelSpec, load_model, parse_model_spec, unique_labels
from dde.config import TrainConfig
from dde.train import train


def _settings(world, out, **kw):
    root, model = world
    return TrainConfig(**{"model": str(model), "data": str(root / "pairs.parquet"), "steps": 2, "batch_pairs": 2,
                          "checkpoint_every": 1, "calibration_batches": 1, "lora_rank": 2, "judge_prompts": 0,
                          "output_dir": str(out), **kw})


def test_shipped_names_and_base():
    assert parse_model_spec("base") == ModelSpec("toy", None, None, "base")
    dde, tuned = parse_model_spec("dde"), parse_model_spec("tuned")
    assert dde.weights == tuned.weights and dde.weights.name == "lora.safetensors" and dde.kind == "lora"
    assert dde.label == tuned.label == "dde"
    sd = parse_model_spec("sd:org/model")
    assert (sd.backend, sd.base, sd.weights) == ("sd", "org/model", None)
    assert parse_model_spec("base", backend="sdxl", base="/m").backend == "sdxl"


@pytest.mark.parametrize("value, message", [
    (3, "must be given as text"), (None, "must be given as text"), ("  ", "no model given"),
    ("a\x00b", "NUL"), ("x" * 5000, "limit is 4096"), ("/no/such/thing", "does not exist"),
    ("missing.safetensors", "does not exist"), ("sd:", "no sd model given"),
])
def test_bad_specs_get_a_message_naming_the_problem(value, message):
    with pytest.raises(ValueError, match=message):
        parse_model_spec(value)


def test_folders_of_the_wrong_kind_are_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a LoRA or UNet"):
        parse_model_spec(str(tmp_path / "empty"))
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="diffusers UNet folder; the toy backend"):
        parse_model_spec(str(tmp_path / "unet"))
    assert parse_model_spec(f"sd:org/m+{tmp_path / 'unet'}").kind == "unet"
    with pytest.raises(ValueError, match="shipped toy-world LoRA"):
        parse_model_spec("dde", backend="sd", base="org/m")


@pytest.mark.slow
def test_lora_and_full_finetune_runs_open_the_same_way(world, tmp_path):
    lora_run = train(_settings(world, tmp_path / "lora"), progress=False)
    full_run = train(_settings(world, tmp_path / "full", lora_rank=0, lr=1e-3), progress=False)
    assert (full_run / "final" / "unet.safetensors").is_file()
    lora, full = parse_model_spec(str(lora_run)), parse_model_spec(str(full_run))
    assert (lora.kind, full.kind) == ("lora", "unet")
    assert lora.base == full.base == str(world[1])  # the base each run was trained on, from its metadata
    base, tuned = load_model(ModelSpec("toy", str(world[1]))), load_model(full)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([500])
    cond = base.encode_prompts(["a big red circle on a black background"])
    assert not torch.allclose(base.predict_eps(x, t, cond), tuned.predict_eps(x, t, cond))
    # a checkpoint's weights when a run has no final/ yet
    import shutil

    shutil.rmtree(full_run / "final")
    assert parse_model_spec(str(full_run)).weights.parent.name.startswith("step-")
    # a LoRA file that does not fit the UNet it is loaded into is refused by name
    bad = tmp_path / "bad.safetensors"
    save_file({"unet.down_blocks.0.nope.lora_A.weight": torch.zeros(2, 2)}, str(bad),
              metadata={"lora_config": json.dumps({"r": 2, "lora_alpha": 2, "target_modules": ["to_q"]})})
    with pytest.raises(ValueError, match="does not fit this model"):
        load_model(str(bad), base=str(world[1]))


def test_labels_are_readable_and_unique():
    from pathlib import Path

    def spec(text):
        return ModelSpec("toy", None, Path(text), text)

    assert spec("runs/r1/final/lora.safetensors").label == "r1"
    assert spec("runs/r1/checkpoints/step-0000050/lora.safetensors").label == "r1@step-0000050"
    assert spec("mine/good.safetensors").label == "good"
    twins = [spec("a/x/lora.safetensors"), spec("b/x/lora.safetensors"), ModelSpec("toy", None, None, "base")]
    labels = unique_labels(twins)
    assert len(set(labels)) == 3 and labels[2] == "base" and all(label.startswith("x (") for label in labels[:2])
