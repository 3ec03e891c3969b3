"""Scorers on tiny randomly initialised models built here; the judge on rendered scenes."""

import json
import string

import numpy as np
import pytest
import torch

from analysis.scorers import JudgeScorer, OpenClipScorer, PickScorer, get_scorer
from dde.toy.world import Scene, render

IMAGES = np.stack([render(Scene("circle", "red", "big", "black"), np.random.default_rng(i)) for i in range(2)])
PROMPTS = ["a big red circle on a black background", "a small blue square on a white background"]


def test_judge_scorer_prefers_the_true_caption():
    scores = JudgeScorer().score(IMAGES, PROMPTS)
    assert scores.shape == (2,) and scores[0] > scores[1]
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        JudgeScorer().score(IMAGES, PROMPTS[:1])


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    import open_clip

    root = tmp_path_factory.mktemp("oc")
    config = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                              "patch_size": 8},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (root / "dde-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(root / "dde-tiny-clip.json")
    model = open_clip.create_model("dde-tiny-clip", pretrained=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, root / "hps.pt")
    return root / "hps.pt"


def test_hps_scorer_loads_a_checkpoint_into_a_weightless_model(tiny_open_clip):
    scorer = OpenClipScorer("dde-tiny-clip", tiny_open_clip, name="hps")
    scores = scorer.score(IMAGES, PROMPTS)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 100))
    assert scorer.info.units == "100 x cosine(image, text)"
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS), scores)  # deterministic


def test_missing_or_wrong_checkpoints_say_what_to_do(tmp_path, tiny_open_clip):
    with pytest.raises(ValueError, match="HPS_v2_compressed.pt"):
        get_scorer("hps", str(tmp_path / "missing.pt"))
    torch.save({"state_dict": {"nothing": torch.zeros(1)}}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="does not fit open_clip dde-tiny-clip"):
        OpenClipScorer("dde-tiny-clip", tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="unknown scorer"):
        get_scorer("aesthetic")


def test_pickscore_on_a_tiny_clip(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in string.ascii_lowercase:
            vocab[ch + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    config = CLIPConfig(text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
                                     "num_hidden_layers": 1, "num_attention_heads": 2,
                                     "max_position_embeddings": 32, "eos_token_id": 1, "bos_token_id": 0,
                                     "pad_token_id": 1},
                        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                                       "num_hidden_layers": 1, "num_attention_heads": 2},
                        projection_dim=16)
    CLIPModel(config).save_pretrained(tmp_path / "pick")
    processor.save_pretrained(tmp_path / "pick")
    scorer = PickScorer(str(tmp_path / "pick"))
    scores = scorer.score(IMAGES, PROMPTS)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert abs(scores).max() <= float(scorer.model.logit_scale.exp().detach()) + 1e-4
    with pytest.raises(ValueError, match="could not load"):
        PickScorer(str(tmp_path / "nothing-here"))
