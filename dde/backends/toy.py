"""The embedded world's backend: pixels are the latents, a tiny CLIP text encoder, a small UNet."""

from __future__ import annotations

from pathlib import Path

import torch

from dde.backends.base import Backend
from dde.toy import DEFAULT_BASE, FALLBACK_GUIDANCE
from dde.toy.model import SCHEDULER_CONFIG, load_model_dir, unet_input


class ToyBackend(Backend):
    name = "toy"
    # attention and the ResNet convolutions: the toy UNet attends only at 8x8
    lora_target_modules = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "conv1", "conv2")
    default_guidance = FALLBACK_GUIDANCE  # unless the model directory records its own

    def __init__(self, unet, text_encoder, tokenizer, *, scheduler_config: dict | None = None,
                 model_path: str | Path | None = None, device: str = "cpu") -> None:
        super().__init__()
        self.unet, self.text_encoder, self.tokenizer = unet, text_encoder, tokenizer
        self.scheduler_config = dict(scheduler_config or SCHEDULER_CONFIG)
        self.model_path = model_path
        self.device, self.dtype = torch.device(device), torch.float32
        self.unet.to(self.device)
        self.text_encoder.to(self.device).requires_grad_(False)

    @classmethod
    def load(cls, path: str | Path | None = None, *, lora: str | Path | None = None, unet: str | Path | None = None,
             device: str = "cpu") -> ToyBackend:
        """Load a toy model directory (default: the shipped base model), optionally with a LoRA or
        with a full fine-tune's UNet weights (``unet``: a run's ``unet.safetensors``)."""
        path = Path(path) if path else DEFAULT_BASE
        model, text_encoder, tokenizer, meta = load_model_dir(path)
        backend = cls(model, text_encoder, tokenizer, scheduler_config=meta.get("scheduler"), model_path=path,
                      device=device)
        backend.check_prediction_type()
        if meta.get("default_guidance") is not None:
            backend.default_guidance = float(meta["default_guidance"])
        if unet is not None:
            backend.load_unet_weights(unet)
        if lora is not None:
            backend.load_lora(lora)
        return backend

    def validate_prompt(self, prompt: str) -> str:
        prompt = super().validate_prompt(prompt)
        unknown = self.tokenizer.unknown_words(prompt)
        if len(unknown) == len(self.tokenizer.words(prompt)):
            raise ValueError(f"the toy model knows none of the words in {prompt!r}; try e.g. "
                             "'a big red circle on the left on a black background'")
        return prompt

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """``N`` prompts -> ``[N, 16, hidden]`` token states (the empty prompt is unconditional)."""
        ids = self.tokenizer(list(prompts)).to(self.device)
        return self.text_encoder(input_ids=ids).last_hidden_state

    def latent_shape(self) -> tuple[int, int, int]:
        """``(3, 32, 32)``: pixels (the UNet may read two coordinate planes more, added per call)."""
        size = self.unet.config.sample_size
        return (self.unet.config.out_channels, size, size)

    def _unet_forward(self, unet: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        return unet(unet_input(self.unet, x_t), t, encoder_hidden_states=cond).sample

    def images_to_latents(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return images.to(self.device, self.dtype)

    def latents_to_images(self, latents: torch.Tensor) -> torch.Tensor:
        return latents
