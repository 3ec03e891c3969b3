"""Model backends behind one interface (:class:`dde.backends.base.Backend`): the embedded toy
world and Stable Diffusion 1.5 through diffusers. Training, analysis and the app use only the
interface."""

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


def lora_base_model(path) -> str | None:
    """The base model a LoRA file was trained on (its ``base_model`` metadata), if recorded and present."""
    from pathlib import Path

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            base = (handle.metadata() or {}).get("base_model")
    except Exception:  # an unreadable file is reported by the loader with a clear message
        return None
    return base if base and Path(base).is_dir() else None


def load_toy_spec(spec: str, base: str | None = None):
    """A toy model from a short spec, as the app and the command lines accept it:

    - ``base``: the shipped base model (or ``base`` if given);
    - ``tuned``: the shipped DDE-tuned LoRA on the base model;
    - a ``.safetensors`` LoRA file, or a run directory (its ``final/`` or latest checkpoint LoRA),
      on the base model it was trained on when that is recorded, else on ``base``;
    - a toy model directory (with ``model.json``).
    """
    from pathlib import Path

    from dde.backends.toy import ASSETS, ToyBackend

    if spec == "base":
        return ToyBackend.load(base)
    if spec == "tuned":
        return ToyBackend.load(base, lora=ASSETS / "toy-dde" / "lora.safetensors")
    path = Path(spec)
    lora = None
    if path.suffix == ".safetensors":
        lora = path
    elif (path / "model.json").is_file():
        return ToyBackend.load(path)
    elif (path / "final" / "lora.safetensors").is_file():
        lora = path / "final" / "lora.safetensors"
    elif path.is_dir():
        checkpoints = sorted((path / "checkpoints").glob("step-*/lora.safetensors"))
        lora = checkpoints[-1] if checkpoints else None
    if lora is None:
        raise ValueError(f"{spec!r} is not 'base', 'tuned', a LoRA .safetensors file, a run directory or a toy "
                         "model directory")
    return ToyBackend.load(base or lora_base_model(lora), lora=lora)
