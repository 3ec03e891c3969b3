"""The SD1.5 backend on a tiny randomly initialised pipeline, saved with save_pretrained and loaded
back through the same code path users take (local directory, nothing fetched)."""

import pytest
import torch

from dde.backends import load_backend
from dde.backends.sd import SDBackend
from dde.testing import tiny_sd_pipeline


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory):
    return tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture()
def backend(tiny_sd_dir):
    return load_backend("sd", str(tiny_sd_dir))


def test_loads_components_and_schedule(backend):
    assert isinstance(backend, SDBackend)
    assert backend.device.type == "cpu" and backend.dtype == torch.float32
    assert backend.schedule.T == 1000
    assert backend.latent_shape() == (4, 8, 8)
    cond = backend.encode_prompts(["a red cat", ""])
    assert cond.shape == (2, 16, 32)


def test_images_latents_roundtrip_shapes(backend):
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    latents = backend.images_to_latents(images, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 8, 8)
    assert backend.latents_to_images(latents).shape == (2, 3, 16, 16)


def test_seeded_sampling_with_trajectory(backend):
    a = backend.sample(["a red cat", "a dog"], seed=3, steps=4, guidance=3.0, return_x0=True)
    b = backend.sample(["a red cat"], seed=3, steps=4, guidance=3.0)
    assert a.images.shape == (2, 3, 16, 16)
    assert len(a.x0_latents) == 4 and a.x0_latents[0].shape == (2, 4, 8, 8)
    assert a.timesteps == sorted(a.timesteps, reverse=True)
    torch.testing.assert_close(a.images[:1], b.images, rtol=1e-4, atol=1e-4)  # image i depends on seed + i only


def test_lora_reference_and_roundtrip(backend, tiny_sd_dir, tmp_path):
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    cond = backend.encode_prompts(["a", "b"])
    before = backend.predict_eps(x, t, cond).detach()
    trainable = backend.attach_lora(rank=4, init=True)
    base_params = {n: p.detach().clone() for n, p in backend.unet.named_parameters() if "lora" not in n}
    assert trainable and all(p.requires_grad for p in trainable)
    opt = torch.optim.SGD(trainable, lr=1.0)
    backend.predict_eps(x, t, cond).pow(2).mean().backward()
    opt.step()
    after = backend.predict_eps(x, t, cond).detach()
    assert not torch.allclose(after, before)
    with backend.reference():
        torch.testing.assert_close(backend.predict_eps(x, t, cond), before)
    for n, p in backend.unet.named_parameters():
        if "lora" not in n:
            assert torch.equal(p, base_params[n]), n  # LoRA training leaves the base weights alone
    file = backend.save_lora(tmp_path / "lora.safetensors")
    fresh = load_backend("sd", str(tiny_sd_dir), lora=str(file))
    torch.testing.assert_close(fresh.predict_eps(x, t, cond), after)


def test_bad_model_paths(tmp_path):
    with pytest.raises(ValueError, match="neither a local model directory nor a hub id"):
        load_backend("sd", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="could not load a Stable Diffusion 1.5 model"):
        load_backend("sd", str(tmp_path))
    with pytest.raises(ValueError, match="needs a model"):
        load_backend("sd", None)


def test_dtype_rules():
    from dde.backends.sd import resolve_dtype

    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="fp16 on the CPU"):
        resolve_dtype("fp16", torch.device("cpu"))


def test_a_public_unet_checkpoint_replaces_the_unet_safetensors_only(backend, tiny_sd_dir, tmp_path):
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([300])
    cond = backend.encode_prompts(["a"])
    with torch.no_grad():
        for p in backend.unet.parameters():
            p.mul_(1.01)
    tuned = backend.predict_eps(x, t, cond)
    backend.unet.save_pretrained(tmp_path / "dpo-sd" / "unet")  # the layout public DPO checkpoints use
    swapped = load_backend("sd", str(tiny_sd_dir), unet=str(tmp_path / "dpo-sd"))
    torch.testing.assert_close(swapped.predict_eps(x, t, cond), tuned)
    backend.unet.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(ValueError, match="could not load"):
        load_backend("sd", str(tiny_sd_dir), unet=str(tmp_path / "pickled"))
    with pytest.raises(ValueError, match="not a diffusers UNet folder"):
        load_backend("sd", str(tiny_sd_dir), unet=str(tmp_path))


def test_the_app_runtime_on_the_sd_backend(tiny_sd_dir, tmp_path):
    from app.runtime import Runtime

    lora_backend = load_backend("sd", str(tiny_sd_dir))
    lora_backend.attach_lora(rank=2, init=False)
    lora = lora_backend.save_lora(tmp_path / "allowed" / "lora.safetensors")
    rt = Runtime(backend="sd", model=str(tiny_sd_dir), out=tmp_path / "out", allow=[str(tmp_path / "allowed")])
    assert rt.default_models() == rt.compare_defaults() == ["base"] and rt.scorer_paths == {}
    assert [spec for _, spec in rt.model_choices()] == ["base"]  # no toy LoRAs offered on the sd backend
    result = rt.compare_task("a red cat", "", 0, 3, 7.5, 2, ["base", str(lora)]).future.result(300)
    assert [len(images) for images in result.images] == [2, 2] and list(result.scores.columns) == ["image", "seed"]
    assert result.settings["models"][result.labels[1]] == str(lora)
    assert len(result.divergence) == 3  # one row per DDIM step for the one tuned model
    with pytest.raises(ValueError, match="outside the folders"):
        rt.compare_task("a red cat", "", 0, 3, 7.5, 1, ["base", str(tiny_sd_dir)])
