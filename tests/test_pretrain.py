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
                    "--coords", "--attr-drop", "0.3", "--word-init", "1.0", "--weight-cap", "20", "--text-film",
                    "--guidance-sweep", "1,3", "--trials", str(trial),
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
    assert card["word_init"] == 1.0 and "word-embedding initialisation std 1.0" in text
    assert card["weight_cap"] == 20 and "min(1 + 1/SNR, 20.0)" in text
    assert meta["unet"]["addition_embed_type"] == "text" and meta["unet"]["resnet_time_scale_shift"] == "scale_shift"
    assert card["text_film"] and "caption in every ResNet block (scale and shift) yes" in text
    from bench import word_probe  # reads the work folder's checkpoint, built from its recipe

    rows = word_probe.probe(str(tmp_path / "w"), scenes=1, times=(500,))
    assert [r["attribute"] for r in rows] == list(word_probe.ATTRIBUTES)


def test_loss_weight_is_v_weighting_capped():
    """min(1 + 1/SNR, cap) against hand values: alpha_bar 0.5 -> SNR 1 -> 2; 0.2 -> SNR 1/4 -> 5;
    0.01 -> SNR 1/99 -> 100, capped; cap 1 is the plain loss; a cap below 1 is refused."""
    ab = torch.tensor([0.5, 0.2, 0.01], dtype=torch.float64)
    assert make_base.loss_weight(ab, 20).tolist() == pytest.approx([2.0, 5.0, 20.0])
    assert make_base.loss_weight(ab, 1e9).tolist() == pytest.approx([2.0, 5.0, 100.0])
    assert make_base.loss_weight(ab, 1).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=">= 1"):
        make_base.loss_weight(ab, 0.5)


def test_word_init_starts_every_word_distinct():
    """At CLIP's initialisation two words' vectors differ far less than at ``word_init`` 1.0, where
    the encoder's output for captions that differ in one position word differs at that word."""
    from dde.toy import model as toy_model
    from dde.toy.text import ToyTokenizer

    torch.manual_seed(0)
    _, clip_init = toy_model.build()
    torch.manual_seed(0)
    _, wide = toy_model.build(word_init=1.0)
    assert wide.get_input_embeddings().weight.std().item() == pytest.approx(1.0, rel=0.05)
    assert clip_init.get_input_embeddings().weight.std().item() == pytest.approx(0.02, rel=0.1)
    ids = ToyTokenizer()(["a big red circle on the left on a black background",
                          "a big red circle on the right on a black background"])
    gaps = {}
    for name, encoder in (("clip", clip_init), ("wide", wide)):
        with torch.no_grad():
            h = encoder(input_ids=ids).last_hidden_state
        gaps[name] = (h[0, 7] - h[1, 7]).norm().item()  # token 7 is the position word
    assert gaps["wide"] > 5 and gaps["wide"] > 3 * gaps["clip"]


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


def test_word_probe_finds_a_word_the_model_cannot_tell_apart(tmp_path, capsys):
    """bench.word_probe on a tiny model whose position words share one embedding ("in" and "on" too,
    for "in the centre"): position has a text gap and output change of exactly zero; colour, whose
    words differ, does not."""
    from bench import word_probe
    from dde.testing import tiny_toy_model
    from dde.toy import model as toy_model
    from dde.toy.text import VOCAB
    from dde.toy.world import POSITIONS

    path = tiny_toy_model(tmp_path / "m")
    unet, text_encoder, _, meta = toy_model.load_model_dir(path)
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for word in POSITIONS:
            table[VOCAB.index(word)] = table[VOCAB.index("left")]
        table[VOCAB.index("in")] = table[VOCAB.index("on")]
    toy_model.save_model_dir(path, unet, text_encoder)
    rows = {r["attribute"]: r for r in word_probe.probe(str(path), scenes=3, times=(900, 300))}
    assert rows["position"]["text gap"] == 0 and rows["position"]["output change t=900"] == 0
    assert rows["colour"]["text gap"] > 0.1 and rows["colour"]["output change t=300"] > 0
    word_probe.main([str(path), "--scenes", "2", "--times", "500"])
    assert "| position |" in capsys.readouterr().out
