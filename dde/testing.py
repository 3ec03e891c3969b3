"""Tiny models and data built from configs, for tests and benchmarks (nothing is downloaded).

- :func:`tiny_toy_model`: a randomly initialised toy model directory (UNet width 16).
- :func:`rendered_pairs`: preference pairs rendered by the world (winner: the caption's scene;
  loser: the same scene in another colour), in the Pick-a-Pic schema.
- :func:`tiny_sd_pipeline`: a randomly initialised SD1.5-layout pipeline saved with
  ``save_pretrained`` (16x16 images, 8x8 latents), its tokenizer in the hub's layout
  (``vocab.json`` and ``merges.txt``) as SD1.5 ships it; :func:`tiny_sdxl_pipeline` likewise.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def tiny_toy_model(path: str | Path, seed: int = 0) -> Path:
    from dde.toy import model as toy_model
    from dde.toy.text import text_encoder_config

    torch.manual_seed(seed)
    unet, text_encoder = toy_model.build(toy_model.unet_config(width=16), text_encoder_config())
    return toy_model.save_model_dir(path, unet, text_encoder)


def rendered_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    from dde.data import png_bytes
    from dde.toy.world import COLOURS, Scene, render, split_scenes

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


def _letter_vocab() -> dict[str, int]:
    """A CLIP vocabulary of single letters (no merges): enough to tokenize any lowercase prompt."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in string.ascii_lowercase:
            vocab[ch + suffix] = len(vocab)
    return vocab


def write_hub_tokenizer(folder: str | Path, vocab: dict[str, int], max_length: int = 16) -> Path:
    """Write a CLIP tokenizer folder the way the hub ships SD1.5's (``vocab.json``, ``merges.txt``,
    ``tokenizer_config.json``, ``special_tokens_map.json``; no ``tokenizer.json``), replacing what
    ``save_pretrained`` wrote, so tests load tokenizers the way users' downloaded models do."""
    import json
    import shutil

    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        **special, "add_prefix_space": False, "do_lower_case": True, "errors": "replace",
        "model_max_length": max_length, "tokenizer_class": "CLIPTokenizer"}))
    return folder


def _tiny_text_config(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, eos_token_id=1, bos_token_id=0, pad_token_id=1)


def tiny_sd_pipeline(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random StableDiffusionPipeline (SD1.5 layout, PNDM scheduler config) to ``path``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab = _letter_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_tiny_text_config(len(vocab))))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
                        norm_num_groups=32, sample_size=16)
    # SD1.5 ships a PNDM scheduler config; the backend reads its betas and samples with DDIM
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(path)
    write_hub_tokenizer(Path(path) / "tokenizer", vocab)
    return Path(path)


def tiny_sdxl_pipeline(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random StableDiffusionXLPipeline (two text encoders, text_time conditioning) to ``path``."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    vocab = _letter_vocab()
    text = {**_tiny_text_config(len(vocab)), "hidden_act": "gelu", "projection_dim": 32}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                                projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
                                norm_num_groups=32)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
                        norm_num_groups=32, sample_size=16)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
                                     text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text)),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(path)
    for sub in ("tokenizer", "tokenizer_2"):
        write_hub_tokenizer(Path(path) / sub, vocab)
    return Path(path)
