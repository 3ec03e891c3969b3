"""The SDXL backend on a tiny random pipeline saved with save_pretrained (two text encoders,
pooled text embeddings, time ids), loaded through the user path; LoRA and full fine-tunes through
the trainer, with gradient checkpointing and a memory-light optimizer."""

import json

import pytest
import torch

from dde.backends import load_backend
from dde.backends.sd import SDXLBackend
from dde.config import TrainConfig
from dde.testing import rendered_pairs, tiny_sd_pipeline, tiny_sdxl_pipeline
from dde.train import train


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture()
def backend(tiny_dir):
    return load_backend("sdxl", str(tiny_dir))


def test_conditioning_has_both_encoders_pooled_embeds_and_time_ids(backend):
    assert isinstance(backend, SDXLBackend) and backend.latent_shape() == (4, 8, 8)
    cond = backend.encode_prompts(["a red cat", ""])
    assert cond["prompt_embeds"].shape == (2, 16, 64)  # 32 + 32 penultimate hidden states
    assert cond["text_embeds"].shape == (2, 32)
    assert cond["time_ids"].tolist()[0] == [16, 16, 0, 0, 16, 16]
    # each encoder contributes: changing the prompt changes both halves
    other = backend.encode_prompts(["a blue dog", ""])
    assert not torch.allclose(cond["prompt_embeds"][0, :, :32], other["prompt_embeds"][0, :, :32])
    assert not torch.allclose(cond["prompt_embeds"][0, :, 32:], other["prompt_embeds"][0, :, 32:])


def test_seeded_sampling_pairs_images_by_seed(backend):
    a = backend.sample(["a red cat", "a dog"], seed=5, steps=3, guidance=4.0, return_x0=True)
    b = backend.sample(["a red cat"], seed=5, steps=3, guidance=4.0)
    assert a.images.shape == (2, 3, 16, 16) and len(a.x0_latents) == 3
    torch.testing.assert_close(a.images[:1], b.images, rtol=1e-4, atol=1e-4)


def test_lora_changes_only_the_adapter_and_round_trips(backend, tiny_dir, tmp_path):
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([20, 700])
    cond = backend.encode_prompts(["a", "b"])
    before = backend.predict_eps(x, t, cond).detach()
    trainable = backend.attach_lora(rank=4, init=True)
    torch.optim.SGD(trainable, lr=1.0).zero_grad()
    backend.predict_eps(x, t, cond).pow(2).mean().backward()
    torch.optim.SGD(trainable, lr=1.0).step()
    after = backend.predict_eps(x, t, cond).detach()
    assert not torch.allclose(after, before)
    with backend.reference():
        torch.testing.assert_close(backend.predict_eps(x, t, cond), before)
    file = backend.save_lora(tmp_path / "lora.safetensors")
    torch.testing.assert_close(load_backend("sdxl", str(tiny_dir), lora=str(file)).predict_eps(x, t, cond), after)


def test_a_lora_of_another_model_is_refused(tiny_dir, tmp_path):
    sd = load_backend("sd", str(tiny_sd_pipeline(tmp_path / "sd")))
    sd.attach_lora(rank=4)
    file = sd.save_lora(tmp_path / "sd-lora.safetensors")
    with pytest.raises(ValueError):
        load_backend("sdxl", str(tiny_dir), lora=str(file))


def test_not_an_sdxl_model(tmp_path):
    with pytest.raises(ValueError, match="could not load a Stable Diffusion XL model"):
        load_backend("sdxl", str(tiny_sd_pipeline(tmp_path / "sd15")))


@pytest.mark.parametrize("rank, optimizer", [(4, "adamw"), (0, "adafactor")])
def test_trains_lora_and_full_with_checkpointing(tiny_dir, tmp_path, rank, optimizer):
    rendered_pairs(12).to_parquet(tmp_path / "pairs.parquet")
    cfg = TrainConfig(backend="sdxl", model=str(tiny_dir), data=str(tmp_path / "pairs.parquet"), resolution=16,
                      variant="dde", lora_rank=rank, optimizer=optimizer, gradient_checkpointing=True, steps=3,
                      batch_pairs=2, calibration_batches=1, checkpoint_every=2, output_dir=str(tmp_path / "run"))
    run = train(cfg, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] is not None for r in rows)
    weights = "lora.safetensors" if rank else "unet.safetensors"
    assert (run / "final" / weights).is_file()
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
