"""The real-model path as a user with real weights walks it, on tiny pipelines saved the standard
diffusers way (save_pretrained, a hub-layout tokenizer with vocab.json and merges.txt, SD1.5's PNDM
scheduler config) and Pick-a-Pic-schema pairs: LoRA files diffusers loads, reproducible SD resume,
the mixed-precision full fine-tune's first step, v-prediction models, clear messages for hub ids
that cannot be resolved and for mixed precision without a GPU."""

import json
import math

import pytest
import torch

from dde import train as train_module
from dde.backends import load_backend
from dde.config import TrainConfig
from dde.testing import rendered_pairs, tiny_sd_pipeline, tiny_sdxl_pipeline
from dde.train import train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    sd = tiny_sd_pipeline(root / "sd")
    pairs = root / "pairs.parquet"
    rendered_pairs(24).to_parquet(pairs)
    return root, sd, pairs


def _cfg(tiny, name, **kw):
    root, sd, pairs = tiny
    base = dict(backend="sd", model=str(sd), data=str(pairs), steps=4, batch_pairs=2, checkpoint_every=2,
                calibration_batches=1, lora_rank=2, lr=1e-3, beta=500.0, judge_prompts=0, resolution=16,
                output_dir=str(root / name))
    return TrainConfig(**{**base, **kw})


def test_the_tokenizer_is_saved_in_the_hub_layout(tiny):
    _, sd, _ = tiny
    assert (sd / "tokenizer" / "vocab.json").is_file() and (sd / "tokenizer" / "merges.txt").is_file()
    assert json.loads((sd / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "PNDMScheduler"


@pytest.mark.slow
def test_a_lora_trained_here_loads_into_a_plain_diffusers_pipeline(tiny, tmp_path):
    """``pipe.load_lora_weights(file)`` takes a LoRA trained by this tool (alpha != rank), adds its
    layers, and the pipeline's UNet and its DDIM images equal this tool's backend on the same noise."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    run = train(_cfg(tiny, "interop", lora_alpha=4.0, steps=2), progress=False)
    lora = run / "final" / "lora.safetensors"
    _, sd, _ = tiny
    ours = load_backend("sd", str(sd), lora=str(lora))
    pipe = StableDiffusionPipeline.from_pretrained(str(sd), safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(lora))
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([30, 600])
    cond = ours.encode_prompts(["a red cat", "a dog"])
    with torch.no_grad():
        theirs = pipe.unet(x, t, encoder_hidden_states=cond).sample
        plain = load_backend("sd", str(sd)).predict_eps(x, t, cond)
    torch.testing.assert_close(theirs, ours.predict_eps(x, t, cond), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(theirs, plain)  # the layers were really added
    pipe.scheduler = DDIMScheduler.from_config(ours.scheduler_config)
    noise = ours.initial_noise(1, seed=3)
    mine = ours.sample(["a red cat"], seed=3, steps=4, guidance=3.0)
    image = pipe("a red cat", latents=noise, num_inference_steps=4, guidance_scale=3.0, output_type="pt").images
    torch.testing.assert_close(image * 2 - 1, mine.images, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_resume_on_the_sd_backend_reproduces_the_uninterrupted_curve(tiny):
    """The VAE posterior draw takes the step's generator: an interrupted run resumes exactly."""
    straight = train(_cfg(tiny, "straight"), progress=False)
    train(_cfg(tiny, "resumed", steps=2), progress=False)
    resumed = train(_cfg(tiny, "resumed"), progress=False)

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(resumed) == losses(straight)


@pytest.mark.slow
@pytest.mark.parametrize("backend_kind", ["sd", "sdxl"])
def test_a_mixed_precision_full_finetune_starts_at_exactly_ln2(tiny, monkeypatch, backend_kind):
    """The frozen reference runs under the same autocast as the policy: at step 1 (before any update)
    the two agree exactly, so the loss is ln 2 and the margin 0 (bf16 autocast, here on the CPU)."""
    from accelerate.state import AcceleratorState

    monkeypatch.setattr(train_module, "CPU_MIXED_PRECISION", True)
    AcceleratorState._reset_state(True)  # accelerate keeps one precision per process; tests switch it
    root, sd, _ = tiny
    model = sd if backend_kind == "sd" else tiny_sdxl_pipeline(root / "sdxl")
    cfg = _cfg(tiny, f"full-{backend_kind}", backend=backend_kind, model=str(model), lora_rank=0, steps=1,
               mixed_precision="bf16", calibration_batches=0, variant="dpo")
    try:
        run = train(cfg, progress=False)
    finally:
        AcceleratorState._reset_state(True)
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["loss"] == pytest.approx(math.log(2), abs=1e-7) and row["reward_margin"] == 0.0


def test_mixed_precision_without_a_gpu_and_missing_data_are_refused_by_name(tiny):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="mixed_precision=fp16 needs a GPU"):
        train(_cfg(tiny, "fp16", mixed_precision="fp16"), progress=False)
    with pytest.raises(ValueError, match="needs preference pairs"):
        train(_cfg(tiny, "nodata", data=None), progress=False)
    assert not (tiny[0] / "fp16").exists()


def test_a_hub_id_that_cannot_be_resolved_gets_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    for hub_id in ("runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5"):
        with pytest.raises(ValueError) as info:
            load_backend("sd", hub_id)
        message = str(info.value)
        assert hub_id in message and "local diffusers folder" in message and "Traceback" not in message
        assert len(message) < 400


@pytest.mark.slow
def test_a_v_prediction_pipeline_trains_and_samples(tiny, tmp_path):
    """A v-prediction SD model (scheduler prediction_type v_prediction) is converted to eps at the
    backend boundary: training starts at ln 2 and runs, sampling works; an x0-prediction one is refused."""
    import shutil

    _, sd, _ = tiny
    vdir = tmp_path / "sd-v"
    shutil.copytree(sd, vdir)
    config = vdir / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "v_prediction"}))
    backend = load_backend("sd", str(vdir))
    assert backend.prediction_type == "v_prediction"
    assert backend.sample(["a red cat"], steps=3).images.shape == (1, 3, 16, 16)
    run = train(_cfg(tiny, "v-run", model=str(vdir), steps=2, calibration_batches=0, variant="dpo"), progress=False)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "sample"}))
    with pytest.raises(ValueError, match="predicts 'sample'"):
        load_backend("sd", str(vdir))
