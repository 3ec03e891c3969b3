"""Image-text scorers behind one interface, loaded once and cached; nothing is fetched at run time.

- judge: the toy world's judge (dde.toy.judge); units: judge total in [0, 1].
- clip: an open_clip model with weights from a local file; units: 100 x cosine(image, text),
  clipped at 0.
- hps: HPS v2, an open_clip ViT-H-14 built without weights plus the HPS checkpoint from a local
  path; units: 100 x cosine (the HPS v2 paper's scale; the raw cosine is score / 100).
- pickscore: a transformers CLIPModel and processor from a local directory or hub id; units:
  logit_scale.exp() x cosine (PickScore's own scale, about 20-23 for real images).

``score(images, prompts)`` takes uint8 ``[N, H, W, 3]`` arrays (or PIL images) and N prompts and
returns float64 ``[N]``. A missing checkpoint raises ValueError saying which file to put where.
Checkpoints load with ``torch.load(weights_only=True)``: no user file is unpickled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HPS_HINT = ("download HPS_v2_compressed.pt (or HPS_v2.1_compressed.pt) from the HPSv2 release and pass its path "
            "(--hps-checkpoint, or DDE_HPS_CHECKPOINT)")


@dataclass(frozen=True)
class ScorerInfo:
    name: str
    units: str
    source: str


def _as_pil(images) -> list[Image.Image]:
    return [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images]


def _check(images, prompts) -> None:
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")


class JudgeScorer:
    info = ScorerInfo("judge", "judge total in [0, 1]", "dde.toy.judge")

    def judgements(self, images, prompts: Sequence[str]) -> list:
        """The judge's full verdicts (per-attribute scores and correctness)."""
        from dde.toy.judge import judge

        _check(images, prompts)
        return [judge(np.asarray(im), p) for im, p in zip(images, prompts)]

    def score(self, images, prompts: Sequence[str]) -> np.ndarray:
        return np.array([j.total for j in self.judgements(images, prompts)], dtype=np.float64)


class OpenClipScorer:
    """CLIP score (and HPS v2) through open_clip; ``checkpoint`` is a local state-dict file."""

    def __init__(self, model_name: str, checkpoint: str | Path | None, *, name: str = "clip",
                 hint: str = "pass a local open_clip checkpoint file", device: str = "cpu") -> None:
        import open_clip

        if checkpoint is None or not Path(checkpoint).is_file():
            given = checkpoint or "(none given)"
            raise ValueError(f"the {name} scorer needs its checkpoint: {given} is missing; {hint}")
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"{checkpoint} does not fit open_clip {model_name}: missing {missing[:3]}")
        self.model, self.preprocess = model.eval().to(device), preprocess
        self.tokenizer, self.device = open_clip.get_tokenizer(model_name), device
        self.info = ScorerInfo(name, "100 x cosine(image, text)", f"open_clip {model_name} + {Path(checkpoint).name}")

    @torch.no_grad()
    def score(self, images, prompts: Sequence[str]) -> np.ndarray:
        _check(images, prompts)
        pixels = torch.stack([self.preprocess(im) for im in _as_pil(images)]).to(self.device)
        img = self.model.encode_image(pixels)
        txt = self.model.encode_text(self.tokenizer(list(prompts)).to(self.device))
        cos = torch.nn.functional.cosine_similarity(img.float(), txt.float(), dim=-1)
        return (100.0 * cos.clamp_min(0)).cpu().double().numpy()


class PickScorer:
    """PickScore: a CLIP model fine-tuned on Pick-a-Pic, through transformers."""

    def __init__(self, model: str, *, processor: str | None = None, device: str = "cpu") -> None:
        from transformers import AutoProcessor, CLIPModel

        local_only = Path(model).is_dir() or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
        try:
            self.processor = AutoProcessor.from_pretrained(processor or model, local_files_only=local_only)
            self.model = CLIPModel.from_pretrained(model, local_files_only=local_only).eval().to(device)
        except (OSError, ValueError) as err:
            raise ValueError(f"the pickscore scorer could not load {model}: put the PickScore_v1 model (and the "
                             f"CLIP-H processor) in a local directory and pass it ({err})") from err
        self.device = device
        self.info = ScorerInfo("pickscore", "logit_scale.exp() x cosine", f"transformers CLIPModel {model}")

    @torch.no_grad()
    def score(self, images, prompts: Sequence[str]) -> np.ndarray:
        _check(images, prompts)
        pix = self.processor(images=_as_pil(images), return_tensors="pt")["pixel_values"].to(self.device)
        tok = self.processor(text=list(prompts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        img = self.model.get_image_features(pixel_values=pix)
        txt = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok.get("attention_mask"))
        img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))
        cos = torch.nn.functional.cosine_similarity(img.float(), txt.float(), dim=-1)
        return (self.model.logit_scale.exp() * cos).cpu().double().numpy()


@lru_cache(maxsize=8)
def get_scorer(name: str, path: str | None = None, model_name: str | None = None, device: str = "cpu"):
    """The scorer ``name`` (judge, clip, hps, pickscore), loaded once per (name, path, model, device)."""
    if name == "judge":
        return JudgeScorer()
    if name == "clip":
        return OpenClipScorer(model_name or "ViT-L-14", path, name="clip", device=device)
    if name == "hps":
        return OpenClipScorer(model_name or "ViT-H-14", path or os.environ.get("DDE_HPS_CHECKPOINT"), name="hps",
                              hint=HPS_HINT, device=device)
    if name == "pickscore":
        return PickScorer(path or "yuvalkirstain/PickScore_v1", device=device)
    raise ValueError(f"unknown scorer {name!r}; known: judge, clip, hps, pickscore")
