"""Typed training configuration: one dataclass for the CLI, the app and the benchmarks.

Every field has a help text (``field(metadata={"help": ...})``) and ``__post_init__`` validates
ranges and names, so a bad value fails before any model loads. YAML round trip:
:func:`load_config` / :func:`save_config`; presets live in ``configs/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from dde import credit


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
    weight_mode: str = _f("inside", "inside: w(t) multiplies delta in the sigmoid; importance: draw t ~ w, use w = 1")
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
                         ("warmup_steps", 0)):
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


def from_dict(values: dict) -> TrainConfig:
    """Build a config, rejecting unknown keys by name."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
    return TrainConfig(**values)


def load_config(path: str | Path, **overrides) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of config keys")
    return from_dict({**values, **overrides})


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    from dde.io import atomic_write_text

    return atomic_write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), path)


def replace(cfg: TrainConfig, **changes) -> TrainConfig:
    return dataclasses.replace(cfg, **changes)
