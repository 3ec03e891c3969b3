"""Pretrain the embedded world's base model from a fixed seed, resumably.

    python -m bench.make_base --out assets/toy-base --steps 4000 --offset-noise 0.1

Renders training scenes on the fly (held-out scenes are never seen), trains the UNet and the
text encoder jointly with the DDPM epsilon loss on SD1.5's scaled-linear schedule, drops --drop of
captions for classifier-free guidance (and, with --attr-drop, single attributes from captions),
keeps an EMA of the weights (the shipped model), and writes a checkpoint every --ckpt-every steps
to --work (resume: run the same command again). At the end it picks the default guidance on
training-split scenes (--guidance-sweep), judges the EMA model on the held-out scenes, and writes
the model directory with MODEL_CARD.md (which tabulates the recipe trials given with --trials).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from dde import ddim
from dde.images import from_uint8
from dde.io import (
    atomic_save_safetensors,
    atomic_write_json,
    atomic_write_text,
    load_optimizer_state,
    optimizer_state_tensors,
)
from dde.losses import per_sample_error
from dde.schedule import NoiseSchedule
from dde.toy import model as toy_model
from dde.toy.text import ToyTokenizer, text_encoder_config
from dde.toy.world import render, split_scenes

# the settings that define a pretraining; a resume must repeat them (--steps may grow)
RECIPE = ("seed", "batch", "lr", "warmup", "ema", "ema_warmup", "width", "attention", "coords", "prediction",
          "offset_noise", "pyramid_noise", "drop", "attr_drop", "word_init", "weight_cap",
          "text_film")
# recipe settings added later, with the values earlier work folders ran with
RECIPE_ADDED = {"coords": False, "ema_warmup": False, "prediction": "epsilon", "word_init": None,
                "weight_cap": 1.0, "text_film": False}
DROPPABLE = ("size", "colour", "position", "background")  # the shape is always named


def make_batch(step: int, seed: int, batch: int, scenes, drop: float = 0.1,
               attr_drop: float = 0.0) -> tuple[torch.Tensor, list[str]]:
    """The training batch of ``step``: a pure function of (seed, step), so a resumed run sees the same data.

    ``drop``: share of empty captions (classifier-free guidance); ``attr_drop``: each of size, colour,
    position and background is left out of a caption with this probability (the image still shows it)."""
    rng = np.random.default_rng([seed, step])
    picks = rng.integers(0, len(scenes), size=batch)
    images = np.stack([render(scenes[i], rng) for i in picks])
    captions = []
    for i in picks:
        omit = {a for a in DROPPABLE if rng.random() < attr_drop} if attr_drop > 0 else set()
        captions.append("" if rng.random() < drop else scenes[i].describe(omit))
    return torch.from_numpy(from_uint8(images)), captions


def training_noise(shape: tuple[int, ...], gen: torch.Generator, *, offset: float = 0.0,
                   pyramid: float = 0.0) -> torch.Tensor:
    """The noise eps of a pretraining batch ``[B, C, H, W]``.

    ``offset`` adds ``offset * N(0, 1)`` per image and channel (offset noise): x_T then no longer
    reveals the image's mean colour, which a scaled-linear schedule leaks (sqrt(alpha_bar_T) = 0.068),
    so the model must take the background from the caption. ``pyramid`` adds noise at every coarser
    scale (H/2, H/4, ... 1), the scale 2^-k weighted ``pyramid**k``, and rescales to unit variance
    (multi-resolution noise): it also hides where a large object sits."""
    eps = torch.randn(shape, generator=gen)
    if offset > 0:
        eps = eps + offset * torch.randn((*shape[:2], 1, 1), generator=gen)
    if pyramid > 0:
        size, k = shape[-1], 1
        while size // 2**k >= 1:
            coarse = torch.randn((*shape[:2], size // 2**k, size // 2**k), generator=gen)
            eps = eps + pyramid**k * torch.nn.functional.interpolate(coarse, size=shape[-2:], mode="nearest")
            k += 1
        eps = eps / math.sqrt(sum(pyramid ** (2 * j) for j in range(k)))
    return eps


def loss_weight(alpha_bar: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-sample pretraining loss weight ``min(1 + 1/SNR, cap)`` with ``SNR = alpha_bar / (1 - alpha_bar)``.

    In terms of the x0 error, the epsilon loss weighs a sample by SNR (0.014 at t = 900): the steps
    where the caption must decide where the object goes barely train. ``1 + 1/SNR`` is what
    v-prediction's loss amounts to (x0 weight SNR + 1); capping it keeps t near T (1 + 1/SNR = 215
    at t = 999) from drowning the rest. ``cap`` 1 is the plain epsilon loss."""
    if cap < 1:
        raise ValueError(f"the loss weight cap must be >= 1, got {cap}")
    alpha_bar = alpha_bar.float()
    return torch.clamp(1 + (1 - alpha_bar) / alpha_bar, max=cap)


def ema_decay(step: int, ema: float, warmup_schedule: bool, lr_warmup: int) -> float:
    """The EMA decay at ``step``: with the warm-up schedule (1 + step) / (10 + step), capped at
    ``ema`` (the EMA's window grows with the run: about 100 steps at step 1000); without it, 0.9
    during the learning-rate warm-up and ``ema`` after (a window of 1 / (1 - ema) steps)."""
    if warmup_schedule:
        return min(ema, (1 + step) / (10 + step))
    return ema if step > lr_warmup else 0.9


def _ema_update(ema: torch.nn.Module, live: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), live.parameters()):
            e.lerp_(p, 1 - decay)


def _save_checkpoint(work: Path, step: int, modules: dict, optimizer: torch.optim.Optimizer) -> None:
    tensors = {f"{name}/{k}": v.detach().contiguous().cpu() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    optim_tensors, groups = optimizer_state_tensors(optimizer)
    tensors.update({f"optim/{k}": v for k, v in optim_tensors.items()})
    atomic_save_safetensors(tensors, work / "checkpoint.safetensors", metadata={"step": str(step)})
    atomic_write_json({"step": step, **groups}, work / "checkpoint.json")


def _load_modules(tensors: dict, modules: dict) -> None:
    for name, m in modules.items():
        m.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + "/")})


def _load_checkpoint(work: Path, modules: dict, optimizer: torch.optim.Optimizer) -> int:
    file = work / "checkpoint.safetensors"
    if not file.is_file():
        return 0
    tensors = load_file(file)
    _load_modules(tensors, modules)
    meta = json.loads((work / "checkpoint.json").read_text())
    load_optimizer_state(optimizer, {k[6:]: v for k, v in tensors.items() if k.startswith("optim/")}, meta)
    return int(meta["step"])


def build_models(recipe: dict):
    """Fresh (unet, text encoder) for a recipe (the --flags of a pretraining, as in recipe.json)."""
    recipe = {**RECIPE_ADDED, **recipe}
    attention = tuple(int(r) for r in str(recipe.get("attention", "8")).split(","))
    return toy_model.build(toy_model.unet_config(recipe.get("width", 32), attention=attention,
                                                 coords=recipe["coords"], text_film=recipe["text_film"]),
                           text_encoder_config(), word_init=recipe["word_init"])


def load_ema(work: str | Path):
    """(unet, text encoder, step): the EMA weights of the latest checkpoint in a pretraining's --work
    folder, built from its recipe.json (to probe a run while it trains)."""
    work = Path(work)
    if not (work / "checkpoint.safetensors").is_file():
        raise ValueError(f"{work} holds no pretraining checkpoint yet")
    unet, text_encoder = build_models(json.loads((work / "recipe.json").read_text()))
    _load_modules(load_file(work / "checkpoint.safetensors"), {"ema_unet": unet, "ema_text": text_encoder})
    return unet, text_encoder, int(json.loads((work / "checkpoint.json").read_text())["step"])


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m bench.make_base", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="assets/toy-base", help="model directory to write")
    ap.add_argument("--work", default="runs/toy-pretrain", help="checkpoint folder (resume from here)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay (the most it reaches with --ema-warmup)")
    ap.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=True,
                    help="EMA decay (1 + step) / (10 + step) up to --ema: a short run's EMA is not stuck at its start")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=32, help="UNet base channels")
    ap.add_argument("--attention", default="8", help="resolutions with cross-attention, e.g. 16,8")
    ap.add_argument("--coords", action="store_true", help="the UNet also reads x/y coordinate planes (CoordConv)")
    ap.add_argument("--prediction", choices=["epsilon", "v_prediction"], default="epsilon",
                    help="what the UNet predicts: the noise, or the velocity sqrt(ab) eps - sqrt(1 - ab) x0 (which "
                    "weighs the noisiest steps, where the caption must decide the layout, far more)")
    ap.add_argument("--offset-noise", type=float, default=0.0, help="offset-noise strength (per image and channel)")
    ap.add_argument("--pyramid-noise", type=float, default=0.0, help="multi-resolution noise discount (0: off)")
    ap.add_argument("--drop", type=float, default=0.1, help="share of empty captions (for guidance)")
    ap.add_argument("--attr-drop", type=float, default=0.0,
                    help="probability that each of size, colour, position, background is left out of a caption")
    ap.add_argument("--text-film", action="store_true",
                    help="the caption also scales and shifts every ResNet block's channels (pooled text added to the "
                    "timestep embedding), not only cross-attention")
    ap.add_argument("--word-init", type=float, default=None,
                    help="std of the text encoder's word embeddings at initialisation (default: CLIP's 0.02, "
                    "under which position and shape words stay nearly indistinguishable)")
    ap.add_argument("--weight-cap", type=float, default=1.0,
                    help="weight each sample's loss by min(1 + 1/SNR(t), cap): v-prediction's weighting of the "
                    "noisy steps, truncated (1: the plain epsilon loss). The layout a caption asks for is decided "
                    "at high noise, where the plain loss gives it almost no gradient")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--eval-every", type=int, default=0,
                    help="judge the EMA model on training-split scenes every N steps (work/curve.jsonl; 0 = off)")
    ap.add_argument("--curve-guidance", type=float, default=1.0,
                    help="guidance scale of the --eval-every curve (1: no guidance)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-seeds", type=int, default=4, help="samples per held-out scene for the card")
    ap.add_argument("--guidance", type=float, default=None,
                    help="guidance scale of the card's evaluation and the model's default (skips the sweep)")
    ap.add_argument("--guidance-sweep", default="1,1.25,1.5,2,2.5,4",
                    help="guidance scales tried on training-split scenes; the best judge score becomes the default")
    ap.add_argument("--trials", nargs="*", default=[],
                    help="model directories of recipe trials to tabulate in the card (their own cards' numbers)")
    ap.add_argument("--eval-only", action="store_true",
                    help="re-judge the model already in --out and rewrite its card (no training)")
    ap.add_argument("--card-only", action="store_true",
                    help="rewrite MODEL_CARD.md from the card stored in --out/model.json (no training, no evaluation)")
    args = ap.parse_args(argv)
    if args.card_only:
        card = json.loads((Path(args.out) / "model.json").read_text())["card"]
        atomic_write_text(model_card_markdown(card), Path(args.out) / "MODEL_CARD.md")
        return Path(args.out)
    if args.eval_only:  # the training facts come from the existing card, the evaluation is redone
        unet, text_encoder, _, meta = toy_model.load_model_dir(args.out)
        train_info = {k: v for k, v in meta["card"].items() if k not in EVAL_KEYS}
        return _finish(args, Path(args.out), unet, text_encoder, train_info)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    recipe = {k: getattr(args, k) for k in RECIPE}
    if (work / "recipe.json").is_file():  # a resume must continue the same recipe
        saved = {**RECIPE_ADDED, **json.loads((work / "recipe.json").read_text())}
        differs = {k: saved.get(k) for k in recipe if saved.get(k) != recipe[k]}
        if differs:
            ap.exit(2, f"error: {work} holds a pretraining with another recipe ({differs}); "
                       "choose another --work or the same settings\n")
    else:
        atomic_write_json(recipe, work / "recipe.json")
    train_scenes, _ = split_scenes(seed=0)
    schedule = NoiseSchedule.from_scheduler_config(toy_model.SCHEDULER_CONFIG)
    unet, text_encoder = build_models(recipe)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    tokenizer = ToyTokenizer()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    modules = {"unet": unet, "text_encoder": text_encoder, "ema_unet": ema_unet, "ema_text": ema_text}
    start = _load_checkpoint(work, modules, optimizer)
    prior_seconds = json.loads((work / "time.json").read_text())["seconds"] if (work / "time.json").is_file() else 0.0
    t_start = time.time()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="pretrain", dynamic_ncols=True)
    losses: list[float] = []
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        x0, captions = make_batch(step, args.seed, args.batch, train_scenes, args.drop, args.attr_drop)
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        t = torch.randint(0, schedule.T, (x0.shape[0],), generator=gen)
        eps = training_noise(tuple(x0.shape), gen, offset=args.offset_noise, pyramid=args.pyramid_noise)
        alpha_bar = schedule.alpha_bar_at(t)
        x_t = ddim.add_noise(x0, eps, alpha_bar)
        cond = text_encoder(input_ids=tokenizer(captions)).last_hidden_state
        pred = unet(toy_model.unet_input(unet, x_t), t, encoder_hidden_states=cond).sample
        target = ddim.v_target(x0, eps, alpha_bar) if args.prediction == "v_prediction" else eps
        loss = (per_sample_error(pred, target) * loss_weight(alpha_bar, args.weight_cap)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = ema_decay(step, args.ema, args.ema_warmup, args.warmup)
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % args.ckpt_every == 0 or step + 1 == args.steps:
            _save_checkpoint(work, step + 1, modules, optimizer)
            atomic_write_json({"seconds": prior_seconds + time.time() - t_start}, work / "time.json")
            with open(work / "loss.csv", "a") as handle:
                handle.write(f"{step + 1},{np.mean(losses[-args.ckpt_every:]):.6f}\n")
        if args.eval_every and (step + 1) % args.eval_every == 0:
            _log_curve(work, step + 1, ema_unet, ema_text, args.prediction, args.curve_guidance)
    train_info = {**recipe, "steps": args.steps,
                  "train_wall_seconds": round(prior_seconds + time.time() - t_start, 1),
                  "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                  "torch": torch.__version__,
                  "command": "python -m bench.make_base " + shlex.join(argv if argv is not None else sys.argv[1:])}
    return _finish(args, out, ema_unet, ema_text, train_info)


def _log_curve(work: Path, step: int, unet, text_encoder, prediction: str, guidance: float) -> None:
    """Per-attribute accuracy of the EMA model on training-split scenes (1 image each) at ``step``:
    how each attribute is learned over pretraining, never measured on the held-out scenes."""
    from dde.backends.toy import ToyBackend
    from dde.toy.report import judge_scenes

    tune = _sweep_scenes()
    backend = ToyBackend(copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval(), ToyTokenizer(),
                         scheduler_config=toy_model.scheduler_config(prediction))
    report = judge_scenes(backend, tune, seeds=1, steps=25, guidance=guidance, seed=50_000)
    with open(work / "curve.jsonl", "a") as handle:
        row = {"step": step, "guidance": guidance, "total": report["total"], **report["accuracy"]}
        handle.write(json.dumps(row) + "\n")


EVAL_KEYS = ("held_out_eval", "guidance_sweep", "eval_command", "eval_wall_seconds", "trials")
SWEEP_SCENES = 97  # training-split scenes the guidance is chosen on (as many as the held-out split)


def _sweep_scenes() -> list:
    """The training-split scenes (spread over the split) that the guidance sweep and the curve judge."""
    train_scenes, _ = split_scenes(seed=0)
    return train_scenes[:: max(1, len(train_scenes) // SWEEP_SCENES)][:SWEEP_SCENES]


def _finish(args, out: Path, unet, text_encoder, train_info: dict) -> Path:
    """Choose the default guidance on training-split scenes, judge the model on the held-out scenes
    and write the model directory with its card."""
    from dde.backends.toy import ToyBackend
    from dde.toy.report import judge_scenes

    _, held_out = split_scenes(seed=0)
    scheduler = toy_model.scheduler_config(train_info.get("prediction", "epsilon"))
    backend = ToyBackend(unet.eval(), text_encoder.eval(), ToyTokenizer(), scheduler_config=scheduler)
    t0 = time.time()
    sweep = {}
    if args.guidance is None:  # never chosen on the held-out scenes
        tune = _sweep_scenes()
        for g in (float(v) for v in str(args.guidance_sweep).split(",")):
            sweep[g] = judge_scenes(backend, tune, seeds=1, steps=25, guidance=g, seed=50_000)["total"]
    guidance = args.guidance if args.guidance is not None else max(sweep, key=sweep.get)
    report = judge_scenes(backend, held_out, seeds=args.eval_seeds, steps=25, guidance=guidance)
    card = {**train_info, "eval_wall_seconds": round(time.time() - t0, 1),
            "unet_parameters": toy_model.count_parameters(unet),
            "text_encoder_parameters": toy_model.count_parameters(text_encoder),
            "guidance_sweep": {str(g): round(v, 4) for g, v in sweep.items()},
            "held_out_eval": {"scenes": len(held_out), "seeds": args.eval_seeds, "steps": 25,
                              "guidance": guidance, **report},
            "trials": [_trial_row(Path(t)) for t in args.trials],
            "eval_command": f"python -m bench.make_base --out {args.out} --eval-only --eval-seeds {args.eval_seeds} "
                            + (f"--guidance {args.guidance}" if args.guidance is not None
                               else f"--guidance-sweep {args.guidance_sweep}")
                            + "".join(f" --trials {t}" for t in args.trials)}
    toy_model.save_model_dir(out, unet, text_encoder, extra={"card": card, "default_guidance": guidance},
                             scheduler=scheduler)
    atomic_write_text(model_card_markdown(card), out / "MODEL_CARD.md")
    print(json.dumps(card["held_out_eval"], indent=2))
    return out


def _trial_row(model_dir: Path) -> dict:
    """A recipe trial's facts from its own model card (model.json)."""
    card = json.loads((model_dir / "model.json").read_text())["card"]
    return {"name": model_dir.parent.name if model_dir.name == "model" else model_dir.name,
            **{k: card.get(k) for k in (*RECIPE, "steps", "train_wall_seconds", "command")},
            "eval": {k: card["held_out_eval"][k] for k in ("n", "guidance", "total", "accuracy")}}


def _trials_markdown(trials: list[dict]) -> str:
    if not trials:
        return ""
    attrs = list(trials[0]["eval"]["accuracy"])
    head = ("| trial | steps | lr | offset noise | pyramid noise | attention at | coords | attr drop | train min | "
            "judge | " + " | ".join(attrs) + " |")
    rows = [f"| {t['name']} | {t['steps']} | {t['lr']} | {t.get('offset_noise', 0)} | {t.get('pyramid_noise', 0)} | "
            f"{t.get('attention', '8')} | {'yes' if t.get('coords') else 'no'} | {t.get('attr_drop', 0)} | "
            f"{t['train_wall_seconds'] / 60:.0f} | "
            f"{t['eval']['total']:.3f} | " + " | ".join(f"{t['eval']['accuracy'][a]:.0%}" for a in attrs) + " |"
            for t in trials]
    commands = "\n".join(f"- {t['name']}: `{t['command']}`" for t in trials)
    return f"""
## Recipe trials

Short pretrainings that decided the recipe, each judged on the held-out scenes by its own run
({trials[0]['eval']['n']} images, guidance {trials[0]['eval']['guidance']}); numbers from their model cards, commands as
recorded (the first trials ran this script under its earlier name, `dde.toy.pretrain`).

{head}
|{'---|' * (10 + len(attrs))}
{chr(10).join(rows)}

{commands}
"""


TRIALS_RECORD = """
## Recipe trials

The short pretrainings that chose this recipe (offset noise against the schedule's leak, where
cross-attention sits, coordinate planes, v-prediction, EMA warm-up, length) and what each measured
are recorded in `docs/toy/base-trials.md`.
"""

RELATED = """
## Seeds and related results

One pretraining seed ({seed}) is trained and measured; the spread across pretraining seeds is not
measured (each seed costs the full pretraining again). The LoRAs tuned on this base report their
per-attribute accuracy before and after and the spread across their training seeds in
`assets/toy-dpo/MODEL_CARD.md` and `assets/toy-dde/MODEL_CARD.md`; the alignment study comparing
every variant is [docs/RESULTS.md](../../docs/RESULTS.md).
"""


def model_card_markdown(card: dict) -> str:
    ev = card["held_out_eval"]
    rows = "\n".join(f"| {a} | {v:.1%} |" for a, v in ev["accuracy"].items())
    sweep = ", ".join(f"{g}: {v:.3f}" for g, v in card.get("guidance_sweep", {}).items())
    recipe = (f"offset noise {card.get('offset_noise', 0)}, multi-resolution noise {card.get('pyramid_noise', 0)}, "
              f"cross-attention at {card.get('attention', '8')} px, coordinate planes "
              f"{'yes' if card.get('coords') else 'no'}, caption dropout {card.get('drop', 0.1)}, "
              f"per-attribute caption dropout {card.get('attr_drop', 0)}, word-embedding initialisation std "
              f"{card.get('word_init') or '0.02 (CLIP default)'}, "
              f"loss weight min(1 + 1/SNR, {card.get('weight_cap', 1.0)}), caption in every ResNet block (scale and "
              f"shift) {'yes' if card.get('text_film') else 'no'}")
    return f"""# Toy base model

The embedded world's base text-to-image model (32x32 RGB, pixel space), trained by this repo.

- Command: `{card['command']}`
- Seed {card['seed']}, {card['steps']} steps of batch {card['batch']}, AdamW lr {card['lr']}, EMA {card['ema']}
- Recipe: {recipe}
- Wall time: {card['train_wall_seconds'] / 60:.1f} min training on {card['machine']} (torch {card['torch']})
- UNet2DConditionModel {card['unet_parameters'] / 1e6:.2f} M parameters; CLIP text encoder
  {card['text_encoder_parameters'] / 1e6:.2f} M parameters; DDPM scaled-linear schedule (SD1.5's betas)
- Default guidance {ev['guidance']}""" + (f""", chosen on {SWEEP_SCENES} training-split scenes x 1 seed (mean judge
  score per scale: {sweep})""" if sweep else "") + f"""

## Judge on held-out scenes

{ev['scenes']} scenes never seen in training x {ev['seeds']} seeds = {ev['n']} images, DDIM {ev['steps']} steps,
guidance {ev['guidance']}. Mean judge score {ev['total']:.3f}; colour and shape both right in
{ev['colour_and_shape']:.1%}; every named attribute right in {ev['all_correct']:.1%}.

| attribute | accuracy |
|---|---|
{rows}

These numbers were written by `{card['eval_command']}` (evaluation took {card['eval_wall_seconds']:.0f} s).
{_trials_markdown(card.get('trials', [])) or TRIALS_RECORD}{RELATED.format(seed=card['seed'])}"""


if __name__ == "__main__":
    main()
