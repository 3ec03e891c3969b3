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


def load_toy_spec(spec: str, base: str | None = None):
    """A toy model from a short spec, as the app and the command lines accept it:

    - ``base``: the shipped base model (or ``base`` if given);
    - ``tuned``: the shipped DDE-tuned LoRA on the base model;
    - a ``.safetensors`` LoRA file, or a run directory (its ``final/`` or latest checkpoint LoRA);
    - a toy model directory (with ``model.json``).
    """
    from pathlib import Path

    from dde.backends.toy import ASSETS, ToyBackend

    if spec == "base":
        return ToyBackend.load(base)
    if spec == "tuned":
        return ToyBackend.load(base, lora=ASSETS / "toy-dde" / "lora.safetensors")
    path = Path(spec)
    if path.suffix == ".safetensors":
        return ToyBackend.load(base, lora=path)
    if (path / "model.json").is_file():
        return ToyBackend.load(path)
    if (path / "final" / "lora.safetensors").is_file():
        return ToyBackend.load(base, lora=path / "final" / "lora.safetensors")
    checkpoints = sorted((path / "checkpoints").glob("step-*/lora.safetensors")) if path.is_dir() else []
    if checkpoints:
        return ToyBackend.load(base, lora=checkpoints[-1])
    raise ValueError(f"{spec!r} is not 'base', 'tuned', a LoRA .safetensors file, a run directory or a toy model "
                     "directory")
