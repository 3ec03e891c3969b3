import random
from collections import defaultdict

import numpy as np
import pytest

from dde import images
from dde.toy import world
from dde.toy.judge import ATTRIBUTES, judge, judge_batch


def test_captions_roundtrip_for_every_scene():
    scenes = world.all_scenes()
    assert len(scenes) == 3 * 6 * 2 * 3 * 6
    for scene in scenes:
        assert world.parse_caption(scene.caption) == scene
    assert world.parse_caption("A BIG red circle in the center on a black background").position == "centre"


@pytest.mark.parametrize("caption, message", [
    ("a red circle on a black background", "exactly one size"),
    ("a big red blue circle on a black background", "exactly one colour"),
    ("a big red circle", "background"),
])
def test_parse_caption_errors(caption, message):
    with pytest.raises(ValueError, match=message):
        world.parse_caption(caption)


def test_scene_validation():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        world.Scene("hexagon", "red", "big", "white")


def test_split_is_fixed_and_disjoint():
    train, held = world.split_scenes()
    assert not set(train) & set(held)
    assert len(train) + len(held) == len(world.all_scenes())
    assert world.split_scenes() == (train, held)


def test_render_is_deterministic_given_rng():
    scene = world.Scene("triangle", "orange", "big", "grey", "left")
    a = world.render(scene, np.random.default_rng(5))
    b = world.render(scene, np.random.default_rng(5))
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    # anti-aliased: edge pixels hold blends of object and background
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 2


def test_model_space_roundtrip():
    img = world.render(world.Scene("circle", "red", "small", "white"), np.random.default_rng(0))
    x = images.from_uint8(img)
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(images.to_uint8(x), img)


def test_judge_recognises_ground_truth():
    """On freshly rendered scenes every attribute is recognised at least 97% of the time."""
    rng, pick = np.random.default_rng(123), random.Random(123)
    scenes = world.all_scenes()
    hits, totals = defaultdict(list), []
    for _ in range(600):
        scene = pick.choice(scenes)
        j = judge(world.render(scene, rng), scene.caption)
        totals.append(j.total)
        for attr, ok in j.correct.items():
            hits[attr].append(ok)
    accuracy = {a: float(np.mean(v)) for a, v in hits.items()}
    assert set(accuracy) == set(ATTRIBUTES)
    assert min(accuracy.values()) >= 0.97, accuracy
    assert np.mean(totals) > 0.9


def test_judge_scores_swapped_captions_low():
    rng, pick = np.random.default_rng(7), random.Random(7)
    scenes = world.all_scenes()
    better = []
    swapped_totals = []
    for _ in range(300):
        scene = pick.choice(scenes)
        img = world.render(scene, rng)
        other = pick.choice([s for s in scenes if s.shape != scene.shape and s.colour != scene.colour])
        true_score, swapped = judge(img, scene).total, judge(img, other).total
        better.append(true_score > swapped)
        swapped_totals.append(swapped)
    assert np.mean(better) >= 0.99
    assert np.mean(swapped_totals) < 0.6


def test_judge_on_a_blank_image_and_noise():
    blank = np.full((32, 32, 3), 245, dtype=np.uint8)
    j = judge(blank, "a big red circle on a white background")
    assert j.predicted["shape"] is None and j.scores["colour"] == 0.0 and j.correct["background"]
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert judge(noise, "a big red circle on a white background").total < 0.5


def test_judge_input_errors():
    with pytest.raises(ValueError, match=r"\[32, 32, 3\] images"):
        judge(np.zeros((16, 16, 3), dtype=np.uint8), "a big red circle on a white background")
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        judge_batch(np.zeros((2, 32, 32, 3), dtype=np.uint8), ["x"])
