"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A reader (or a resumed run) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def _atomic(target: str | Path, write: Callable[[str], None]) -> Path:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; the result should read like any other file
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(text: str, target: str | Path) -> Path:
    return _atomic(target, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(obj: Any, target: str | Path) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", target)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], target: str | Path,
                            metadata: dict[str, str] | None = None) -> Path:
    return _atomic(target, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state into tensors (for safetensors) and JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {f"{i}/{k}": torch.as_tensor(v).detach().contiguous().cpu()
               for i, per_param in state["state"].items() for k, v in per_param.items()}
    return tensors, {"param_groups": state["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict) -> None:
    """Inverse of :func:`optimizer_state_tensors`."""
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split("/", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": groups["param_groups"]})
