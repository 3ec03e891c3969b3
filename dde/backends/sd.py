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
             unet: str | None = None, local_files_only: bool | None = None, revision: str | None = None) -> SDBackend:
        """Load the components of a model in diffusers layout from ``path`` (hub id or local
        directory), optionally with a LoRA file, or with the UNet replaced by ``unet`` (a diffusers
        UNet folder, or a model folder with a ``unet/`` subfolder, e.g. a public Diffusion-DPO
        checkpoint). Weights load from safetensors only."""
        local = Path(path).is_dir()
        if not local and ("/" not in str(path) or str(path).startswith((".", "/"))):
            raise ValueError(f"{path} is neither a local model directory nor a hub id like 'org/name'")
        if local_files_only is None:
            local_files_only = local or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        kw = {"local_files_only": local_files_only, "revision": revision}
        unet_file = unet is not None and Path(unet).is_file()  # a full fine-tune's unet.safetensors
        try:
            parts = cls._load_components(path, kw)
            if unet is not None and not unet_file:
                parts["unet"] = _load_unet(unet, kw)
        except (OSError, ValueError) as err:
            if local:
                raise ValueError(f"could not load a {cls.title} model from the folder {path}: {err}") from err
            why = ("it is not in the local hub cache and HF_HUB_OFFLINE is set" if local_files_only
                   else "the hub did not serve it (removed, misspelt, private, or no network)")
            raise ValueError(f"could not load the hub model {path!r}: {why}. Pass a local diffusers folder instead "
                             f"(a copy saved with save_pretrained, e.g. --model /models/{Path(str(path)).name}); the "
                             f"public SD1.5 weights are stable-diffusion-v1-5/stable-diffusion-v1-5") from None
        backend = cls(**parts, device=device, dtype=dtype, model_path=str(path))
        backend.check_prediction_type()
        if unet_file:
            backend.load_unet_weights(unet)
        if lora is not None:
            backend.load_lora(lora)
        return backend

    title = "Stable Diffusion 1.5"

    @staticmethod
    def _load_components(path: str, kw: dict) -> dict:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        w = {**kw, "use_safetensors": True}  # weights from safetensors only: nothing is unpickled
        return {"scheduler_config": dict(DDPMScheduler.load_config(path, subfolder="scheduler", **kw)),
                "tokenizer": CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw),
                "text_encoder": CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **w),
                "vae": AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32, **w),
                "unet": UNet2DConditionModel.from_pretrained(path, subfolder="unet", **w)}

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


def _load_unet(path: str, kw: dict):
    from diffusers import UNet2DConditionModel

    sub = "unet" if (Path(path) / "unet" / "config.json").is_file() else None
    if Path(path).is_dir() and not (Path(path) / (sub or "") / "config.json").is_file():
        raise ValueError(f"{path} is not a diffusers UNet folder (no config.json, nor unet/config.json)")
    return UNet2DConditionModel.from_pretrained(path, subfolder=sub, use_safetensors=True, **kw)


class SDXLBackend(SDBackend):
    """Stable Diffusion XL: two CLIP text encoders (penultimate hidden states, concatenated), the
    second one's pooled projection and the size/crop ``time_ids`` as added conditions. The prompt
    encoding is a dict (``prompt_embeds``, ``text_embeds``, ``time_ids``); the empty prompt is encoded
    like any other for the unconditional branch. LoRA targets the UNet's attention projections."""

    name = "sdxl"
    title = "Stable Diffusion XL"
    default_guidance = 5.0

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, *, text_encoder_2, tokenizer_2,
                 device: str | None = None, dtype: str = "auto", model_path: str | None = None) -> None:
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler_config, device=device, dtype=dtype,
                         model_path=model_path)
        self.text_encoder_2 = text_encoder_2.to(self.device, self.dtype).requires_grad_(False).eval()
        self.tokenizer_2 = tokenizer_2

    @staticmethod
    def _load_components(path: str, kw: dict) -> dict:
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        parts = SDBackend._load_components(path, kw)
        parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2", **kw)
        parts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2",
                                                                             use_safetensors=True, **kw)
        return parts

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        states = []
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(self.device)
            out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
        pooled = out.text_embeds  # the second encoder's pooled projection
        size = self.latent_shape()[-1] * self.vae_scale
        time_ids = torch.tensor([[size, size, 0, 0, size, size]] * len(prompts), device=self.device, dtype=self.dtype)
        return {"prompt_embeds": torch.cat(states, dim=-1), "text_embeds": pooled, "time_ids": time_ids}

    def _unet_forward(self, unet: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        return unet(x_t, t, encoder_hidden_states=cond["prompt_embeds"],
                    added_cond_kwargs={"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}).sample
