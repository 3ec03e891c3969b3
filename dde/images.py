"""Images between the uint8 arrays people and scorers use and the float tensors models use."""

from __future__ import annotations

import numpy as np


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 ``[..., H, W, 3]`` -> float32 ``[..., 3, H, W]`` in [-1, 1]."""
    x = images.astype(np.float32) / 127.5 - 1.0
    return np.moveaxis(x, -1, -3)


def to_uint8(x) -> np.ndarray:
    """float ``[..., 3, H, W]`` in [-1, 1] -> uint8 ``[..., H, W, 3]`` (clipped)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float32), -3, -1)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
