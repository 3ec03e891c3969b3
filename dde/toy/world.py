"""Scenes, captions and the renderer of the embedded world.

A scene is one object (shape, colour, size, optional position) on a background. Images are 32x32
RGB; the renderer draws at 8x and downsamples (anti-aliased). Pixel arrays are uint8 ``[H, W, 3]``;
the model sees them scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 225),
    "yellow": (240, 220, 40), "purple": (140, 55, 185), "orange": (250, 140, 25),
}
SIZES = ("small", "big")
POSITIONS = ("left", "right", "top", "bottom", "centre")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245), "black": (15, 15, 15), "grey": (128, 128, 128)}

IMAGE_SIZE = 32
SIZE_DIAMETER = {"small": 9.0, "big": 16.0}  # object extent in pixels at 32x32
POSITION_CENTRE = {"left": (8.5, 16.0), "right": (23.5, 16.0), "top": (16.0, 8.5), "bottom": (16.0, 23.5),
                   "centre": (16.0, 16.0)}
_SUPERSAMPLE = 8


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    size: str
    background: str
    position: str | None = None  # None: the caption says nothing about where

    def __post_init__(self) -> None:
        for field, allowed in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES),
                               ("background", BACKGROUNDS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"unknown {field} {getattr(self, field)!r}; known: {', '.join(allowed)}")
        if self.position is not None and self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}; known: {', '.join(POSITIONS)}")

    @property
    def caption(self) -> str:
        """E.g. ``a big red circle on the left on a black background``."""
        return self.describe()

    def describe(self, omit: frozenset[str] | set[str] = frozenset()) -> str:
        """The caption without the attributes in ``omit`` (any of size, colour, position,
        background; the shape is always named), e.g. ``a red circle on a black background``.
        Pretraining uses these partial captions for per-attribute caption dropout."""
        words = ["a"]
        words += [self.size] if "size" not in omit else []
        words += [self.colour] if "colour" not in omit else []
        words.append(self.shape)
        if self.position is not None and "position" not in omit:
            words.append("in the centre" if self.position == "centre" else f"on the {self.position}")
        if "background" not in omit:
            words.append(f"on a {self.background} background")
        return " ".join(words)


def parse_caption(caption: str) -> Scene:
    """Inverse of :attr:`Scene.caption`; tolerant of case, extra spaces and word order of the
    attribute words. Raises ValueError naming what is missing."""
    words = caption.lower().replace(",", " ").split()
    found: dict[str, str | None] = {}
    for field, allowed in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES)):
        hits = [w for w in words if w in allowed]
        if len(hits) != 1:
            raise ValueError(f"caption {caption!r} must name exactly one {field} ({', '.join(allowed)})")
        found[field] = hits[0]
    bg = [words[i - 1] for i, w in enumerate(words) if w == "background" and i > 0]
    if len(bg) != 1 or bg[0] not in BACKGROUNDS:
        raise ValueError(f"caption {caption!r} must end 'on a <{'|'.join(BACKGROUNDS)}> background'")
    found["background"] = bg[0]
    found["position"] = next((w for w in words if w in POSITIONS), None)
    if "center" in words:
        found["position"] = "centre"
    return Scene(**found)


def all_scenes(with_position: bool = True) -> list[Scene]:
    """Every scene of the grammar, in a fixed order (positions include 'unspecified')."""
    positions = (None, *POSITIONS) if with_position else (None,)
    return [Scene(s, c, z, b, p) for s in SHAPES for c in COLOURS for z in SIZES for b in BACKGROUNDS
            for p in positions]


def split_scenes(seed: int = 0, held_out_fraction: float = 0.15) -> tuple[list[Scene], list[Scene]]:
    """A fixed (train, held-out) split of all scenes; held-out captions are never trained on."""
    scenes = all_scenes()
    rng = random.Random(seed)
    rng.shuffle(scenes)
    n_held = round(len(scenes) * held_out_fraction)
    return scenes[n_held:], scenes[:n_held]


def _shape_points(shape: str, cx: float, cy: float, d: float) -> list[tuple[float, float]] | tuple:
    r = d / 2
    if shape == "circle":
        return (cx - r, cy - r, cx + r, cy + r)
    if shape == "square":
        s = r * 0.9  # equal area-ish to the circle's visual weight
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    # upright triangle, base at the bottom
    return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]


def render(scene: Scene, rng: np.random.Generator | None = None, *, jitter: float = 1.5) -> np.ndarray:
    """Draw ``scene`` as uint8 ``[32, 32, 3]``. ``rng`` jitters position (+-jitter px) and size
    (+-8%); an unspecified position is drawn anywhere the object fits."""
    rng = rng if rng is not None else np.random.default_rng()
    d = SIZE_DIAMETER[scene.size] * float(rng.uniform(0.92, 1.08))
    if scene.position is None:
        margin = d / 2 + 1
        cx, cy = rng.uniform(margin, IMAGE_SIZE - margin, size=2)
    else:
        cx, cy = np.asarray(POSITION_CENTRE[scene.position]) + rng.uniform(-jitter, jitter, size=2)
    k = _SUPERSAMPLE
    canvas = Image.new("RGB", (IMAGE_SIZE * k, IMAGE_SIZE * k), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(canvas)
    geometry = _shape_points(scene.shape, cx * k, cy * k, d * k)
    colour = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse(geometry, fill=colour)
    else:
        draw.polygon(geometry, fill=colour)
    small = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)
