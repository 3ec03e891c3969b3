"""The judge: a deterministic program that scores an image against its caption.

It plays the world's human annotator and its metric. Per attribute it classifies what it sees
(by simple image analysis) and gives a soft match score in [0, 1]:

- background: median colour of the 1-pixel border, nearest background colour;
- foreground: per-pixel coverage = colour distance from the background / the object's contrast;
  the object is the largest connected component of coverage > 0.5;
- colour: mean colour of the object's solid pixels, nearest palette colour;
- size: the object's extent (largest side of its bounding box): small ~9 px, big ~16 px;
- position: the coverage-weighted centroid: centre, or the dominant direction off-centre;
- shape: fill ratio of the bounding box (square ~1, circle ~0.79, triangle ~0.5) and top/bottom
  mass balance (an upright triangle is bottom-heavy);
- cleanliness: stray blobs and background noise.

``total = 0.85 * mean(soft scores of the attributes the caption names) + 0.15 * cleanliness``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from dde.toy.world import BACKGROUNDS, COLOURS, IMAGE_SIZE, POSITION_CENTRE, Scene, parse_caption

ATTRIBUTES = ("shape", "colour", "size", "position", "background")
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float64)
_BACKS = np.array(list(BACKGROUNDS.values()), dtype=np.float64)
_FILL = {"square": 0.97, "circle": 0.78, "triangle": 0.50}


@dataclass
class Judgement:
    total: float
    scores: dict[str, float]  # soft match per attribute named by the caption
    predicted: dict[str, str | None]  # what the judge sees, per attribute
    correct: dict[str, bool]  # predicted == caption, per attribute named by the caption
    cleanliness: float
    features: dict[str, float] = field(default_factory=dict)


def _nearest(value: np.ndarray, table: np.ndarray) -> tuple[int, np.ndarray]:
    dist = np.linalg.norm(table - value, axis=1)
    return int(dist.argmin()), dist


def _position_of(cx: float, cy: float) -> str:
    dx, dy = cx - (IMAGE_SIZE - 1) / 2, cy - (IMAGE_SIZE - 1) / 2
    if max(abs(dx), abs(dy)) < 4.0:
        return "centre"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def _shape_of(fill: float, bottom_heavy: float) -> str:
    if fill > 0.92:
        return "square"
    if fill < 0.68 or bottom_heavy > 0.62:
        return "triangle"
    return "circle"


def judge(image: np.ndarray, caption: str | Scene) -> Judgement:
    """Score a uint8 ``[32, 32, 3]`` image against a caption (or a :class:`Scene`)."""
    scene = caption if isinstance(caption, Scene) else parse_caption(caption)
    img = np.asarray(image, dtype=np.float64)
    if img.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"the judge takes [{IMAGE_SIZE}, {IMAGE_SIZE}, 3] images, got {img.shape}")
    border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    bg_colour = np.median(border, axis=0)
    bg_idx, bg_dist = _nearest(bg_colour, _BACKS)
    predicted: dict[str, str | None] = {"background": list(BACKGROUNDS)[bg_idx]}
    scores = {"background": float(np.exp(-(bg_dist[list(BACKGROUNDS).index(scene.background)] / 60) ** 2))}

    dist = np.linalg.norm(img - bg_colour, axis=2)
    contrast = max(np.percentile(dist, 99), 40.0)
    coverage = np.clip(dist / contrast, 0, 1)
    labels, n = ndimage.label(coverage > 0.5)
    flat = coverage < 0.2
    noise = float(np.clip(np.median(np.abs(img[flat] - bg_colour)) / 20, 0, 1)) if flat.any() else 1.0
    if n == 0:
        for attr in ("shape", "colour", "size", "position"):
            predicted[attr], scores[attr] = None, 0.0
        return _finish(scene, scores, predicted, cleanliness=1.0 - noise, features={})
    sizes = ndimage.sum(np.ones_like(coverage), labels, index=range(1, n + 1))
    main = labels == (int(np.argmax(sizes)) + 1)
    stray = float((coverage * ~ndimage.binary_dilation(main, iterations=2)).sum() / max(coverage.sum(), 1e-9))
    ys, xs = np.nonzero(main)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = float(main.sum() / (h * w))
    mid = (ys.min() + ys.max()) / 2
    bottom_heavy = float((ys > mid).sum() / max(len(ys), 1))
    weights = coverage * ndimage.binary_dilation(main, iterations=1)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    cx, cy = float((weights * xx).sum() / weights.sum()), float((weights * yy).sum() / weights.sum())
    solid = main & (coverage > 0.8)
    colour = img[solid if solid.any() else main].mean(axis=0)
    extent = float(max(h, w))

    col_idx, col_dist = _nearest(colour, _PALETTE)
    predicted["colour"] = list(COLOURS)[col_idx]
    scores["colour"] = float(np.exp(-(col_dist[list(COLOURS).index(scene.colour)] / 50) ** 2))
    predicted["size"] = "big" if extent >= 12.5 else "small"
    sign = 1 if scene.size == "big" else -1
    scores["size"] = float(1 / (1 + np.exp(-sign * (extent - 12.5) / 1.2)))
    predicted["shape"] = _shape_of(fill, bottom_heavy)
    shape_score = np.exp(-((fill - _FILL[scene.shape]) / 0.12) ** 2)
    scores["shape"] = float(shape_score if predicted["shape"] == scene.shape else min(shape_score, 0.5) * 0.5)
    predicted["position"] = _position_of(cx, cy)
    if scene.position is not None:
        tx, ty = POSITION_CENTRE[scene.position]
        scores["position"] = float(np.exp(-((cx - tx) ** 2 + (cy - ty) ** 2) / (2 * 4.0**2)))
    features = {"fill": fill, "bottom_heavy": bottom_heavy, "extent": extent, "cx": cx, "cy": cy,
                "stray": stray, "noise": noise, "blobs": float(n)}
    return _finish(scene, scores, predicted, cleanliness=float(np.clip(1 - 2 * stray - noise, 0, 1)),
                   features=features)


def _finish(scene: Scene, scores: dict, predicted: dict, *, cleanliness: float, features: dict) -> Judgement:
    named = [a for a in ATTRIBUTES if a != "position" or scene.position is not None]
    scores = {a: scores.get(a, 0.0) for a in named}
    correct = {a: predicted.get(a) == getattr(scene, a) for a in named}
    total = 0.85 * float(np.mean([scores[a] for a in named])) + 0.15 * cleanliness
    return Judgement(total, scores, predicted, correct, cleanliness, features)


def judge_batch(images: np.ndarray, captions: list[str]) -> list[Judgement]:
    """Judge ``[N, 32, 32, 3]`` uint8 images against ``N`` captions."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    return [judge(img, cap) for img, cap in zip(images, captions)]
