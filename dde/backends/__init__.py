"""Model backends behind one interface (:class:`dde.backends.base.Backend`): the embedded toy
world, Stable Diffusion 1.5 and SDXL through diffusers. Training, analysis and the app use only the
interface; what users type to name a model is parsed in :mod:`dde.backends.spec`."""

from __future__ import annotations


def load_backend(kind: str, path: str | None = None, **kwargs):
    """``kind`` in ``toy`` (path defaults to the shipped base model), ``sd`` (SD1.5 layout) or ``sdxl``
    (hub id or local diffusers directory for both)."""
    if kind == "toy":
        from dde.backends.toy import ToyBackend

        return ToyBackend.load(path, **kwargs)
    if kind in ("sd", "sdxl"):
        from dde.backends.sd import SDBackend, SDXLBackend

        if not path:
            raise ValueError(f"the {kind} backend needs a model: a hub id or a local diffusers directory")
        return (SDXLBackend if kind == "sdxl" else SDBackend).load(path, **kwargs)
    raise ValueError(f"unknown backend {kind!r}; known: toy, sd, sdxl")


def default_guidance(kind: str, path: str | None = None) -> float:
    """The guidance a model samples with when a caller gives none, without loading it: a toy model
    folder's own (``model.json``), else the backend's."""
    import json
    from pathlib import Path

    if kind == "toy":  # read from model.json: no model library is imported (the app serves its page first)
        from dde.toy import DEFAULT_BASE, FALLBACK_GUIDANCE

        meta = Path(path or DEFAULT_BASE) / "model.json"
        try:
            value = json.loads(meta.read_text()).get("default_guidance")
        except (OSError, ValueError):
            value = None
        return float(value) if value is not None else FALLBACK_GUIDANCE
    if kind in ("sd", "sdxl"):
        from dde.backends.sd import SDBackend, SDXLBackend

        return (SDXLBackend if kind == "sdxl" else SDBackend).default_guidance
    raise ValueError(f"unknown backend {kind!r}; known: toy, sd, sdxl")
