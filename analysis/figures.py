"""Writing figures and manifests: shared by the analysis command line, the study and the app."""

from __future__ import annotations

import platform
import shlex
import sys
import time
from pathlib import Path


def write_figures(out: Path, figures: dict, png: bool) -> list[str]:
    """HTML for every figure (plotly.js written once beside them); PNG too when asked and a
    browser for kaleido is available. Returns notes for the user."""
    for name, fig in figures.items():
        fig.write_html(out / f"{name}.html", include_plotlyjs="directory")
    if not png or not figures:
        return []
    import plotly.io as pio

    try:
        pio.write_images(list(figures.values()), [out / f"{name}.png" for name in figures], width=900, height=500)
    except Exception as err:  # kaleido needs Chrome or Chromium; say so instead of failing the whole command
        return [f"PNG export skipped ({type(err).__name__}: {err}); install chromium for kaleido"]
    return []


def write_manifest(out: Path, extra: dict, command: str | None = None) -> None:
    """manifest.json: the command, date, machine and library versions beside generated results."""
    import diffusers
    import torch
    import transformers

    from dde.io import atomic_write_json

    atomic_write_json({"command": command or "python -m analysis " + shlex.join(sys.argv[1:]),
                       "date": time.strftime("%F %T %Z"), "machine": platform.platform(),
                       "python": platform.python_version(),
                       "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                                    "transformers": transformers.__version__},
                       **extra}, out / "manifest.json")
