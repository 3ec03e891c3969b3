"""The shipped world: base model, its card, the pairs and the DDE-tuned LoRA load and work.

These read assets/ as committed; nothing is regenerated here."""

import json

import numpy as np
import pytest

from dde.backends import load_toy_spec
from dde.backends.toy import ASSETS, ToyBackend
from dde.data import read_pairs, winner_loser
from dde.toy.judge import judge

PROMPT = "a big red circle on the left on a black background"


def test_base_model_card_matches_its_metadata():
    meta = json.loads((ASSETS / "toy-base" / "model.json").read_text())
    card = meta["card"]
    text = (ASSETS / "toy-base" / "MODEL_CARD.md").read_text()
    assert card["command"] in text
    assert f"{card['held_out_eval']['total']:.3f}" in text
    assert card["train_wall_seconds"] < 60 * 60  # the world's budget: 60 minutes on 2 CPU cores
    assert sum(f.stat().st_size for f in (ASSETS / "toy-base").iterdir()) < 30 * 2**20


def test_python_level_usage_samples_and_judges():
    base = ToyBackend.load()
    out = base.sample([PROMPT] * 2, seed=0, steps=10, guidance=None)
    images = ((out.images.numpy().transpose(0, 2, 3, 1) + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    scores = [judge(im, PROMPT).total for im in images]
    assert all(0 <= s <= 1 for s in scores)
    again = base.sample([PROMPT], seed=1, steps=10, guidance=None)
    np.testing.assert_allclose(again.images.numpy()[0], out.images.numpy()[1], atol=1e-4)


def test_shipped_pairs_follow_the_schema():
    frame = read_pairs(ASSETS / "toy-pairs.parquet")
    assert len(frame) >= 1000
    assert set(frame.label_0.unique()) <= {0.0, 1.0}
    win, lose = winner_loser(frame.iloc[0])
    assert win.shape == lose.shape == (32, 32, 3)


def test_shipped_tuned_lora_loads_and_differs_from_base():
    import torch

    base, tuned = load_toy_spec("base"), load_toy_spec("tuned")
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([354])
    cond = base.encode_prompts([PROMPT])
    assert not torch.allclose(base.predict_eps(x, t, cond), tuned.predict_eps(x, t, cond))
    card = json.loads((ASSETS / "toy-dde" / "card.json").read_text())
    assert {row["model"] for row in card["summary"]} == {"base", "dde", "dpo"}
    dde = next(row for row in card["summary"] if row["model"] == "dde")
    assert 0 <= dde["win_lo"] <= dde["win_rate"] <= dde["win_hi"] <= 1


def test_model_specs_reject_nonsense(tmp_path):
    with pytest.raises(ValueError, match="is not 'base', 'tuned'"):
        load_toy_spec(str(tmp_path))
