"""Input bounds and defaults, stated once: the backends, the app's runtime and its UI read them here.

``SAMPLING`` bounds what the library accepts (``Backend.sample``); ``APP`` bounds what a browser may
ask the app for (a shared server: small enough that one request cannot hold the compute lane for
long); ``FINETUNE`` bounds the fine-tunes a browser may start (the command line takes any valid
config). :func:`number` checks a value against a bound and says what was wrong in the user's terms.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    label: str  # how the UI names it
    lo: float
    hi: float
    default: float | None = None  # None: the model decides (guidance)
    whole: bool = False  # a whole number (2.5 is refused, 3.0 is 3)


SAMPLING = {
    "steps": Bound("DDIM steps", 1, 1000, 25, True),
    "guidance": Bound("guidance", 0.0, 30.0),
    "seed": Bound("seed", 0, 2**31 - 1, 0, True),
}

APP = {
    "steps": Bound("DDIM steps", 1, 100, 25, True),
    "images": Bound("images per model", 1, 8, 4, True),
    "guidance": SAMPLING["guidance"],
    "seed": SAMPLING["seed"],
    "eval_seeds": Bound("seeds per prompt", 1, 8, 1, True),
    "eval_prompts": Bound("prompts", 1, 500, 16, True),
    "estimation_images": Bound("images", 4, 256, 32, True),
    "prompt_chars": Bound("prompt length", 1, 1000, None, True),
    # the most images x DDIM steps one request may cost the lane (the rate varies with batch and model; not a time)
    "work": Bound("images x DDIM steps", 1, 60_000, None, True),
}

FINETUNE = {
    "steps": Bound("steps", 1, 5000, 50, True),
    "lora_rank": Bound("LoRA rank", 1, 128, 8, True),
    "beta": Bound("beta", 1e-3, 1e6, 500.0),
    "lr": Bound("learning rate", 1e-8, 1.0, 3e-4),
    "calibration_batches": Bound("calibration batches", 0, 64, 8, True),
    "batch_pairs": Bound("pairs per step", 1, 256, 16, True),
    "seed": Bound("seed", 0, 2**31 - 1, 0, True),
    "t_from": Bound("t from", 0, 999, 0, True),
    "t_to": Bound("t to", 1, 1000, 1000, True),
}


def shown(value) -> str:
    """What a user sent, as a message shows it: short text quoted, a number as written, anything else
    by its kind in words (never a Python type name or repr)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a long text"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, (list, tuple, set)):
        return "a list"
    if isinstance(value, dict):
        return "a set of named values"
    return "something else"


def _bound(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e12 else f"{x:g}"


def number(value, bound: Bound) -> float | int:
    """``value`` as a number inside ``bound`` (an int for whole bounds), else ValueError in the
    bound's own words. Refuses booleans, text that is not a number, NaN and infinities."""
    kind = "a whole number" if bound.whole else "a number"
    expects = f"{bound.label} must be {kind} in [{_bound(bound.lo)}, {_bound(bound.hi)}], got {shown(value)}"
    if isinstance(value, bool) or value is None:
        raise ValueError(expects)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(expects) from None
    if not math.isfinite(x) or not bound.lo <= x <= bound.hi or (bound.whole and x != int(x)):
        raise ValueError(expects)
    return int(x) if bound.whole else x
