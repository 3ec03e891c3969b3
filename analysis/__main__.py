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
from pathlib import Path

from tqdm import tqdm

from analysis import curves, plots
from analysis.figures import write_figures, write_manifest
from analysis.prompts import check_judge_prompts, read_prompts


def cmd_evaluate(args) -> None:
    from analysis.evaluate import evaluate_models, markdown_table
    from analysis.scorers import get_scorer
    from dde.backends.spec import load_model, parse_model_spec, unique_labels

    prompts = read_prompts(args.prompts)[: args.limit or None]
    scorer_names = args.scorers or ["judge"]
    if "judge" in scorer_names:
        check_judge_prompts(prompts)
    specs = [parse_model_spec(spec) for spec in args.models]  # every spec checked before anything loads
    labels = unique_labels(specs)
    paths = {"clip": args.clip_checkpoint, "hps": args.hps_checkpoint, "pickscore": args.pickscore_model}
    scorers = {name: get_scorer(name, paths.get(name), args.clip_model if name == "clip" else None)
               for name in scorer_names}
    models = {label: load_model(spec) for label, spec in zip(labels, specs)}
    bar = tqdm(total=len(prompts) * args.seeds * len(models), desc="evaluate")
    table = evaluate_models(models, prompts, seeds=args.seeds, steps=args.steps, guidance=args.guidance,
                            scorers=scorers, progress=bar.update)
    bar.close()
    summary = summarise_scorers(table, list(scorers), baseline=labels[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "images.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text("\n".join(f"## {name}\n\n" + markdown_table(part.drop(columns="scorer"))
                                             for name, part in summary.groupby("scorer", sort=False)))
    first = summary[summary.scorer == scorer_names[0]]
    notes = write_figures(out, {"scores": plots.evaluation_figure(first)}, args.png)
    write_manifest(out, {"models": dict(zip(labels, args.models)), "prompts": args.prompts,
                         "n_prompts": len(prompts), "seeds": args.seeds, "steps": args.steps,
                         "guidance": args.guidance,
                         "scorers": {name: vars(scorer.info) for name, scorer in scorers.items()}})
    print(summary.to_string(index=False))
    print("\n".join(notes))


def summarise_scorers(table, scorers: list[str], baseline: str):
    """The summary under every scorer, one block of rows per scorer (column ``scorer``)."""
    import pandas as pd

    from analysis.evaluate import summarise

    parts = [summarise(table.assign(score=table[f"score_{name}"]), baseline).assign(scorer=name) for name in scorers]
    return pd.concat(parts, ignore_index=True)


def cmd_curves(args) -> None:
    from dde.run import RunDir

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    schedule = curves.schedule_from_preset(next(iter(curves.SCHEDULER_PRESETS)))
    frame = curves.credit_weights_frame(args.variants, schedule)
    written["credit_weights"] = (frame, plots.credit_weights_figure(frame))
    runs = dict(item.split("=", 1) for item in args.runs)
    for name, run in runs.items():
        if not RunDir.is_run(run):
            raise ValueError(f"{name}={run}: not a run folder (no config.yaml with logs or weights)")
    if runs:
        train = curves.training_curves_frame(runs, smooth=args.smooth)
        written["training"] = (train, plots.training_curves_figure(train, "loss"))
        for metric in ("implicit_acc", "reward_margin"):
            written[f"training_{metric}"] = (train[train.metric == metric],
                                             plots.training_curves_figure(train, metric))
        val = curves.validation_frame(runs)
        if not val.empty:
            written["validation"] = (val, plots.validation_figure(val))
        emp = curves.empirical_credit_frame(runs)
        written["empirical_credit"] = (emp, plots.empirical_credit_figure(emp))
        for name, run in runs.items():
            cal = curves.calibration_frame(run, schedule, every=args.every)
            if not cal.empty:
                written[f"calibration_{name}"] = (cal, plots.calibration_figure(cal))
    if args.estimation:
        tables = [RunDir(run).calibration_table() for run in runs.values()]
        table = next((t for t in tables if t is not None), None)  # the first run with a table predicts s_t r_t
        written["estimation_error"] = _estimation(args, table)
    for name, (frame, _) in written.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    notes = write_figures(out, {name: fig for name, (_, fig) in written.items()}, args.png)
    write_manifest(out, {"curves": sorted(written), "runs": runs})
    print("\n".join([str(out / f"{name}.csv") for name in written] + notes))


def cmd_all(args) -> None:
    """The shipped models: the evaluation of base, Diffusion-DPO and DDE and every curve, under one folder."""
    from dde.backends.spec import SHIPPED

    out = Path(args.out)
    shipped = {name: path.parent / "run" for name, path in SHIPPED.items() if (path.parent / "run").is_dir()}
    cmd_evaluate(argparse.Namespace(**{**vars(args), "models": ["base", *shipped], "out": str(out / "eval")}))
    cmd_curves(argparse.Namespace(**{**vars(args), "runs": [f"{n}={p}" for n, p in shipped.items()],
                                     "estimation": True, "model": "base", "out": str(out / "curves")}))
    _divergence(args, ["base", *shipped], out / "curves")


def _divergence(args, names: list[str], out: Path) -> None:
    """Per DDIM step, each tuned model's x0 distance from the base over the held-out prompts (same
    noise): divergence.csv and its figure, which the app's Credit tab shows."""
    from analysis.divergence import divergence_frame
    from dde.backends.spec import load_model

    prompts = read_prompts(args.prompts)[: args.limit or None]
    bar = tqdm(total=len(prompts), desc="divergence")
    frame = divergence_frame({n: load_model(n) for n in names}, prompts, seeds=1, steps=args.steps,
                             progress=bar.update)
    bar.close()
    frame.to_csv(out / "divergence.csv", index=False)
    print("\n".join([str(out / "divergence.csv"), *write_figures(out, {"divergence": plots.divergence_figure(frame)},
                                                                  args.png)]))


ALL_CALIBRATION_EVERY = 20  # every logged step x 1000 timesteps is megabytes of CSV; every 20th row tells the story


def _estimation(args, table=None):
    from analysis.estimation import estimation_error_frame, held_back_images
    from dde.backends.spec import load_model
    from dde.train import DEFAULT_PAIRS

    backend = load_model(args.model)
    x0, captions = held_back_images(backend, args.data or DEFAULT_PAIRS, args.samples)
    bar = tqdm(total=10, desc="estimation error")
    frame = estimation_error_frame(backend, x0, captions, calibration=table, progress=lambda i, n: bar.update(1))
    bar.close()
    return frame, plots.estimation_error_figure(frame)


def _evaluate_args(parser: argparse.ArgumentParser, *, models: bool = True) -> None:
    if models:
        parser.add_argument("--models", nargs="+", default=["base", "dpo", "dde"],
                            help="base, dde (or tuned), dpo, a LoRA or UNet .safetensors file, a run folder, a toy "
                            "model folder, or sd:|sdxl:<hub id or folder>[+<any of those weights>]; the first is the "
                            "baseline")
    parser.add_argument("--prompts", default="held-out", help="held-out, or a text file with one prompt per line")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=None, help="default: each model's default guidance")
    parser.add_argument("--scorers", nargs="+", default=None, choices=["judge", "clip", "hps", "pickscore"],
                        help="the first is the primary score (default judge, which reads only the toy world's "
                        "captions; checked before any model loads)")
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
    parser.add_argument("--data", default=None,
                        help="pairs whose held-back split serves as data (default: the shipped pairs)")
    parser.add_argument("--samples", type=int, default=64, help="held-back images for the estimation error")


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
