"""How much a toy model listens to each attribute word of its captions.

    python -m bench.word_probe assets/toy-base [--scenes 24] [--times 900 600 300]
    python -m bench.word_probe runs/toy-pretrain      # a pretraining's latest checkpoint (EMA weights)

For --scenes training-split scenes that name a position, each attribute word (shape, colour, size,
position, background) is swapped for another value of the same attribute, one at a time. Two
numbers per attribute, averaged over scenes and swaps:

- text gap: the distance between the text encoder's final hidden states of the two captions at
  the swapped word (the vector the UNet's cross-attention reads there);
- output change at t: ``||eps(x_t, c') - eps(x_t, c)|| / ||eps(x_t, c)||``, the UNet's prediction
  on the same noised render of the scene under the two captions, at each of --times.

A word whose output change is near zero at every t is ignored by the model: no sampling setting and
no preference pair over its samples can make its images follow that word.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from bench.common import md_table
from dde.toy.judge import ATTRIBUTES


def _swaps(scene, attribute: str) -> list:
    from dataclasses import replace

    from dde.toy import world

    values = {"shape": world.SHAPES, "colour": world.COLOURS, "size": world.SIZES,
              "position": world.POSITIONS, "background": world.BACKGROUNDS}[attribute]
    return [replace(scene, **{attribute: v}) for v in values if v != getattr(scene, attribute)]


def _changed_token(ids_a: torch.Tensor, ids_b: torch.Tensor) -> int:
    differ = (ids_a != ids_b).nonzero().flatten().tolist()
    if not differ:
        raise ValueError("the two captions tokenize the same")
    return differ[-1]  # "in the centre" / "on the left": the position word, not "in"/"on"


def load_models(path: str):
    """(unet, text encoder, tokenizer) of a toy model directory, or of the EMA weights in the latest
    checkpoint of a ``bench.make_base`` work folder."""
    from pathlib import Path

    from bench.make_base import load_ema
    from dde.toy import model as toy_model
    from dde.toy.text import ToyTokenizer

    if not (Path(path) / "recipe.json").is_file():
        unet, text_encoder, tokenizer, _ = toy_model.load_model_dir(path)
        return unet, text_encoder, tokenizer
    try:
        unet, text_encoder, step = load_ema(path)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    print(f"{path}: EMA weights at step {step}")
    return unet, text_encoder, ToyTokenizer()


def probe(model_dir: str, scenes: int = 24, times: tuple[int, ...] = (900, 600, 300), seed: int = 0) -> list[dict]:
    """One row per attribute: text gap and output change at each t (see the module's docstring)."""
    from dde import ddim
    from dde.images import from_uint8
    from dde.schedule import NoiseSchedule
    from dde.toy import model as toy_model
    from dde.toy.world import render, split_scenes

    unet, text_encoder, tokenizer = load_models(model_dir)
    unet.eval()
    text_encoder.eval()
    schedule = NoiseSchedule.from_scheduler_config(toy_model.SCHEDULER_CONFIG)
    train, _ = split_scenes(seed=0)
    picked = [s for s in train if s.position is not None and s.position != "centre"]
    picked = picked[:: max(1, len(picked) // scenes)][:scenes]
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    gaps: dict[str, list[float]] = {a: [] for a in ATTRIBUTES}
    changes: dict[tuple[str, int], list[float]] = {(a, t): [] for a, t in itertools.product(ATTRIBUTES, times)}
    with torch.no_grad():
        for scene in picked:
            x0 = torch.from_numpy(from_uint8(render(scene, rng)[None]))
            noised = {}
            for t in times:
                ab = schedule.alpha_bar_at(torch.tensor([t])).float()
                noised[t] = ddim.add_noise(x0, torch.randn(x0.shape, generator=gen), ab)
            ids = tokenizer([scene.caption])
            hidden = text_encoder(input_ids=ids).last_hidden_state
            preds = {t: unet(toy_model.unet_input(unet, x), torch.tensor([t]), encoder_hidden_states=hidden).sample
                     for t, x in noised.items()}
            for attribute in ATTRIBUTES:
                for other in _swaps(scene, attribute):
                    ids_b = tokenizer([other.caption])
                    hidden_b = text_encoder(input_ids=ids_b).last_hidden_state
                    k = _changed_token(ids[0], ids_b[0])
                    gaps[attribute].append(float((hidden[0, k] - hidden_b[0, k]).norm()))
                    for t, x in noised.items():
                        pred_b = unet(toy_model.unet_input(unet, x), torch.tensor([t]),
                                      encoder_hidden_states=hidden_b).sample
                        changes[attribute, t].append(float((pred_b - preds[t]).norm() / preds[t].norm()))
    return [{"attribute": a, "text gap": round(float(np.mean(gaps[a])), 3),
             **{f"output change t={t}": round(float(np.mean(changes[a, t])), 4) for t in times}}
            for a in ATTRIBUTES]


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.word_probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="toy model directory, or a bench.make_base work folder (its latest checkpoint)")
    ap.add_argument("--scenes", type=int, default=24)
    ap.add_argument("--times", type=int, nargs="+", default=[900, 600, 300])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = md_table(probe(args.model, args.scenes, tuple(args.times), args.seed))
    print(table)
    return table


if __name__ == "__main__":
    main()
