"""Train the shipped DDE-tuned toy LoRA (and a Diffusion-DPO run for comparison) with the repo's own
trainer, evaluate both against the base model with paired seeds on held-out scenes, and write
assets/toy-dde/: the DDE LoRA and config, both runs' logs (runs/<variant>/), the evaluation, and
the model card.

    python -m dde.toy.ship --config configs/toy-dde.yaml --baseline configs/toy-dpo.yaml [--seeds 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from dde.config import load_config, replace
from dde.io import atomic_write_json, atomic_write_text
from dde.train import train

ASSETS = Path(__file__).resolve().parents[2] / "assets"
RUN_LOGS = ("config.yaml", "scheduler_config.json", "metrics.jsonl", "credit.jsonl", "calibration.jsonl",
            "val.jsonl", "status.json")


def _train(config: str) -> tuple[object, Path, float]:
    cfg = load_config(config)
    cfg = replace(cfg, output_dir=str(Path("runs") / f"ship-{cfg.variant}"))
    t0 = time.time()
    return cfg, train(cfg), time.time() - t0


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m dde.toy.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/toy-dde.yaml")
    ap.add_argument("--baseline", default="configs/toy-dpo.yaml", help="a second run to compare ('' for none)")
    ap.add_argument("--out", default=str(ASSETS / "toy-dde"))
    ap.add_argument("--seeds", type=int, default=2, help="samples per held-out scene")
    args = ap.parse_args(argv)
    from analysis.evaluate import evaluate_models, summarise
    from dde.backends.toy import ToyBackend
    from dde.toy.world import split_scenes

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for config in [args.config, args.baseline] if args.baseline else [args.config]:
        cfg, run, seconds = _train(config)
        runs[cfg.variant] = (cfg, run, seconds)
        logs = out / "runs" / cfg.variant
        logs.mkdir(parents=True, exist_ok=True)
        for name in RUN_LOGS:
            if (run / name).is_file():
                shutil.copyfile(run / name, logs / name)
    cfg, run, train_seconds = runs[load_config(args.config).variant]
    shutil.copyfile(run / "final" / "lora.safetensors", out / "lora.safetensors")
    shutil.copyfile(run / "final" / "config.yaml", out / "config.yaml")
    held_out = [s.caption for s in split_scenes()[1]]
    models = {"base": ToyBackend.load(cfg.model)}
    for variant, (_, run_dir, _) in runs.items():
        models[variant] = ToyBackend.load(cfg.model, lora=run_dir / "final" / "lora.safetensors")
    table = evaluate_models(models, held_out, seeds=args.seeds, steps=25)
    summary = summarise(table, "base")
    table.to_csv(out / "eval_images.csv", index=False)
    summary.to_csv(out / "eval_summary.csv", index=False)
    command = "python -m dde.toy.ship " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command, "train_seconds": {v: round(s, 1) for v, (_, _, s) in runs.items()},
            "held_out_prompts": len(held_out), "seeds": args.seeds, "steps": 25,
            "guidance": models["base"].default_guidance, "summary": summary.to_dict(orient="records")}
    atomic_write_json(meta, out / "card.json")
    atomic_write_text(_card(cfg, meta, summary), out / "MODEL_CARD.md")
    print(summary.to_string(index=False))
    return out


def _card(cfg, meta: dict, summary) -> str:
    from analysis.evaluate import markdown_table

    cols = ["model", "n", "score", "score_lo", "score_hi", "win_rate", "win_lo", "win_hi", "acc_shape", "acc_colour",
            "acc_size", "acc_position", "acc_background"]
    times = ", ".join(f"{v} {s / 60:.1f} min" for v, s in meta["train_seconds"].items())
    return f"""# Toy DDE-tuned LoRA

The app's default "tuned" model: a LoRA on the shipped toy base model, trained by the repo's own
trainer on the shipped preference pairs (`assets/toy-pairs.parquet`). A Diffusion-DPO run with the
same settings except the variant is trained beside it for comparison (its logs are in `runs/`,
its weights are not shipped).

- Command: `{meta['command']}` (training, with calibration and validation: {times})
- Config: `config.yaml` beside this file (variant {cfg.variant}, beta {cfg.beta}, lr {cfg.lr}, LoRA rank
  {cfg.lora_rank}, {cfg.steps} steps of {cfg.batch_pairs} pairs)

## Judge scores against the base model

{meta['held_out_prompts']} held-out scenes (never in pretraining, nor in the pairs) x {meta['seeds']} seeds,
DDIM {meta['steps']} steps, guidance {meta['guidance']}; every model starts every image from the same
noise. Score: mean judge score with bootstrap 95% CI; win rate: share of paired images where the
model's score beats the base model's (ties 1/2), with bootstrap 95% CI. One training seed per
variant: this is a smoke-level comparison, not the alignment study.

{markdown_table(summary.reindex(columns=cols))}
Per-image scores: `eval_images.csv`; this table: `eval_summary.csv`. Written by the command above.
"""


if __name__ == "__main__":
    main()
