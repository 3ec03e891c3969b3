"""The embedded miniature world: procedural scenes, their captions, the judge, and the tiny
text-to-image model that the repo trains and ships (see toy-world docs in the README).

This module stays free of heavy imports: the app reads the shipped paths and the base model's
guidance from it before torch's model libraries load."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_BASE = ASSETS / "toy-base"
# used when a model directory records none; make_base stores the scale it chose on training scenes
FALLBACK_GUIDANCE = 2.0
