"""The backend interface that training, analysis and the app use without knowing the model.

A backend owns a UNet (epsilon prediction), a prompt encoder, the map between images and latents
(identity for the toy world, the VAE for SD) and its diffusers scheduler config. It offers:

- ``encode_prompts(prompts) -> cond`` (the empty prompt "" is the unconditional input);
- ``images_to_latents`` / ``latents_to_images`` (images ``[B, 3, H, W]`` in [-1, 1]);
- ``predict_eps(x_t, t, cond)`` with the policy, and inside ``with backend.reference():`` with the
  reference (LoRA adapters disabled, or a frozen copy for full fine-tunes);
- LoRA attach / save / load through peft;
- ``sample(...)``: seeded DDIM sampling with classifier-free guidance, optionally returning the
  DDIM x0 prediction at every step. Image i of a call uses noise from seed + i, so base and tuned
  models (and any batch size) start from the same noise.

Timesteps are diffusers training indices (t = 0 least noisy).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler

from dde import ddim
from dde.io import atomic_save_safetensors
from dde.limits import APP, SAMPLING, number, shown
from dde.schedule import NoiseSchedule

UNET_PREFIX = "unet."  # diffusers' key prefix for the UNet's LoRA layers
LORA_METADATA_KEY = "lora_adapter_metadata"  # where diffusers reads a LoRA's LoraConfig


def _lora_config(meta: dict[str, str], path: Path) -> dict:
    """rank, alpha and target modules of a LoRA file, from this tool's metadata or diffusers'."""
    import json

    if "lora_config" in meta:
        return json.loads(meta["lora_config"])
    if LORA_METADATA_KEY in meta:
        packed = json.loads(meta[LORA_METADATA_KEY])
        config = {k[len(UNET_PREFIX):]: v for k, v in packed.items() if k.startswith(UNET_PREFIX)}
        if {"r", "lora_alpha", "target_modules"} <= set(config):
            return config
    raise ValueError(f"{path} carries no LoRA config (neither this tool's lora_config nor diffusers' "
                     "lora_adapter_metadata): not a LoRA this tool can load")


@dataclass
class SampleOutput:
    images: torch.Tensor  # [B, 3, H, W] in [-1, 1], float32, CPU
    timesteps: list[int]  # the DDIM timesteps visited, descending
    x0_latents: list[torch.Tensor] = field(default_factory=list)  # per step [B, C, h, w] (if asked)


class Backend:
    """Common machinery; subclasses set ``unet``, ``scheduler_config``, ``device``, ``dtype`` and
    implement ``encode_prompts``, ``images_to_latents`` and ``latents_to_images``."""

    name = "base"
    lora_target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    default_guidance = 7.5  # classifier-free guidance scale when a caller gives none

    unet: torch.nn.Module
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype

    def __init__(self) -> None:
        self.frozen_reference: torch.nn.Module | None = None
        self.policy_module: torch.nn.Module | None = None
        self._use_reference = False
        self.lora_config: dict | None = None

    # ----- to implement ------------------------------------------------------------------
    def encode_prompts(self, prompts: list[str]) -> Any:
        raise NotImplementedError

    def images_to_latents(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> latents; any random draw (a VAE posterior sample)
        takes ``generator``, so a training step is a function of its seed."""
        raise NotImplementedError

    def latents_to_images(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of the UNet's input."""
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, size, size)

    def _unet_forward(self, unet: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        return unet(x_t, t, encoder_hidden_states=cond).sample

    # ----- shared --------------------------------------------------------------------------
    @functools.cached_property
    def schedule(self) -> NoiseSchedule:
        """The noise schedule of the backend's scheduler config (built once)."""
        return NoiseSchedule.from_scheduler_config(self.scheduler_config)

    def validate_prompt(self, prompt: str) -> str:
        """Return the prompt stripped, or raise ValueError with a message for the user."""
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt must be text, got {shown(prompt)}")
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        limit = int(APP["prompt_chars"].hi)
        if len(prompt) > limit:
            raise ValueError(f"the prompt is {len(prompt)} characters long; the limit is {limit} characters")
        if "\x00" in prompt:
            raise ValueError("the prompt contains a NUL character")
        return prompt.strip()

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """``[B, C, h, w]`` noisy latents at timesteps ``t`` ``[B]`` -> predicted noise, same shape.
        Uses the reference model inside :meth:`reference`, else the policy."""
        # the trainer may wrap the UNet (DDP, autocast): the reference goes through the same wrapper
        # (adapters disabled) or a frozen copy wrapped alike, so both run at the same precision
        policy = self.policy_module if self.policy_module is not None else self.unet
        unet = self.frozen_reference if self._use_reference and self.frozen_reference is not None else policy
        x_t, t = x_t.to(self.device, self.dtype), t.to(self.device)
        out = self._unet_forward(unet, x_t, t, cond)
        if self.prediction_type == "epsilon":
            return out
        ab = self.schedule.alpha_bar_at(t.cpu())  # a v-prediction model's output converted at this boundary
        return ddim.eps_from_prediction(self.prediction_type, x_t, out, ab)

    @property
    def prediction_type(self) -> str:
        """What the UNet predicts (its scheduler config's ``prediction_type``): epsilon or v_prediction;
        :meth:`predict_eps` always returns eps. Anything else is refused when the model loads."""
        return self.scheduler_config.get("prediction_type", "epsilon")

    def check_prediction_type(self) -> None:
        if self.prediction_type not in ddim.PREDICTION_TYPES:
            raise ValueError(f"this model predicts {self.prediction_type!r}; this tool handles "
                             f"{', '.join(ddim.PREDICTION_TYPES)}")

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """Run :meth:`predict_eps` with the reference model: adapters disabled for LoRA, the frozen
        copy for full fine-tunes, the model itself when nothing is being tuned."""
        has_adapters = getattr(self.unet, "_hf_peft_config_loaded", False)
        previous = self._use_reference
        self._use_reference = True
        if has_adapters:
            self.unet.disable_adapters()
        try:
            with torch.no_grad():
                yield
        finally:
            if has_adapters:
                self.unet.enable_adapters()
            self._use_reference = previous

    def prepare_full_finetune(self) -> list[torch.nn.Parameter]:
        """Keep a frozen copy as the reference and make every UNet weight trainable."""
        if self.lora_config is not None:
            raise ValueError("this backend already has a LoRA adapter; a full fine-tune needs a plain model")
        self.frozen_reference = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.unet.requires_grad_(True)
        return [p for p in self.unet.parameters() if p.requires_grad]

    # ----- LoRA ------------------------------------------------------------------------------
    def attach_lora(self, rank: int = 8, alpha: float | None = None, *, target_modules=None,
                    init: str | bool = "gaussian") -> list[torch.nn.Parameter]:
        """Add a fresh LoRA adapter to the UNet (base weights frozen); returns the trainable ones."""
        from peft import LoraConfig

        if not 1 <= int(rank) <= 512:
            raise ValueError(f"LoRA rank must lie in [1, 512], got {rank}")
        config = {"r": int(rank), "lora_alpha": float(alpha if alpha is not None else rank),
                  "target_modules": list(target_modules or self.lora_target_modules), "init_lora_weights": init}
        self.unet.requires_grad_(False)
        self.unet.add_adapter(LoraConfig(**config))
        self.lora_config = {k: v for k, v in config.items() if k != "init_lora_weights"}
        return [p for p in self.unet.parameters() if p.requires_grad]

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        if self.lora_config is None:
            raise ValueError("no LoRA adapter is attached")
        return {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(self.unet).items()}

    def save_lora(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        """Save the adapter as safetensors in the layout diffusers' ``load_lora_weights`` reads: keys
        ``unet.<module>.lora_A.weight`` / ``lora_B``, and the adapter's LoraConfig (rank, alpha, target
        modules) under ``lora_adapter_metadata``, so diffusers scales it exactly as this tool does.
        This tool's own metadata (config, backend, base model) rides along."""
        import json

        config = dict(self.lora_config)
        meta = {"format": "pt", LORA_METADATA_KEY: json.dumps({f"{UNET_PREFIX}{k}": v for k, v in config.items()},
                                                             sort_keys=True),
                "lora_config": json.dumps(config), "backend": self.name,
                "base_model": str(getattr(self, "model_path", "")), **(metadata or {})}
        state = {UNET_PREFIX + k: v for k, v in self.lora_state_dict().items()}
        return atomic_save_safetensors(state, path, metadata=meta)

    def load_lora(self, path: str | Path) -> None:
        """Attach a LoRA adapter from a safetensors file: this tool's (``unet.``-prefixed keys, or the
        unprefixed keys of its earlier format) or diffusers' (``lora_adapter_metadata``). A file for
        another backend or model is refused with a message."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"LoRA file {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                state = {k: handle.get_tensor(k) for k in handle.keys()}
        except Exception as err:
            raise ValueError(f"{path} is not a readable safetensors file ({err})") from err
        if meta.get("backend") not in (None, self.name):
            raise ValueError(f"{path} is a LoRA for the {meta['backend']} backend, not {self.name}")
        config = _lora_config(meta, path)
        if self.lora_config is None:
            self.attach_lora(config["r"], config["lora_alpha"], target_modules=config["target_modules"], init=False)
        self.set_lora_state(state, where=str(path))

    def set_lora_state(self, state: dict[str, torch.Tensor], where: str = "the LoRA") -> None:
        """Load adapter tensors (keys with or without the ``unet.`` prefix) into the attached adapter;
        tensors that do not fit are refused by name."""
        from peft.utils import set_peft_model_state_dict

        state = {k[len(UNET_PREFIX):] if k.startswith(UNET_PREFIX) else k: v for k, v in state.items()
                 if not k.startswith(("text_encoder.", "text_encoder_2."))}
        own = self.lora_state_dict()
        bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
        if bad or len(state) != len(own):
            raise ValueError(f"{where} does not fit this model: {len(bad)} mismatched tensors, e.g. {bad[:2]}")
        result = set_peft_model_state_dict(self.unet, state)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{where} has tensors this model lacks: {result.unexpected_keys[:3]}")

    def merge_lora(self) -> None:
        """Fold the attached LoRA into the UNet's weights and drop the adapter layers: the same
        outputs up to float rounding, at the base model's speed (the unmerged adapter made toy
        sampling about 1.5x slower). For inference only: the adapter can no longer be trained or
        saved afterwards."""
        if self.lora_config is None:
            raise ValueError("no LoRA adapter is attached")
        self.unet.fuse_lora()
        self.unet.unload_lora()
        self.lora_config = None

    def load_unet_weights(self, path: str | Path) -> None:
        """Replace the UNet's weights by a full fine-tune's ``unet.safetensors`` (every tensor, the
        same shapes); anything else is refused with a message."""
        from safetensors.torch import load_file

        path = Path(path)
        try:
            state = load_file(str(path))
        except Exception as err:
            raise ValueError(f"{path} is not a readable safetensors file ({err})") from err
        own = self.unet.state_dict()
        bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
        missing = [k for k in own if k not in state]
        if bad or missing:
            raise ValueError(f"{path} is not a full UNet for this model: {len(bad)} unknown or mis-shaped and "
                             f"{len(missing)} missing tensors (e.g. {(bad + missing)[:2]})")
        self.unet.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})

    # ----- sampling -----------------------------------------------------------------------------
    def initial_noise(self, n: int, seed: int) -> torch.Tensor:
        """``[n, C, h, w]`` float32 noise, image i from ``torch.Generator().manual_seed(seed + i)``."""
        shape = self.latent_shape()
        return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)])

    @torch.no_grad()
    def sample(self, prompts: list[str], *, seed: int = 0, seeds: list[int] | None = None, steps: int = 25,
               guidance: float | None = None, eta: float = 0.0, negative_prompt: str = "", return_x0: bool = False,
               initial_noise: torch.Tensor | None = None, callback=None) -> SampleOutput:
        """DDIM with classifier-free guidance. ``prompts``: one per image; image i starts from the
        noise of ``seeds[i]`` if given, else of ``seed + i``; ``initial_noise`` (``[B, C, h, w]``)
        overrides both. ``guidance`` None uses the backend's ``default_guidance``. With ``eta > 0`` the
        per-step noise is drawn for the whole batch, so only eta = 0 keeps images independent of batching.
        ``callback(i, steps)`` after each step (progress bars); it may raise to cancel."""
        steps = number(steps, SAMPLING["steps"])
        guidance = self.default_guidance if guidance is None else number(guidance, SAMPLING["guidance"])
        prompts = [self.validate_prompt(p) for p in prompts]
        # predict_eps hands the scheduler eps, whatever the UNet predicts natively
        scheduler = DDIMScheduler.from_config({**self.scheduler_config, "prediction_type": "epsilon"})
        scheduler.set_timesteps(int(steps))
        cond = self.encode_prompts(prompts)
        uncond = self.encode_prompts([negative_prompt] * len(prompts)) if guidance != 1.0 else None
        if initial_noise is None and seeds is not None:
            if len(seeds) != len(prompts):
                raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
            initial_noise = torch.cat([self.initial_noise(1, int(s)) for s in seeds])
        elif initial_noise is None:
            initial_noise = self.initial_noise(len(prompts), seed)
        if initial_noise.shape != (len(prompts), *self.latent_shape()):
            raise ValueError(f"initial noise has shape {tuple(initial_noise.shape)}, expected "
                             f"{(len(prompts), *self.latent_shape())}")
        latents = initial_noise.to(self.device, self.dtype) * scheduler.init_noise_sigma
        out = SampleOutput(images=torch.empty(0), timesteps=[int(t) for t in scheduler.timesteps])
        for i, t in enumerate(scheduler.timesteps):
            eps = self._guided_eps(latents, t, cond, uncond, guidance)
            step = scheduler.step(eps, t, latents, eta=eta,
                                  generator=torch.Generator().manual_seed(seed * 7919 + i) if eta > 0 else None)
            latents = step.prev_sample
            if return_x0:
                out.x0_latents.append(step.pred_original_sample.float().cpu())
            if callback is not None:
                callback(i + 1, int(steps))
        out.images = self.latents_to_images(latents).float().cpu().clamp(-1, 1)
        return out

    def _guided_eps(self, latents, t, cond, uncond, guidance) -> torch.Tensor:
        n = latents.shape[0]
        tt = torch.full((n,), int(t), dtype=torch.long)
        if uncond is None:
            return self.predict_eps(latents, tt, cond)
        both = self.predict_eps(torch.cat([latents, latents]), torch.cat([tt, tt]), self.cat_cond(uncond, cond))
        eps_u, eps_c = both.chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    def cat_cond(self, a: Any, b: Any) -> Any:
        """Concatenate two prompt encodings along the batch (dicts concatenate per key)."""
        if isinstance(a, dict):
            return {k: torch.cat([a[k], b[k]]) for k in a}
        return torch.cat([a, b])
