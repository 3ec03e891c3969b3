import json

import numpy as np
import pandas as pd
import pytest

from bench import make_pairs
from bench.make_pairs import bradley_terry_labels, label_pairs, sample_pairs, training_prompts
from dde.data import decode_image, png_bytes, read_pairs, winner_loser, write_parquet
from dde.testing import tiny_toy_model


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    from dde.backends.toy import ToyBackend

    return ToyBackend.load(tiny_toy_model(tmp_path_factory.mktemp("toy")))


def test_bradley_terry_draw_matches_its_probability():
    rng = np.random.default_rng(0)
    s0, s1 = np.full(20000, 0.6), np.full(20000, 0.5)
    labels = bradley_terry_labels(s0, s1, 0.05, rng)
    assert labels.mean() == pytest.approx(1 / (1 + np.exp(-2)), abs=0.01)
    with pytest.raises(ValueError, match="temperature must be positive"):
        bradley_terry_labels(s0, s1, 0.0, rng)


def test_training_prompts_cycle_the_training_scenes():
    prompts = training_prompts(1200)
    assert len(prompts) == 1200 and len(set(prompts[:551])) == 551


def test_generated_pairs_follow_the_pick_a_pic_schema(tiny_backend, tmp_path):
    raw = sample_pairs(tiny_backend, training_prompts(6), 0, steps=2, batch=4)
    frame, stats = label_pairs(raw, seed=0, temperature=0.05, tie_margin=0.0)
    assert stats["generated"] == 6 and len(frame) == 6
    assert set(frame.label_0 + frame.label_1) == {1.0}
    assert (frame.seed_0 != frame.seed_1).all()
    path = write_parquet(frame, tmp_path / "pairs.parquet", {"command": "test"})
    back = read_pairs(path)
    assert list(back.columns[:5]) == ["caption", "jpg_0", "jpg_1", "label_0", "label_1"]
    win, lose = winner_loser(back.iloc[0])
    assert win.shape == lose.shape == (32, 32, 3)
    assert decode_image(back.jpg_0[0]).dtype == np.uint8


def test_read_pairs_errors_and_ties(tmp_path):
    pd.DataFrame({"caption": ["x"], "jpg_0": [b""]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['jpg_1', 'label_0', 'label_1'\]"):
        read_pairs(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="no preference pairs"):
        read_pairs(tmp_path / "none.parquet")
    (tmp_path / "junk.parquet").write_text("hello")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        read_pairs(tmp_path / "junk.parquet")
    tie = pd.DataFrame({"caption": ["a", "b"], "jpg_0": [b"", b""], "jpg_1": [b"", b""],
                        "label_0": [0.5, 1.0], "label_1": [0.5, 0.0]})
    tie.to_parquet(tmp_path / "ties.parquet")
    assert len(read_pairs(tmp_path / "ties.parquet")) == 1
    assert len(read_pairs(tmp_path / "ties.parquet", drop_ties=False)) == 2
    with pytest.raises(ValueError, match="jpg_0 of pair 1 is not a readable image"):
        winner_loser(read_pairs(tmp_path / "ties.parquet", drop_ties=False).iloc[1])


def test_jsonl_folder_format(tmp_path):
    import json

    img = np.zeros((8, 8, 3), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(png_bytes(img))
    (tmp_path / "b.png").write_bytes(png_bytes(img + 255))
    lines = [{"caption": "x", "image_0": "a.png", "image_1": "b.png", "label_0": 1.0},
             {"caption": "tie", "image_0": "a.png", "image_1": "b.png", "label_0": 0.5}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    frame = read_pairs(tmp_path)
    assert len(frame) == 1 and frame.label_1[0] == 0.0
    win, _ = winner_loser(frame.iloc[0])
    assert win.max() == 0
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"caption": "x", "image_0": "../etc/passwd",
                                                      "image_1": "b.png", "label_0": 1}))
    with pytest.raises(ValueError, match="line 1: .*outside the folder"):
        read_pairs(tmp_path)
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"caption": "x", "image_0": "a.png", "label_0": 1}))
    with pytest.raises(ValueError, match="line 1: KeyError"):
        read_pairs(tmp_path)


def test_pair_generator_resumes_without_repeating_or_duplicating(tiny_backend, tmp_path, monkeypatch):
    """An interrupted run keeps its finished chunks; the rerun samples only the missing ones, and the
    result equals an uninterrupted run's."""
    model = tiny_backend.model_path
    common = ["--model", str(model), "--prompts", "10", "--chunk", "4", "--batch", "4", "--steps", "2",
              "--tie-margin", "0"]
    sampled, original = [], make_pairs.sample_pairs

    def flaky(backend, prompts, first, **kw):
        sampled.append(first)
        if first == 8 and len(sampled) == 3:
            raise KeyboardInterrupt  # the third chunk of the first run dies
        return original(backend, prompts, first, **kw)

    monkeypatch.setattr(make_pairs, "sample_pairs", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_pairs.main([*common, "--out", str(tmp_path / "a.parquet"), "--work", str(tmp_path / "w")])
    assert sorted(p.name for p in (tmp_path / "w").glob("part-*")) == ["part-0000000-0000004.parquet",
                                                                       "part-0000004-0000008.parquet"]
    make_pairs.main([*common, "--out", str(tmp_path / "a.parquet"), "--work", str(tmp_path / "w")])
    assert sampled == [0, 4, 8, 8]  # the rerun sampled only the missing chunk
    resumed = read_pairs(tmp_path / "a.parquet")
    make_pairs.main([*common, "--out", str(tmp_path / "b.parquet"), "--work", str(tmp_path / "w2")])
    straight = read_pairs(tmp_path / "b.parquet")
    assert len(resumed) == 10 and resumed["pair"].is_unique
    pd.testing.assert_frame_equal(resumed, straight)
    sidecar = json.loads((tmp_path / "a.json").read_text())
    assert "independent" in sidecar["pairing"] and sidecar["pairs"] == 10
    with pytest.raises(SystemExit):  # a resume with other settings would mix two pair sets
        make_pairs.main([*common, "--steps", "3", "--out", str(tmp_path / "c.parquet"), "--work", str(tmp_path / "w")])


def test_pair_attributes_reads_contrast_on_renders_with_a_known_answer():
    from dataclasses import replace

    from bench.pair_attributes import contrast_table, judge_pairs
    from dde.toy.world import parse_caption, render

    caption = "a big red square on the left on a black background"
    scene = parse_caption(caption)
    right, circle = render(scene), render(replace(scene, shape="circle"))
    rows = [  # pair 0 contrasts the shape, the preferred image right; pairs 1-2 do not contrast it
        {"caption": caption, "jpg_0": png_bytes(circle), "jpg_1": png_bytes(right), "label_0": 0.0},
        {"caption": caption, "jpg_0": png_bytes(right), "jpg_1": png_bytes(right), "label_0": 1.0},
        {"caption": caption, "jpg_0": png_bytes(circle), "jpg_1": png_bytes(circle), "label_0": 1.0},
    ]
    images = judge_pairs(pd.DataFrame(rows))
    assert images.drawn_shape.tolist() == ["circle", "square", "square", "square", "circle", "circle"]
    table = contrast_table(images).set_index("attribute")
    assert table.loc["shape", "right"] == pytest.approx(0.5)
    assert table.loc["shape", "pairs_differing"] == pytest.approx(1 / 3)
    assert table.loc["shape", "preferred_right_where_differing"] == 1.0
    assert table.loc["colour", "right"] == 1.0 and table.loc["colour", "pairs_differing"] == 0.0
    assert np.isnan(table.loc["colour", "preferred_right_where_differing"])
