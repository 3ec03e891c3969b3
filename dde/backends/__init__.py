"""Model backends behind one interface (:class:`dde.backends.base.Backend`): the embedded toy
world and Stable Diffusion 1.5 through diffusers. Training, analysis and the app use only the
interface."""

from __future__ import annotations


def load_backend(kind: str, path: str | None = None, **kwargs):
    """``kind`` in ``toy`` (path defaults to the shipped base model) or ``sd`` (hub id or local dir)."""
    if kind == "toy":
        from dde.backends.toy import ToyBackend

        return ToyBackend.load(path, **kwargs)
    if kind == "sd":
        from dde.backends.sd import SDBackend

        if not path:
            raise ValueError("the sd backend needs a model: a hub id or a local diffusers directory")
        return SDBackend.load(path, **kwargs)
    raise ValueError(f"unknown backend {kind!r}; known: toy, sd")
