"""The shipped world: base model, its card, the pairs, the tuned LoRAs and their cards, the Compare
examples. These read assets/ as committed; nothing is regenerated here."""

import json

import numpy as np
import pytest
import torch

from dde.backends.spec import SHIPPED, load_model
from dde.backends.toy import ToyBackend
from dde.data import read_pairs, winner_loser
from dde.images import to_uint8
from dde.toy import ASSETS
from dde.toy.judge import ATTRIBUTES, judge

PROMPT = "a big red circle on the left on a black background"


def test_base_model_card_matches_its_metadata():
    meta = json.loads((ASSETS / "toy-base" / "model.json").read_text())
    card = meta["card"]
    text = (ASSETS / "toy-base" / "MODEL_CARD.md").read_text()
    assert card["command"] in text and card["eval_command"] in text
    assert f"{card['held_out_eval']['total']:.3f}" in text and "docs/RESULTS.md" in text
    assert card["train_wall_seconds"] < 60 * 60  # the world's budget: 60 minutes on 2 CPU cores
    assert meta["default_guidance"] == card["held_out_eval"]["guidance"]
    assert sum(f.stat().st_size for f in (ASSETS / "toy-base").iterdir()) < 30 * 2**20


def test_python_level_usage_samples_and_judges():
    base = ToyBackend.load()
    out = base.sample([PROMPT] * 2, seed=0, steps=10, guidance=None)
    scores = [judge(im, PROMPT).total for im in to_uint8(out.images.numpy())]
    assert all(0 <= s <= 1 for s in scores)
    again = base.sample([PROMPT], seed=1, steps=10, guidance=None)
    np.testing.assert_allclose(again.images.numpy()[0], out.images.numpy()[1], atol=1e-4)


def test_shipped_pairs_follow_the_schema_and_their_sidecar():
    frame = read_pairs(ASSETS / "toy-pairs.parquet")
    sidecar = json.loads((ASSETS / "toy-pairs.json").read_text())
    assert len(frame) >= 6000 and len(frame) == sidecar["pairs"]
    assert set(frame.label_0.unique()) <= {0.0, 1.0} and frame["pair"].is_unique
    assert "independent" in sidecar["pairing"] and sidecar["command"].startswith("python -m bench.make_pairs")
    win, lose = winner_loser(frame.iloc[0])
    assert win.shape == lose.shape == (32, 32, 3)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_tuned_loras_load_differ_from_base_and_carry_their_cards(name):
    base, tuned = load_model("base"), load_model(name)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([354])
    cond = base.encode_prompts([PROMPT])
    assert not torch.allclose(base.predict_eps(x, t, cond), tuned.predict_eps(x, t, cond))
    card = json.loads((SHIPPED[name].parent / "card.json").read_text())
    row = next(r for r in card["summary"] if r["model"] == name)
    assert 0 <= row["win_lo"] <= row["win_rate"] <= row["win_hi"] <= 1 and row["gain_lo"] <= row["gain"]
    assert row["seeds"] >= 2 and set(f"acc_{a}" for a in ATTRIBUTES) <= set(row)
    text = (SHIPPED[name].parent / "MODEL_CARD.md").read_text()
    assert card["command"] in text and "docs/RESULTS.md" in text
    assert (SHIPPED[name].parent / "run" / "metrics.jsonl").is_file()
    from bench.jobs import input_digests

    assert card["inputs"] == input_digests({}), "trained on another base model or other pairs than the shipped ones"


def test_compare_examples_were_picked_by_the_script():
    examples = json.loads((ASSETS / "compare_examples.json").read_text())
    assert examples["command"].startswith("python -m bench.make_examples")
    gains = [e["gain"] for e in examples["examples"]]
    assert gains == sorted(gains, reverse=True) and len(gains) >= 3
