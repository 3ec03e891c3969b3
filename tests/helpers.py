"""Shared builders for tests: a tiny random toy model directory and rendered preference pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dde.toy import model as toy_model
from dde.toy.pairs import png_bytes
from dde.toy.text import text_encoder_config
from dde.toy.world import COLOURS, Scene, render, split_scenes


def tiny_toy_model(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    unet, text_encoder = toy_model.build(toy_model.unet_config(width=16), text_encoder_config())
    return toy_model.save_model_dir(path, unet, text_encoder)


def rendered_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """Winner: the caption's scene; loser: the same scene in another colour (label_0 = 1 or 0)."""
    rng = np.random.default_rng(seed)
    train, _ = split_scenes()
    rows = []
    for i in range(n):
        scene = train[int(rng.integers(len(train)))]
        other = Scene(scene.shape, [c for c in COLOURS if c != scene.colour][i % 5], scene.size, scene.background,
                      scene.position)
        good, bad = png_bytes(render(scene, rng)), png_bytes(render(other, rng))
        first = bool(i % 2)
        rows.append({"caption": scene.caption, "jpg_0": good if first else bad, "jpg_1": bad if first else good,
                     "label_0": 1.0 if first else 0.0, "label_1": 0.0 if first else 1.0})
    return pd.DataFrame(rows)
