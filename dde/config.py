"""Typed training configuration: one dataclass for the CLI, the app and the benchmarks.

Every field has a help text (``field(metadata={"help": ...})``) and ``__post_init__`` validates
ranges and names, so a bad value fails before any model loads. YAML round trip:
:func:`load_config` / :func:`save_config`; presets live in ``configs/``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from dde import credit
from dde.limits import shown


def _f(default: Any, help: str, **kw):  # noqa: A002 - "help" reads best at the call sites
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    # model
    backend: str = _f("toy", "model backend: toy (the embedded world), sd (Stable Diffusion 1.5) or sdxl")
    model: str | None = _f(None, "model directory or hub id; None = the shipped toy base model")
    device: str | None = _f(None, "cpu, cuda, cuda:1 ...; None picks cuda when available")
    mixed_precision: str = _f("no", "no, fp16 or bf16 (GPU only)")
    gradient_checkpointing: bool = _f(False, "trade compute for memory in the UNet")
    lora_rank: int = _f(8, "LoRA rank; 0 = full fine-tune with a frozen reference copy")
    lora_alpha: float | None = _f(None, "LoRA alpha; None = the rank (scale 1)")
    # method
    variant: str = _f("dde", "credit weight, one of dde.credit.REGISTRY")
    variant_params: dict = _f({}, "parameters of the variant (t_lo, t_hi, gamma, rho_min)")
    weight_mode: str = _f("inside", "inside: w(t) multiplies delta in the sigmoid, t drawn uniformly; importance: t "
                          "drawn in proportion to w, w kept inside, each pair's loss times p/q (the same objective)")
    objective: str = _f("preference", "preference (DPO-style loss) or sft (winners only)")
    beta: float = _f(500.0, "KL strength; the loss uses beta / 2 (Diffusion-DPO convention)")
    t_range: list = _f([0, 1000], "training timesteps [t_lo, t_hi)")
    calibration_batches: int = _f(8, "calibration pass batches (0 = Gaussian-ideal table)")
    calibration_bins: int = _f(50, "bins of the calibration table")
    calibration_decay: float = _f(0.95, "EMA decay per bin visit of the calibration table")
    # optimisation
    optimizer: str = _f("adamw", "adamw or adafactor")
    lr: float = _f(1e-4, "learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    warmup_steps: int = _f(0, "linear warm-up steps")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 = off)")
    batch_pairs: int = _f(16, "preference pairs per micro-batch (2x images)")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    steps: int = _f(200, "optimizer steps")
    seed: int = _f(0, "seed of data order, timesteps, noise and LoRA init")
    # data
    data: str | None = _f(None, "Pick-a-Pic-schema parquet file or folder; None = the shipped toy pairs")
    val_fraction: float = _f(0.05, "held-back fraction of pairs for validation")
    random_flip: bool = _f(False, "flip each pair horizontally with probability 1/2 (off for the toy world: "
                           "left/right are in the captions)")
    resolution: int | None = _f(None, "image size fed to the model; None = the backend's native size")
    # run
    output_dir: str = _f("runs/dde", "run directory (config, metrics, checkpoints)")
    checkpoint_every: int = _f(50, "steps between checkpoints")
    keep_checkpoints_every: int = _f(0, "also keep every checkpoint whose step is a multiple of this (learning "
                                     "curves); 0 = keep only the newest two")
    judge_prompts: int = _f(8, "toy world: at every checkpoint, judge this many fixed training-split prompts "
                            "sampled from fixed noise (judge.jsonl); 0 = off")
    max_skipped_steps: int = _f(20, "stop the run (status failed) after this many non-finite steps in a row")
    log_every: int = _f(1, "steps between metric rows")

    def __post_init__(self) -> None:
        errors = []
        if self.backend not in ("toy", "sd", "sdxl"):
            errors.append(f"backend must be toy, sd or sdxl, got {self.backend!r}")
        if self.variant not in credit.REGISTRY:
            errors.append(f"variant must be one of {', '.join(credit.REGISTRY)}, got {self.variant!r}")
        if self.weight_mode not in ("inside", "importance"):
            errors.append(f"weight_mode must be inside or importance, got {self.weight_mode!r}")
        if self.objective not in ("preference", "sft"):
            errors.append(f"objective must be preference or sft, got {self.objective!r}")
        if self.optimizer not in ("adamw", "adafactor"):
            errors.append(f"optimizer must be adamw or adafactor, got {self.optimizer!r}")
        if not isinstance(self.max_skipped_steps, int) or self.max_skipped_steps < 1:
            errors.append(f"max_skipped_steps must be an integer >= 1, got {self.max_skipped_steps!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            errors.append(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        for name, lo, hi in (("beta", 0, 1e7), ("lr", 0, 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and lo < value <= hi):
                errors.append(f"{name} must lie in ({lo}, {hi:g}], got {value!r}")
        for name, lo in (("steps", 1), ("batch_pairs", 1), ("grad_accum", 1), ("checkpoint_every", 1),
                         ("log_every", 1), ("lora_rank", 0), ("calibration_batches", 0), ("calibration_bins", 1),
                         ("warmup_steps", 0), ("keep_checkpoints_every", 0), ("judge_prompts", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                errors.append(f"{name} must be an integer >= {lo}, got {value!r}")
        if not (isinstance(self.t_range, (list, tuple)) and len(self.t_range) == 2
                and 0 <= int(self.t_range[0]) < int(self.t_range[1])):
            errors.append(f"t_range must be [t_lo, t_hi) with 0 <= t_lo < t_hi, got {self.t_range!r}")
        if not 0.0 <= self.calibration_decay < 1.0:
            errors.append(f"calibration_decay must lie in [0, 1), got {self.calibration_decay}")
        if not 0.0 <= self.val_fraction < 1.0:
            errors.append(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.steps > 1_000_000 or self.batch_pairs > 4096:
            errors.append("steps <= 1e6 and batch_pairs <= 4096, please")
        if errors:
            raise ValueError("invalid training config: " + "; ".join(errors))
        self.t_range = [int(self.t_range[0]), int(self.t_range[1])]

    def to_dict(self) -> dict:
        return asdict(self)


def field_help() -> dict[str, str]:
    """Field name -> help text (the CLI's --help and the app's form use it)."""
    return {f.name: f.metadata.get("help", "") for f in fields(TrainConfig)}


# ----- reading values as a user means them -----------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML with the 1.2 core schema's scalars: only true/false are booleans (``no`` stays the string
    'no'), and 1e-5, 1E5, .5 and 5. are floats (YAML 1.1 reads 1e-5 as a string)."""


_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag not in (
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """Parse YAML text with the 1.2 scalar rules of :class:`_Loader`."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` read as the type of field ``name``: numbers from any float notation for float
    fields, whole numbers only for int fields, yes/no/true/false for booleans, text for strings."""
    types = set(typing.get_args(annotation)) or {annotation}
    if value is None and type(None) in types:
        return None
    if bool in types:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if float in types:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return number
    if int in types:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a whole number, got {value!r}") from None
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    if str in types:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{name} must be text, got {value!r}")
        if isinstance(value, bool):  # a YAML 1.1 reader made "no" a boolean; mean the word
            return "yes" if value else "no"
        text = str(value)
        if "\x00" in text:
            raise ValueError(f"{name} must not contain a NUL character")
        return text
    if list in types and not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list, got {value!r}")
    if dict in types and not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping, got {value!r}")
    return value


def from_dict(values: dict) -> TrainConfig:
    """Build a config, rejecting unknown keys by name and reading each value as its field's type."""
    if not isinstance(values, dict):
        raise ValueError(f"a config must be a mapping of keys to values, got {shown(values)}")
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(hints)}")
    return TrainConfig(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def load_config(path: str | Path, **overrides) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        values = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of config keys")
    base = values.pop("base", None)  # a preset may name another preset it extends (path relative to it)
    if base is not None:
        parent = load_config(path.parent / str(base)).to_dict()
        values = {**parent, **values}
    return from_dict({**values, **overrides})


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    from dde.io import atomic_write_text

    return atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), path)


def replace(cfg: TrainConfig, **changes) -> TrainConfig:
    return dataclasses.replace(cfg, **changes)
