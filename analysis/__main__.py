"""Command line for curves and evaluations; every output carries the command that made it.

    python -m analysis evaluate --models base tuned [runs/x] --prompts held-out --seeds 2 --out outputs/eval
    python -m analysis curves --runs dde=runs/toy-dde dpo=runs/toy-dpo --out outputs/curves
    python -m analysis curves --estimation --model base --out outputs/curves      (estimation error, on data)
    python -m analysis all --png --out docs/toy     (the shipped base and tuned models: everything above)

evaluate writes images.csv (per image), summary.csv, summary.md and manifest.json; curves writes one
CSV and one HTML figure per curve, and manifest.json.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

from tqdm import tqdm

from analysis import curves, plots


def _manifest(out: Path, extra: dict) -> None:
    import diffusers
    import torch
    import transformers

    from dde.io import atomic_write_json

    atomic_write_json({"command": "python -m analysis " + shlex.join(sys.argv[1:]), "date": time.strftime("%F %T %Z"),
                       "machine": platform.platform(), "python": platform.python_version(),
                       "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                                    "transformers": transformers.__version__},
                       **extra}, out / "manifest.json")


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


def read_prompts(spec: str) -> list[str]:
    """``held-out`` (the toy world's held-out scenes) or a UTF-8 text file, one prompt per line."""
    if spec == "held-out":
        from dde.toy.world import split_scenes

        return [s.caption for s in split_scenes()[1]]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"prompt file {path} does not exist (or use 'held-out')")
    try:
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file ({err})") from err
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def cmd_evaluate(args) -> None:
    from analysis.evaluate import evaluate_models, markdown_table, summarise
    from analysis.scorers import get_scorer

    prompts = read_prompts(args.prompts)[: args.limit or None]
    paths = {"clip": args.clip_checkpoint, "hps": args.hps_checkpoint, "pickscore": args.pickscore_model}
    scorers = {name: get_scorer(name, paths.get(name), args.clip_model if name == "clip" else None)
               for name in args.scorers}
    models = {_model_name(spec): _load_model(spec) for spec in args.models}
    bar = tqdm(total=len(prompts) * args.seeds * len(models), desc="evaluate")
    table = evaluate_models(models, prompts, seeds=args.seeds, steps=args.steps, guidance=args.guidance,
                            scorers=scorers, progress=bar.update)
    bar.close()
    summary = summarise(table, baseline=next(iter(models)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "images.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(markdown_table(summary))
    notes = write_figures(out, {"scores": plots.evaluation_figure(summary)}, args.png)
    _manifest(out, {"models": args.models, "prompts": args.prompts, "n_prompts": len(prompts), "seeds": args.seeds,
                    "steps": args.steps, "guidance": args.guidance,
                    "scorers": {name: vars(scorer.info) for name, scorer in scorers.items()}})
    print(summary.to_string(index=False))
    print("\n".join(notes))


def _model_name(spec: str) -> str:
    return spec if spec in ("base", "tuned") else Path(spec.split(":", 1)[-1].split("+")[-1]).name


def _load_model(spec: str):
    """A toy spec (see dde.backends.load_toy_spec), ``sd:<hub id or directory>`` or ``sdxl:<...>``;
    ``sd:<model>+<lora .safetensors>`` adds a LoRA, ``sd:<model>+<unet folder>`` swaps the UNet."""
    from dde.backends import load_backend, load_toy_spec

    for kind in ("sdxl", "sd"):
        if spec.startswith(kind + ":"):
            model, _, extra = spec[len(kind) + 1:].partition("+")
            if not extra:
                return load_backend(kind, model)
            key = "lora" if extra.endswith(".safetensors") else "unet"
            return load_backend(kind, model, **{key: extra})
    return load_toy_spec(spec)


def cmd_curves(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    schedule = curves.schedule_from_preset(next(iter(curves.SCHEDULER_PRESETS)))
    frame = curves.credit_weights_frame(args.variants, schedule)
    written["credit_weights"] = (frame, plots.credit_weights_figure(frame))
    runs = dict(item.split("=", 1) for item in args.runs)
    if runs:
        train = curves.training_curves_frame(runs, smooth=args.smooth)
        written["training"] = (train, plots.training_curves_figure(train, "loss"))
        for metric in ("implicit_acc", "reward_margin"):
            written[f"training_{metric}"] = (train[train.metric == metric],
                                             plots.training_curves_figure(train, metric))
        emp = curves.empirical_credit_frame(runs)
        written["empirical_credit"] = (emp, plots.empirical_credit_figure(emp))
        for name, run in runs.items():
            cal = curves.calibration_frame(run, curves.run_schedule(run, schedule), every=args.every)
            if not cal.empty:
                written[f"calibration_{name}"] = (cal, plots.calibration_figure(cal))
    if args.estimation:
        tables = [curves.calibration_table_from_run(run, schedule.T) for run in runs.values()]
        table = next((t for t in tables if t is not None), None)  # the first run with a table predicts s_t r_t
        written["estimation_error"] = _estimation(args, table)
    for name, (frame, _) in written.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    notes = write_figures(out, {name: fig for name, (_, fig) in written.items()}, args.png)
    _manifest(out, {"curves": sorted(written), "runs": runs})
    print("\n".join([str(out / f"{name}.csv") for name in written] + notes))


def cmd_all(args) -> None:
    """The shipped base and tuned toy models: the evaluation and every curve, under one folder."""
    from dde.backends.toy import ASSETS

    out = Path(args.out)
    shipped_runs = sorted((ASSETS / "toy-dde" / "runs").glob("*/metrics.jsonl"))
    cmd_evaluate(argparse.Namespace(**{**vars(args), "models": ["base", "tuned"], "out": str(out / "eval")}))
    cmd_curves(argparse.Namespace(**{**vars(args), "runs": [f"{p.parent.name}={p.parent}" for p in shipped_runs],
                                     "estimation": True, "model": "base", "out": str(out / "curves")}))


ALL_CALIBRATION_EVERY = 20  # 200 logged steps x 1000 timesteps is 9 MB of CSV; every 20th row tells the story


def _estimation(args, table=None):
    from analysis.estimation import estimation_error_frame
    from dde.backends import load_toy_spec
    from dde.data import PairData, read_pairs
    from dde.train import DEFAULT_PAIRS

    backend = load_toy_spec(args.model)
    data = PairData(read_pairs(args.data or DEFAULT_PAIRS), size=32, val_fraction=0.0)
    batch = data.batch(data.train_indices(0, args.samples))
    x0 = backend.images_to_latents(batch.images[: args.samples])
    bar = tqdm(total=10, desc="estimation error")
    frame = estimation_error_frame(backend, x0, batch.captions, calibration=table,
                                   progress=lambda i, n: bar.update(1))
    bar.close()
    return frame, plots.estimation_error_figure(frame)


def _evaluate_args(parser: argparse.ArgumentParser, *, models: bool = True) -> None:
    if models:
        parser.add_argument("--models", nargs="+", default=["base", "tuned"],
                            help="base, tuned, a LoRA file, a run directory, a toy model directory, or "
                            "sd:|sdxl:<hub id or directory>[+<LoRA .safetensors or UNet folder>]; the first is the "
                            "baseline")
    parser.add_argument("--prompts", default="held-out", help="held-out, or a text file with one prompt per line")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=None, help="default: each model's default guidance")
    parser.add_argument("--scorers", nargs="+", default=["judge"], choices=["judge", "clip", "hps", "pickscore"],
                        help="the first is the primary score (judge only understands the toy world's captions)")
    parser.add_argument("--clip-model", default="ViT-L-14", help="open_clip architecture of --clip-checkpoint")
    parser.add_argument("--clip-checkpoint", default=None, help="local open_clip state-dict file")
    parser.add_argument("--hps-checkpoint", default=None, help="local HPS v2 checkpoint (HPS_v2_compressed.pt)")
    parser.add_argument("--pickscore-model", default=None, help="local PickScore_v1 directory or hub id")


def _curve_args(parser: argparse.ArgumentParser, *, runs: bool = True) -> None:
    from dde import credit

    parser.add_argument("--variants", nargs="+", default=["dpo", "dde", "dde-step", "dde-single", "window", "gamma"],
                        choices=credit.variant_names())
    if runs:
        parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=RUN_DIR")
        parser.add_argument("--estimation", action="store_true", help="also measure the estimation error")
        parser.add_argument("--model", default="base", help="the model whose estimation error is measured")
    parser.add_argument("--smooth", type=int, default=10)
    parser.add_argument("--every", type=int, default=1, help="keep every n-th calibration row")
    parser.add_argument("--data", default=None, help="pairs whose winners serve as data (default: the shipped pairs)")
    parser.add_argument("--samples", type=int, default=64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="paired generation and scoring")
    _evaluate_args(ev)
    cu = sub.add_parser("curves", help="credit weights, training curves, empirical credit, calibration, estimation")
    _curve_args(cu)
    al = sub.add_parser("all", help="evaluation and every curve for the shipped base and tuned toy models")
    _evaluate_args(al, models=False)
    _curve_args(al, runs=False)
    al.set_defaults(every=ALL_CALIBRATION_EVERY)
    for parser, default in ((ev, "outputs/eval"), (cu, "outputs/curves"), (al, "outputs/toy")):
        parser.add_argument("--png", action="store_true", help="also write PNG figures (kaleido + chromium)")
        parser.add_argument("--out", default=default)
    args = ap.parse_args(argv)
    try:
        {"evaluate": cmd_evaluate, "curves": cmd_curves, "all": cmd_all}[args.command](args)
    except ValueError as err:
        ap.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
