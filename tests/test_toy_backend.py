"""The toy backend on a small randomly initialised model written to a model directory."""

import json

import numpy as np
import pytest
import torch

from dde.backends import load_backend
from dde.testing import tiny_toy_model
from dde.toy.text import ToyTokenizer


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    return tiny_toy_model(tmp_path_factory.mktemp("toy"))


@pytest.fixture()
def backend(toy_dir):
    return load_backend("toy", str(toy_dir))


def test_tokenizer():
    tok = ToyTokenizer()
    ids = tok(["a big red circle on the left on a black background", ""])
    assert ids.shape == (2, 16)
    assert ids[0, 0] == tok.bos_id and ids[1, :2].tolist() == [tok.bos_id, tok.eos_id]
    assert tok.unknown_words("a big zebra") == ["zebra"]
    assert tok(["word " * 40]).shape == (1, 16)


def test_model_dir_roundtrip(toy_dir, backend):
    meta = json.loads((toy_dir / "model.json").read_text())
    assert meta["scheduler"]["beta_schedule"] == "scaled_linear"
    assert backend.schedule.T == 1000
    assert backend.latent_shape() == (3, 32, 32)


def test_sampling_is_seeded_and_paired(backend):
    prompts = ["a big red circle on a black background", "a small blue square on a white background"]
    a = backend.sample(prompts, seed=11, steps=5, guidance=4.0, return_x0=True)
    b = backend.sample(prompts[1:], seed=12, steps=5, guidance=4.0)
    assert a.images.shape == (2, 3, 32, 32) and a.images.abs().max() <= 1
    assert len(a.x0_latents) == 5 and len(a.timesteps) == 5
    torch.testing.assert_close(a.images[1:], b.images, rtol=1e-4, atol=1e-4)
    assert torch.equal(backend.initial_noise(2, 11)[1], backend.initial_noise(1, 12)[0])


def test_sampling_input_errors(backend):
    with pytest.raises(ValueError, match="prompt is empty"):
        backend.sample(["   "], steps=2)
    with pytest.raises(ValueError, match="steps must lie in"):
        backend.sample(["a red circle"], steps=0)
    with pytest.raises(ValueError, match="knows none of the words"):
        backend.sample(["zebra crossing"], steps=2)
    with pytest.raises(ValueError, match="1000 characters"):
        backend.sample(["red " * 400], steps=2)


def test_lora_on_toy_and_reference(backend, tmp_path, toy_dir):
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([100, 700])
    cond = backend.encode_prompts(["a big red circle on a black background", ""])
    base = backend.predict_eps(x, t, cond).detach()
    params = backend.attach_lora(rank=4, init=True)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    tuned = backend.predict_eps(x, t, cond).detach()
    assert not torch.allclose(tuned, base)
    with backend.reference():
        torch.testing.assert_close(backend.predict_eps(x, t, cond), base)
    path = backend.save_lora(tmp_path / "lora.safetensors")
    again = load_backend("toy", str(toy_dir), lora=str(path))
    torch.testing.assert_close(again.predict_eps(x, t, cond), tuned)


def test_bad_model_dirs_and_loras(tmp_path, toy_dir):
    with pytest.raises(ValueError, match="model.json is missing"):
        load_backend("toy", str(tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((toy_dir / "model.json").read_text())
    (broken / "unet.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="unet.safetensors is not a readable safetensors file"):
        load_backend("toy", str(broken))
    not_lora = tmp_path / "x.safetensors"
    not_lora.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_backend("toy", str(toy_dir), lora=str(not_lora))
    with pytest.raises(ValueError, match="does not exist"):
        load_backend("toy", str(toy_dir), lora=str(tmp_path / "none.safetensors"))
    with pytest.raises(ValueError, match="unknown backend 'sdxl9'"):
        load_backend("sdxl9")


def test_full_finetune_keeps_a_frozen_reference(backend):
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([300])
    cond = backend.encode_prompts(["a big red circle on a black background"])
    base = backend.predict_eps(x, t, cond).detach()
    params = backend.prepare_full_finetune()
    with torch.no_grad():
        params[0].add_(1.0)
    assert not torch.allclose(backend.predict_eps(x, t, cond), base)
    with backend.reference():
        torch.testing.assert_close(backend.predict_eps(x, t, cond), base)
    assert np.isfinite(base.numpy()).all()
