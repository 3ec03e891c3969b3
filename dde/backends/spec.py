"""Model specs: the one parser of what users type to name a model, for the CLI, the app and the
benchmarks.

    base                         the base model of the chosen backend (toy: the shipped one)
    dde | tuned, dpo             toy world: the shipped DDE-tuned and Diffusion-DPO-tuned LoRAs
    <file>.safetensors           a LoRA saved by this tool or diffusers, or a full fine-tune's UNet
    <run folder>                 a training run: its final weights, else its newest checkpoint's
    <toy model folder>           a toy model directory (model.json)
    <diffusers UNet folder>      sd/sdxl: a UNet folder (config.json), or a model folder with unet/
    sd:<model>[+<weights>]       Stable Diffusion 1.5 from a hub id or local diffusers folder, with
    sdxl:<model>[+<weights>]     optional weights after '+' (any of the four weight forms above)

Parsing checks types and paths and builds a :class:`ModelSpec` without loading anything, so a bad
spec fails before any model loads; :func:`load_model` loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dde.limits import shown
from dde.run import LORA, WEIGHT_FILES, RunDir
from dde.toy import ASSETS

SHIPPED = {"dde": ASSETS / "toy-dde" / LORA, "dpo": ASSETS / "toy-dpo" / LORA}
ALIASES = {"tuned": "dde"}
BACKENDS = ("toy", "sd", "sdxl")


@dataclass(frozen=True)
class ModelSpec:
    backend: str  # toy, sd or sdxl
    base: str | None = None  # model folder or hub id; None = the shipped toy base model
    weights: Path | None = None  # LoRA file, full UNet weights file, or diffusers UNet folder
    text: str = ""  # as typed

    @property
    def kind(self) -> str:
        """``base`` (no weights), ``lora``, or ``unet`` (full fine-tune weights or a UNet folder)."""
        if self.weights is None:
            return "base"
        if self.weights.is_dir():
            return "unet"
        return "lora" if is_lora_file(self.weights) else "unet"

    @property
    def label(self) -> str:
        """A short readable name (not unique by itself; see :func:`unique_labels`)."""
        text = self.text.strip()
        if text in ("base", *SHIPPED, *ALIASES) or not text:
            return ALIASES.get(text, text) or "base"
        if self.weights is None:
            return Path(str(self.base)).name or str(self.base)
        w = self.weights
        run = RunDir.of_weights(w)
        if run is not None:  # named by its run: the final weights, or "<run>@step-N"
            return run.path.name if w.parent == run.final else f"{run.path.name}@{w.parent.name}"
        if w.name in WEIGHT_FILES:
            return w.parent.name
        return w.stem if w.suffix == ".safetensors" else w.name


def is_lora_file(path: Path) -> bool:
    """A safetensors file of LoRA tensors (this tool's metadata, or lora_A/lora_B/lora_up/lora_down keys)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            if "lora_config" in (handle.metadata() or {}):
                return True
            return any("lora" in k for k in handle.keys())
    except Exception as err:  # truncated or not safetensors at all
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from err


def _text(value, what: str = "a model") -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be given as text, got {shown(value)}")
    text = value.strip()
    if not text:
        raise ValueError(f"no {what.removeprefix('a ').removeprefix('the ')} given")
    if "\x00" in text:
        raise ValueError(f"{what} must not contain a NUL character")
    if len(text) > 4096:
        raise ValueError(f"{what} is {len(text)} characters long; the limit is 4096")
    return text


def _weights(text: str, backend: str) -> tuple[Path | None, str | None]:
    """(weights, toy model folder) for a path typed after a base model, or alone."""
    path = Path(text).expanduser()
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise ValueError(f"weights file {text} does not exist")
        return path, None
    if not path.exists():
        raise ValueError(f"{text!r} does not exist (expected a .safetensors file, a run folder or a model folder)")
    if RunDir.is_run(path) or (path / "final").is_dir() or (path / "checkpoints").is_dir():
        found = RunDir(path).latest_weights()
        if found is None:
            raise ValueError(f"run folder {text} has no weights yet (no final/ and no checkpoint)")
        return found, None
    if (path / "model.json").is_file():
        if backend != "toy":
            raise ValueError(f"{text} is a toy model folder, not weights for the {backend} backend")
        return None, str(path)
    if (path / "config.json").is_file() or (path / "unet" / "config.json").is_file():
        if backend == "toy":
            raise ValueError(f"{text} is a diffusers UNet folder; the toy backend takes toy model folders")
        return path, None
    raise ValueError(f"{text} is not a LoRA or UNet .safetensors file, a run folder, a toy model folder or a "
                     f"diffusers UNet folder")


def parse_model_spec(value, *, backend: str = "toy", base: str | None = None) -> ModelSpec:
    """Parse what a user typed (see the module docstring). ``backend`` and ``base`` are the defaults
    of the app or command (a ``sd:``/``sdxl:`` prefix overrides both). Raises ValueError."""
    text = _text(value)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    for kind in ("sdxl", "sd"):
        if text.startswith(kind + ":"):
            model, _, extra = text[len(kind) + 1:].partition("+")
            model = _text(model, f"the {kind} model")
            weights = _weights(extra.strip(), kind)[0] if extra.strip() else None
            return ModelSpec(kind, model, weights, text)
    name = ALIASES.get(text, text)
    if name == "base":
        return ModelSpec(backend, base, None, text)
    if name in SHIPPED:
        if backend != "toy":
            raise ValueError(f"{text!r} names a shipped toy-world LoRA; the {backend} backend needs a path")
        if not SHIPPED[name].is_file():
            raise ValueError(f"the shipped {name} LoRA ({SHIPPED[name]}) is missing")
        return ModelSpec("toy", base, SHIPPED[name], text)
    weights, toy_dir = _weights(text, backend)
    if toy_dir is not None:
        return ModelSpec("toy", toy_dir, None, text)
    if backend == "toy" and base is None and weights is not None and weights.is_file():
        base = lora_base_model(weights)
    return ModelSpec(backend, base, weights, text)


def lora_base_model(path) -> str | None:
    """The base model a weights file was trained on (its ``base_model`` metadata), if recorded and present."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception:  # an unreadable file is reported by the loader with a clear message
        return None
    base = meta.get("base_model") or json.loads(meta.get("config", "{}")).get("model")
    return base if base and Path(base).is_dir() else None


def load_model(spec: ModelSpec | str, *, backend: str = "toy", base: str | None = None, device: str | None = None):
    """Load a :class:`ModelSpec` (or parse a spec string first) into a backend."""
    from dde.backends import load_backend

    if isinstance(spec, str):
        spec = parse_model_spec(spec, backend=backend, base=base)
    kwargs = {"device": device} if device else {}
    kind = spec.kind
    if kind == "lora":
        kwargs["lora"] = str(spec.weights)
    elif kind == "unet":
        kwargs["unet"] = str(spec.weights)
    return load_backend(spec.backend, spec.base, **kwargs)


def unique_labels(specs: list[ModelSpec]) -> list[str]:
    """Readable labels, made unique: two models are never merged under one name."""
    labels = [s.label for s in specs]
    for label in set(labels):
        same = [j for j, other in enumerate(labels) if other == label]
        if len(same) > 1:
            for n, j in enumerate(same):
                labels[j] = f"{label} ({n + 1}: {specs[j].text})" if specs[j].text else f"{label} ({n + 1})"
    return labels
