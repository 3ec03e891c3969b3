"""Base-model pretraining on a tiny UNet: it writes a loadable model with a card, resumes, refuses a
resume with another recipe, runs every recipe option, and picks its guidance on training scenes."""

import json

import pytest
import torch

from bench import make_base
from dde.backends.toy import ToyBackend
from dde.toy.world import Scene


def _common(out, work):
    return ["--out", str(out), "--work", str(work), "--batch", "4", "--width", "16", "--ckpt-every", "1",
            "--eval-seeds", "1", "--threads", "1"]


@pytest.mark.slow
def test_pretrain_writes_a_model_with_a_card_and_resumes(tmp_path):
    out, work = tmp_path / "model", tmp_path / "work"
    common = _common(out, work)
    make_base.main(["--steps", "2", "--guidance", "2", *common])
    make_base.main(["--steps", "3", "--guidance", "2", *common])  # resumes at step 2
    rows = (work / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3"]
    card = json.loads((out / "model.json").read_text())["card"]
    assert card["steps"] == 3 and card["held_out_eval"]["n"] == 97
    assert card["command"] in (out / "MODEL_CARD.md").read_text()
    backend = ToyBackend.load(out)
    assert backend.default_guidance == 2.0
    assert backend.sample(["a big red circle on a black background"], steps=2).images.shape == (1, 3, 32, 32)
    make_base.main(["--eval-only", "--guidance", "1.5", *common])
    again = json.loads((out / "model.json").read_text())["card"]
    assert again["held_out_eval"]["guidance"] == 1.5 and again["steps"] == 3
    assert again["train_wall_seconds"] == card["train_wall_seconds"]
    with pytest.raises(SystemExit):  # a resume must continue the same recipe
        make_base.main(["--steps", "4", "--offset-noise", "0.1", "--guidance", "2", *common])


@pytest.mark.slow
def test_every_recipe_option_runs_and_the_guidance_is_chosen_on_training_scenes(tmp_path, monkeypatch):
    monkeypatch.setattr(make_base, "SWEEP_SCENES", 4)
    trial = tmp_path / "trial" / "model"
    make_base.main(["--steps", "1", "--guidance", "2", *_common(trial, tmp_path / "tw")])
    out = tmp_path / "model"
    make_base.main(["--steps", "2", "--offset-noise", "0.1", "--pyramid-noise", "0.8", "--attention", "16,8",
                    "--coords", "--attr-drop", "0.3", "--guidance-sweep", "1,3", "--trials", str(trial),
                    *_common(out, tmp_path / "w")])
    meta = json.loads((out / "model.json").read_text())
    card = meta["card"]
    assert set(card["guidance_sweep"]) == {"1.0", "3.0"}
    best = max(card["guidance_sweep"], key=card["guidance_sweep"].get)
    assert meta["default_guidance"] == float(best) == card["held_out_eval"]["guidance"]
    backend = ToyBackend.load(out)
    assert backend.default_guidance == float(best)
    assert meta["unet"]["in_channels"] == 5 and backend.latent_shape() == (3, 32, 32)  # coordinate planes
    image = backend.sample(["a big red circle on the left on a black background"], steps=2).images
    assert image.shape == (1, 3, 32, 32)
    assert meta["unet"]["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    text = (out / "MODEL_CARD.md").read_text()
    assert "## Recipe trials" in text and "| trial |" in text and card["trials"][0]["name"] == "trial"


def test_training_noise_and_partial_captions():
    gen = torch.Generator().manual_seed(0)
    eps = make_base.training_noise((2000, 3, 32, 32), gen, offset=0.5)
    means = eps.mean(dim=(2, 3))  # offset noise: per image and channel, the mean varies with sd ~ offset
    assert means.std().item() == pytest.approx(0.5, rel=0.1)
    eps = make_base.training_noise((2000, 3, 32, 32), gen, pyramid=0.8)
    assert eps.var().item() == pytest.approx(1.0, rel=0.05)  # rescaled to unit variance
    assert eps.mean(dim=(2, 3)).std().item() > 0.1  # and it carries coarse-scale structure
    scene = Scene("circle", "red", "big", "black", "left")
    assert scene.describe({"size", "background"}) == "a red circle on the left"
    _, captions = make_base.make_batch(0, 0, 64, [scene], drop=0.0, attr_drop=0.5)
    assert len(set(captions)) > 4 and all("circle" in c for c in captions)
    _, full = make_base.make_batch(0, 0, 8, [scene], drop=0.0)
    assert set(full) == {scene.caption}
