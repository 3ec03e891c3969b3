"""The SD1.5 backend on a tiny randomly initialised pipeline, saved with save_pretrained and loaded
back through the same code path users take (local directory, nothing fetched)."""

import string

import pytest
import torch

from dde.backends import load_backend
from dde.backends.sd import SDBackend


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in string.ascii_lowercase:
            vocab[ch + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                                num_hidden_layers=2, num_attention_heads=4,
                                                max_position_embeddings=16, eos_token_id=1, bos_token_id=0,
                                                pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
                        norm_num_groups=32, sample_size=16)
    # SD1.5 ships a PNDM scheduler config; the backend reads its betas and samples with DDIM
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    path = tmp_path_factory.mktemp("tiny-sd")
    pipe.save_pretrained(path)
    return path


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
    with pytest.raises(ValueError, match="could not load a Stable Diffusion model"):
        load_backend("sd", str(tmp_path))
    with pytest.raises(ValueError, match="needs a model"):
        load_backend("sd", None)


def test_dtype_rules():
    from dde.backends.sd import resolve_dtype

    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="fp16 on the CPU"):
        resolve_dtype("fp16", torch.device("cpu"))
