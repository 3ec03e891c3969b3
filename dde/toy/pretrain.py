"""Pretrain the embedded world's base model from a fixed seed, resumably.

    python -m dde.toy.pretrain --out assets/toy-base --steps 4000

Renders training scenes on the fly (held-out scenes are never seen), trains the UNet and the
text encoder jointly with the DDPM epsilon loss on SD1.5's scaled-linear schedule, drops 10% of
captions for classifier-free guidance, keeps an EMA of the weights (the shipped model), and writes
a checkpoint every --ckpt-every steps to --work (resume: run the same command again). At the end
it judges the EMA model on the held-out scenes and writes the model directory with MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from dde import ddim
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
from dde.toy.world import render, split_scenes, to_model


def make_batch(step: int, seed: int, batch: int, scenes, drop: float = 0.1) -> tuple[torch.Tensor, list[str]]:
    """The training batch of ``step``: a pure function of (seed, step), so a resumed run sees the same data."""
    rng = np.random.default_rng([seed, step])
    picks = rng.integers(0, len(scenes), size=batch)
    images = np.stack([render(scenes[i], rng) for i in picks])
    captions = ["" if rng.random() < drop else scenes[i].caption for i in picks]
    return torch.from_numpy(to_model(images)), captions


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


def _load_checkpoint(work: Path, modules: dict, optimizer: torch.optim.Optimizer) -> int:
    file = work / "checkpoint.safetensors"
    if not file.is_file():
        return 0
    tensors = load_file(file)
    for name, m in modules.items():
        m.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + "/")})
    meta = json.loads((work / "checkpoint.json").read_text())
    load_optimizer_state(optimizer, {k[6:]: v for k, v in tensors.items() if k.startswith("optim/")}, meta)
    return int(meta["step"])


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m dde.toy.pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="assets/toy-base", help="model directory to write")
    ap.add_argument("--work", default="runs/toy-pretrain", help="checkpoint folder (resume from here)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=32, help="UNet base channels")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-seeds", type=int, default=4, help="samples per held-out scene for the card")
    ap.add_argument("--guidance", type=float, default=2.0, help="guidance scale of the card's evaluation")
    ap.add_argument("--eval-only", action="store_true",
                    help="re-judge the model already in --out and rewrite its card (no training)")
    args = ap.parse_args(argv)
    if args.eval_only:  # the training facts come from the existing card, the evaluation is redone
        unet, text_encoder, _, meta = toy_model.load_model_dir(args.out)
        train_info = {k: v for k, v in meta["card"].items() if k not in ("held_out_eval", "eval_command",
                                                                         "eval_wall_seconds")}
        return _finish(args, Path(args.out), unet, text_encoder, train_info)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    train_scenes, _ = split_scenes(seed=0)
    schedule = NoiseSchedule.from_scheduler_config(toy_model.SCHEDULER_CONFIG)
    unet, text_encoder = toy_model.build(toy_model.unet_config(args.width), text_encoder_config())
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
        x0, captions = make_batch(step, args.seed, args.batch, train_scenes)
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, schedule.T, (x0.shape[0],), generator=gen)
        x_t = ddim.add_noise(x0, eps, schedule.alpha_bar_at(t))
        cond = text_encoder(input_ids=tokenizer(captions)).last_hidden_state
        loss = per_sample_error(unet(x_t, t, encoder_hidden_states=cond).sample, eps).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        _ema_update(ema_unet, unet, args.ema if step > args.warmup else 0.9)
        _ema_update(ema_text, text_encoder, args.ema if step > args.warmup else 0.9)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % args.ckpt_every == 0 or step + 1 == args.steps:
            _save_checkpoint(work, step + 1, modules, optimizer)
            atomic_write_json({"seconds": prior_seconds + time.time() - t_start}, work / "time.json")
            with open(work / "loss.csv", "a") as handle:
                handle.write(f"{step + 1},{np.mean(losses[-args.ckpt_every:]):.6f}\n")
    train_info = {"seed": args.seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "ema": args.ema,
                  "width": args.width, "train_wall_seconds": round(prior_seconds + time.time() - t_start, 1),
                  "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                  "torch": torch.__version__,
                  "command": f"python -m dde.toy.pretrain --out {args.out} --steps {args.steps} --batch {args.batch} "
                             f"--lr {args.lr} --seed {args.seed} --width {args.width}"}
    return _finish(args, out, ema_unet, ema_text, train_info)


def _finish(args, out: Path, unet, text_encoder, train_info: dict) -> Path:
    """Judge the model on the held-out scenes and write the model directory with its card."""
    from dde.backends.toy import ToyBackend
    from dde.toy.report import judge_scenes

    _, held_out = split_scenes(seed=0)
    backend = ToyBackend(unet.eval(), text_encoder.eval(), ToyTokenizer())
    t0 = time.time()
    report = judge_scenes(backend, held_out, seeds=args.eval_seeds, steps=25, guidance=args.guidance)
    card = {**train_info, "eval_wall_seconds": round(time.time() - t0, 1),
            "unet_parameters": toy_model.count_parameters(unet),
            "text_encoder_parameters": toy_model.count_parameters(text_encoder),
            "held_out_eval": {"scenes": len(held_out), "seeds": args.eval_seeds, "steps": 25,
                              "guidance": args.guidance, **report},
            "eval_command": f"python -m dde.toy.pretrain --out {args.out} --eval-only --eval-seeds {args.eval_seeds} "
                            f"--guidance {args.guidance}"}
    toy_model.save_model_dir(out, unet, text_encoder, extra={"card": card})
    atomic_write_text(model_card_markdown(card), out / "MODEL_CARD.md")
    print(json.dumps(card["held_out_eval"], indent=2))
    return out


def model_card_markdown(card: dict) -> str:
    ev = card["held_out_eval"]
    rows = "\n".join(f"| {a} | {v:.1%} |" for a, v in ev["accuracy"].items())
    return f"""# Toy base model

The embedded world's base text-to-image model (32x32 RGB, pixel space), trained by this repo.

- Command: `{card['command']}`
- Seed {card['seed']}, {card['steps']} steps of batch {card['batch']}, AdamW lr {card['lr']}, EMA {card['ema']}
- Wall time: {card['train_wall_seconds'] / 60:.1f} min training on {card['machine']} (torch {card['torch']})
- UNet2DConditionModel {card['unet_parameters'] / 1e6:.2f} M parameters; CLIP text encoder
  {card['text_encoder_parameters'] / 1e6:.2f} M parameters; DDPM scaled-linear schedule (SD1.5's betas)

## Judge on held-out scenes

{ev['scenes']} scenes never seen in training x {ev['seeds']} seeds = {ev['n']} images, DDIM {ev['steps']} steps,
guidance {ev['guidance']}. Mean judge score {ev['total']:.3f}; colour and shape both right in
{ev['colour_and_shape']:.1%}; every named attribute right in {ev['all_correct']:.1%}.

| attribute | accuracy |
|---|---|
{rows}

These numbers were written by `{card['eval_command']}` (evaluation took {card['eval_wall_seconds']:.0f} s).
"""


if __name__ == "__main__":
    main()
