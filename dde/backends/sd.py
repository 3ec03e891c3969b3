"""Stable Diffusion 1.5 through diffusers' components (UNet, VAE, CLIP text encoder, tokenizer).

Loads from a hub id or a local diffusers directory (the layout ``StableDiffusionPipeline
.save_pretrained`` writes). With ``HF_HUB_OFFLINE=1`` or a local directory nothing is fetched
(``local_files_only``). On a GPU the UNet and text encoder run in fp16 (or bf16); the VAE stays
fp32 for a clean decode. LoRA targets the attention projections, as the Diffusion-DPO and DDE
SD recipes do.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dde.backends.base import Backend

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is fp16 on CUDA and fp32 elsewhere; fp16/bf16 on a CPU are refused."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {name!r}")
    if device.type == "cpu" and name != "fp32":
        raise ValueError(f"{name} on the CPU is slow and imprecise here; use fp32 (or a GPU)")
    return DTYPES[name]


class SDBackend(Backend):
    name = "sd"

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, *, device: str | None = None,
                 dtype: str = "auto", model_path: str | None = None) -> None:
        super().__init__()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(dtype, self.device)
        self.unet = unet.to(self.device, self.dtype)
        self.text_encoder = text_encoder.to(self.device, self.dtype).requires_grad_(False).eval()
        self.vae = vae.to(self.device, torch.float32).requires_grad_(False).eval()
        self.tokenizer = tokenizer
        # latent models must not clip x0 to [-1, 1]; SD1.5's config says so, older copies may not
        self.scheduler_config = {"clip_sample": False, **dict(scheduler_config)}
        self.model_path = model_path
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def load(cls, path: str, *, device: str | None = None, dtype: str = "auto", lora: str | None = None,
             local_files_only: bool | None = None, revision: str | None = None) -> SDBackend:
        """Load the components of an SD1.5-layout model from ``path`` (hub id or local directory)."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        local = Path(path).is_dir()
        if not local and ("/" not in str(path) or str(path).startswith((".", "/"))):
            raise ValueError(f"{path} is neither a local model directory nor a hub id like 'org/name'")
        if local_files_only is None:
            local_files_only = local or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        kw = {"local_files_only": local_files_only, "revision": revision}
        try:
            scheduler_config = dict(DDPMScheduler.load_config(path, subfolder="scheduler", **kw))
            tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw)
            text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw)
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32, **kw)
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
        except (OSError, ValueError) as err:
            hint = " (offline: put the model in a local directory or the hub cache)" if local_files_only else ""
            raise ValueError(f"could not load a Stable Diffusion model from {path}{hint}: {err}") from err
        backend = cls(unet, vae, text_encoder, tokenizer, scheduler_config, device=device, dtype=dtype,
                      model_path=str(path))
        if lora is not None:
            backend.load_lora(lora)
        return backend

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """``N`` prompts -> ``[N, 77, d]`` CLIP token states (truncated at the tokenizer's length)."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    @torch.no_grad()
    def images_to_latents(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> ``[B, 4, H/8, W/8]`` scaled latents (a VAE posterior sample)."""
        dist = self.vae.encode(images.to(self.device, torch.float32)).latent_dist
        return (dist.sample(generator) * self.vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def latents_to_images(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.device, torch.float32) / self.vae.config.scaling_factor).sample
