"""The toy text-to-image model: configs, construction, and the model directory format.

A model directory holds ``model.json`` (unet config, text-encoder config, scheduler config,
vocabulary) and ``unet.safetensors`` + ``text_encoder.safetensors``. Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel

from dde.io import atomic_save_safetensors, atomic_write_json
from dde.toy.text import VOCAB, ToyTokenizer, text_encoder_config

# SD1.5's training schedule (scaled-linear betas), so the credit curves look like the real ones;
# DDIM sampling with SD's timestep spacing; x0 clipped to the pixel range [-1, 1].
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                    "beta_schedule": "scaled_linear", "clip_sample": True, "set_alpha_to_one": False,
                    "steps_offset": 1, "prediction_type": "epsilon", "timestep_spacing": "leading"}


def unet_config(width: int = 32, cross_dim: int = 64) -> dict:
    """A small UNet2DConditionModel for 32x32 RGB: 32 -> 16 -> 8, cross-attention at 8x8."""
    return {"sample_size": 32, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
            "block_out_channels": [width, width * 2, width * 3],
            "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
            "cross_attention_dim": cross_dim, "attention_head_dim": 8, "norm_num_groups": 16}


def build(unet_cfg: dict | None = None, text_cfg: dict | None = None) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """Fresh (randomly initialised) UNet and text encoder."""
    unet = UNet2DConditionModel(**(unet_cfg or unet_config()))
    text_encoder = CLIPTextModel(CLIPTextConfig(**(text_cfg or text_encoder_config())))
    return unet, text_encoder


def save_model_dir(path: str | Path, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                   extra: dict | None = None) -> Path:
    """Write a model directory atomically per file (weights first, then model.json)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors({k: v.detach().contiguous().cpu() for k, v in unet.state_dict().items()},
                            path / "unet.safetensors")
    atomic_save_safetensors({k: v.detach().contiguous().cpu() for k, v in text_encoder.state_dict().items()},
                            path / "text_encoder.safetensors")
    meta = {"format": "dde-toy-model/1", "unet": dict(unet.config), "text_encoder": text_encoder.config.to_dict(),
            "scheduler": SCHEDULER_CONFIG, "vocab": list(VOCAB), **(extra or {})}
    atomic_write_json(meta, path / "model.json")
    return path


def load_model_dir(path: str | Path) -> tuple[UNet2DConditionModel, CLIPTextModel, ToyTokenizer, dict]:
    """Load a model directory; a missing or corrupt file raises ValueError naming it."""
    path = Path(path)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise ValueError(f"{path} is not a toy model directory: {meta_path.name} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path} is not valid JSON: {err}") from err
    unet_cfg = {k: v for k, v in meta["unet"].items() if not k.startswith("_")}
    text_cfg = {k: v for k, v in meta["text_encoder"].items()
                if k in CLIPTextConfig().to_dict() or k in text_encoder_config()}
    unet, text_encoder = build(unet_cfg, text_cfg)
    for module, name in ((unet, "unet.safetensors"), (text_encoder, "text_encoder.safetensors")):
        file = path / name
        try:
            state = load_file(file)
        except FileNotFoundError as err:
            raise ValueError(f"{file} is missing") from err
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ValueError(f"{file} is not a readable safetensors file ({err})") from err
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{file} does not match the model in model.json: "
                             f"missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}")
    unet.eval()
    text_encoder.eval()
    return unet, text_encoder, ToyTokenizer(tuple(meta["vocab"])), meta


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
