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
    # batch composition changes float summation order only: well below one uint8 level (1/127.5)
    torch.testing.assert_close(a.images[1:], b.images, rtol=1e-3, atol=1e-3)
    assert torch.equal(backend.initial_noise(2, 11)[1], backend.initial_noise(1, 12)[0])


def test_sampling_input_errors(backend):
    with pytest.raises(ValueError, match="prompt is empty"):
        backend.sample(["   "], steps=2)
    with pytest.raises(ValueError, match="DDIM steps must be a whole number in"):
        backend.sample(["a red circle"], steps=0)
    with pytest.raises(ValueError, match="guidance must be a number in"):
        backend.sample(["a red circle"], steps=2, guidance=float("nan"))
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
    again.merge_lora()  # the app's inference form: the adapter folded into the weights, same outputs
    assert again.lora_config is None and not any("lora_" in name for name, _ in again.unet.named_parameters())
    torch.testing.assert_close(again.predict_eps(x, t, cond), tuned, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="no LoRA adapter"):
        again.merge_lora()


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


def test_saved_loras_use_the_diffusers_layout_and_old_files_still_load(backend, tmp_path, toy_dir):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    params = backend.attach_lora(rank=2, alpha=4.0, init=True)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    path = backend.save_lora(tmp_path / "lora.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        keys, meta = list(handle.keys()), handle.metadata()
    assert all(k.startswith("unet.") and ".lora_" in k for k in keys)
    packed = json.loads(meta["lora_adapter_metadata"])  # where diffusers reads rank and alpha
    assert packed["unet.r"] == 2 and packed["unet.lora_alpha"] == 4.0
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([400])
    cond = backend.encode_prompts(["a big red circle on a black background"])
    tuned = backend.predict_eps(x, t, cond).detach()
    # the earlier format: unprefixed keys and only this tool's metadata
    with safe_open(str(path), framework="pt") as handle:
        old = {k[len("unet."):]: handle.get_tensor(k) for k in handle.keys()}
    save_file(old, str(tmp_path / "old.safetensors"), metadata={"lora_config": meta["lora_config"], "backend": "toy"})
    for file in (path, tmp_path / "old.safetensors"):
        again = load_backend("toy", str(toy_dir), lora=str(file))
        torch.testing.assert_close(again.predict_eps(x, t, cond), tuned)


def test_v_prediction_models_are_converted_to_eps_at_the_boundary(toy_dir, tmp_path):
    """A v-prediction UNet's output becomes eps = sqrt(ab) v + sqrt(1 - ab) x_t in predict_eps; its
    sampler gives the same image as stepping DDIM on the converted eps; other types are refused."""
    import json
    import shutil

    from dde import ddim

    vdir = tmp_path / "v"
    shutil.copytree(toy_dir, vdir)
    meta = json.loads((vdir / "model.json").read_text())
    meta["scheduler"]["prediction_type"] = "v_prediction"
    (vdir / "model.json").write_text(json.dumps(meta))
    eps_model, v_model = load_backend("toy", str(toy_dir)), load_backend("toy", str(vdir))
    assert v_model.prediction_type == "v_prediction"
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
    cond = eps_model.encode_prompts(["a big red circle on a black background"] * 2)
    raw = eps_model.predict_eps(x, t, cond)  # the same weights: this is the UNet's raw output
    ab = v_model.schedule.alpha_bar_at(t).view(-1, 1, 1, 1).float()
    torch.testing.assert_close(v_model.predict_eps(x, t, cond), ab.sqrt() * raw + (1 - ab).sqrt() * x)
    x0, eps = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    x_t = ddim.add_noise(x0, eps, v_model.schedule.alpha_bar_at(t))
    v = ddim.v_target(x0, eps, v_model.schedule.alpha_bar_at(t))
    torch.testing.assert_close(ddim.eps_from_v(x_t, v, v_model.schedule.alpha_bar_at(t)), eps, rtol=1e-5, atol=1e-5)
    assert v_model.sample(["a big red circle on a black background"], steps=3).images.shape == (1, 3, 32, 32)
    meta["scheduler"]["prediction_type"] = "sample"
    (vdir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="predicts 'sample'; this tool handles epsilon, v_prediction"):
        load_backend("toy", str(vdir))
