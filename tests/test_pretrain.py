"""Base-model pretraining on a tiny UNet: it writes a loadable model with a card, and resumes."""

import json

import pytest

from dde.backends.toy import ToyBackend
from dde.toy import pretrain


@pytest.mark.slow
def test_pretrain_writes_a_model_with_a_card_and_resumes(tmp_path):
    out, work = tmp_path / "model", tmp_path / "work"
    common = ["--out", str(out), "--work", str(work), "--batch", "4", "--width", "16", "--ckpt-every", "1",
              "--eval-seeds", "1", "--threads", "1"]
    pretrain.main(["--steps", "2", *common])
    pretrain.main(["--steps", "3", *common])  # resumes at step 2
    rows = (work / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3"]
    card = json.loads((out / "model.json").read_text())["card"]
    assert card["steps"] == 3 and card["held_out_eval"]["n"] == 97
    assert card["command"] in (out / "MODEL_CARD.md").read_text()
    backend = ToyBackend.load(out)
    assert backend.sample(["a big red circle on a black background"], steps=2).images.shape == (1, 3, 32, 32)
    pretrain.main(["--eval-only", "--guidance", "1.5", *common])
    again = json.loads((out / "model.json").read_text())["card"]
    assert again["held_out_eval"]["guidance"] == 1.5 and again["steps"] == 3
    assert again["train_wall_seconds"] == card["train_wall_seconds"]
