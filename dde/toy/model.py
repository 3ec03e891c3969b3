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


RESOLUTIONS = (32, 16, 8)  # the UNet's three levels at 32x32 input


COORD_CHANNELS = 2  # x and y coordinate planes appended to the UNet's input (CoordConv)


def unet_config(width: int = 32, cross_dim: int = 64, attention: tuple[int, ...] = (8,), coords: bool = False,
                text_film: bool = False) -> dict:
    """A small UNet2DConditionModel for 32x32 RGB: 32 -> 16 -> 8, with cross-attention (where the
    text meets the image) at the resolutions in ``attention`` (any of 32, 16, 8). With ``coords`` the
    UNet also reads two coordinate planes (:func:`unet_input`): convolutions alone know where they
    are only from the zero padding at the border, and "on the left" needs to know where left is.
    With ``text_film`` the caption also reaches every ResNet block, as a scale and shift of its
    channels (diffusers' ``addition_embed_type="text"``: the text encoder's states, attention-pooled,
    added to the timestep embedding; ``resnet_time_scale_shift="scale_shift"``): a global switch that
    convolutions reading the coordinate planes can turn into "put it on the left", where
    cross-attention must learn location-dependent attention first."""
    unknown = set(attention) - set(RESOLUTIONS)
    if unknown or not attention:
        raise ValueError(f"attention resolutions must be a non-empty subset of {RESOLUTIONS}, got {attention}")
    down = ["CrossAttnDownBlock2D" if r in attention else "DownBlock2D" for r in RESOLUTIONS]
    up = ["CrossAttnUpBlock2D" if r in attention else "UpBlock2D" for r in reversed(RESOLUTIONS)]
    return {"sample_size": 32, "in_channels": 3 + (COORD_CHANNELS if coords else 0), "out_channels": 3,
            "layers_per_block": 1,
            "block_out_channels": [width, width * 2, width * 3],
            "down_block_types": down, "up_block_types": up,
            "cross_attention_dim": cross_dim, "attention_head_dim": 8, "norm_num_groups": 16,
            **({"addition_embed_type": "text", "addition_embed_type_num_heads": 4,
                "resnet_time_scale_shift": "scale_shift"} if text_film else {})}


def unet_input(unet: UNet2DConditionModel, x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, 3, H, W]`` with the coordinate planes (x, y in [-1, 1]) appended when the UNet was
    built to read them (``in_channels`` 5), else ``x`` unchanged."""
    extra = unet.config.in_channels - x.shape[1]
    if extra == 0:
        return x
    if extra != COORD_CHANNELS:
        raise ValueError(f"the UNet reads {unet.config.in_channels} channels; images have {x.shape[1]}")
    h, w = x.shape[-2:]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device),
                            torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device), indexing="ij")
    return torch.cat([x, torch.stack([xs, ys]).expand(x.shape[0], -1, -1, -1)], dim=1)


def build(unet_cfg: dict | None = None, text_cfg: dict | None = None,
          word_init: float | None = None) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    """Fresh (randomly initialised) UNet and text encoder.

    ``word_init``: the standard deviation of the text encoder's word embeddings at initialisation
    (None: CLIP's own, 0.02). At CLIP's scale every word starts almost the same vector, and joint
    training separates only the words whose pixels pull hard (colour, background, size); a larger
    value starts every word distinct, so the UNet can read position and shape words from the start."""
    unet = UNet2DConditionModel(**(unet_cfg or unet_config()))
    text_encoder = CLIPTextModel(CLIPTextConfig(**(text_cfg or text_encoder_config())))
    if word_init is not None:
        with torch.no_grad():
            text_encoder.get_input_embeddings().weight.normal_(0.0, word_init)
    return unet, text_encoder


def scheduler_config(prediction_type: str = "epsilon") -> dict:
    """The toy world's scheduler config for a model that predicts ``prediction_type``."""
    return {**SCHEDULER_CONFIG, "prediction_type": prediction_type}


def save_model_dir(path: str | Path, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                   extra: dict | None = None, scheduler: dict | None = None) -> Path:
    """Write a model directory atomically per file (weights first, then model.json)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors({k: v.detach().contiguous().cpu() for k, v in unet.state_dict().items()},
                            path / "unet.safetensors")
    atomic_save_safetensors({k: v.detach().contiguous().cpu() for k, v in text_encoder.state_dict().items()},
                            path / "text_encoder.safetensors")
    meta = {"format": "dde-toy-model/1", "unet": dict(unet.config), "text_encoder": text_encoder.config.to_dict(),
            "scheduler": scheduler or SCHEDULER_CONFIG, "vocab": list(VOCAB), **(extra or {})}
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
