"""build_app() composes the app from handlers over an :class:`app.runtime.Runtime`; launching
happens only in app.__main__. Handlers format; the math is in dde/ and analysis/, the model work in
the runtime. A ValueError from below becomes a message in the UI (gr.Error), never a dead spinner."""

from __future__ import annotations

import functools
import inspect
import os
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import curves, plots  # noqa: E402
from app.runtime import MAX_IMAGES, MAX_STEPS, Runtime, finite_number, whole_number  # noqa: E402
from dde import credit  # noqa: E402
from dde.config import field_help  # noqa: E402

ABOUT = """**DDE (Denoised Distribution Estimation)** aligns a text-to-image diffusion model with human
preferences through a DPO-style loss whose per-timestep credit comes from estimating the terminal
denoised distribution from every step t: a stepwise estimate from T down to t and a single-shot DDIM
estimate from t to 0. Their product concentrates the credit on the middle of the trajectory, where
the image's content is decided; Diffusion-DPO gives every timestep the same credit. It costs one
model evaluation per image per step, as Diffusion-DPO does.

**Which formulas are ours.** The method comes from "Preference Alignment for Diffusion Model via
Explicit Denoised Distribution Estimation" (Shi, Wang, Li, Chu, arXiv 2411.14871). The credit
weights here are *DDE as derived in this project from the paper's published description*, not the
paper's own equations: the reliability of the single-shot estimate
rho_t = clip(1 - s_t r_t / v, rho_min, 1) with s_t = (1 - alpha_bar_t) / alpha_bar_t, the
calibration table r_t (the reference model's eps error, EMA-updated), the factors rho_t
(single-shot) and 1 - rho_t (stepwise), and the DDE weight w(t) = rho_t (1 - rho_t), mean 1 over
the training range. The Diffusion-DPO loss they multiply is Diffusion-DPO's. All of it lives in
one module, `dde/credit.py`, so the paper's exact closed form can be swapped in there.

The figure: the uncalibrated DDE weight (alpha_bar (1 - alpha_bar)) against Diffusion-DPO's uniform
weight on Stable Diffusion's schedule; it peaks at t = 354.

**Tabs.** *Compare*: base vs tuned from the same noise, with scores and the x0 predictions along
the trajectory. *Credit assignment*: the weights of every variant, a run's calibrated DDE weight,
the measured per-timestep credit of runs. *Estimation error*: how well the model's x0 estimate from
step t matches the data. *Fine-tune*: train DDE, Diffusion-DPO or an ablation and watch it learn.
*Evaluate*: score models on a prompt set with confidence intervals and win rates."""

DEFAULT_VARIANTS = ["dpo", "dde", "dde-step", "dde-single"]
EXAMPLES = ["a big red circle on the left on a black background",
            "a small blue triangle at the top on a white background",
            "a big green square in the centre on a grey background",
            "a small yellow circle at the bottom on a white background"]
# setting -> (label, lo, hi): what the app lets a browser start; the CLI takes any valid config
FINETUNE_LIMITS = {"steps": ("steps", 1, 5000), "lora_rank": ("LoRA rank", 1, 128), "beta": ("beta", 1e-3, 1e6),
                   "lr": ("learning rate", 1e-8, 1.0), "calibration_batches": ("calibration batches", 0, 64),
                   "batch_pairs": ("pairs per step", 1, 256), "seed": ("seed", 0, 2**31 - 1),
                   "t_from": ("t from", 0, 999), "t_to": ("t to", 1, 1000)}
FINETUNE_VARIANTS = ["dde", "dpo", "dde-closed", "dde-step", "dde-single", "window", "gamma", "spo-window"]


def user_errors(fn):
    """Turn ValueError (bad input, missing file) into a UI message; works for generators too."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as err:
                raise gr.Error(str(err)) from err
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as err:
            raise gr.Error(str(err)) from err
    return call


# ----- credit assignment (pure: no model work) ------------------------------------------------------
def credit_plot(variants: list[str], preset: str, num_steps: float, log_y: bool, cumulative: bool,
                run: str | None = None):
    """Handler: the credit-weight figure and a mass summary; ``run`` overlays its calibrated DDE weight."""
    if not variants and not run:
        raise gr.Error("Choose at least one variant.")
    if num_steps is None or not 10 <= int(num_steps) <= 10_000:
        raise gr.Error("T must be an integer between 10 and 10000.")
    try:
        schedule = curves.schedule_from_preset(preset, int(num_steps))
        frames = [curves.credit_weights_frame(variants, schedule)] if variants else []
        if run:
            frames.append(_calibrated_frame(run, schedule))
    except ValueError as err:
        raise gr.Error(str(err)) from err
    frame = pd.concat(frames, ignore_index=True)
    lo, hi = round(0.2 * schedule.T), round(0.7 * schedule.T)
    mass = curves.mass_in_range(frame, lo, hi)
    peaks = frame.loc[frame.groupby("series", sort=False).value.idxmax()].set_index("series").t
    flat = frame[frame.value > 0].groupby("series", sort=False).value.agg(lambda v: v.max() - v.min() < 1e-9)
    summary = "\n".join(f"| {n} | {'flat' if flat[n] else int(peaks[n])} | {mass[n]:.1%} |" for n in mass.index)
    table = f"| variant | peak t | weight in [{lo}, {hi}) |\n|---|---|---|\n{summary}"
    return plots.credit_weights_figure(frame, log_y=log_y, cumulative=cumulative), table


def _calibrated_frame(run: str, schedule) -> pd.DataFrame:
    """The calibrated DDE weight of a run (its last calibration table) on ``schedule``."""
    path = Path(run)
    schedule = curves.run_schedule(path, schedule)
    table = curves.calibration_table_from_run(str(path), schedule.T)
    if table is None:
        raise ValueError(f"run {path.name} has no calibration table (only calibrated DDE runs log one)")
    w = credit.weights("dde", schedule, table).numpy()
    return pd.DataFrame({"t": range(schedule.T), "series": f"dde calibrated ({path.name})", "value": w, "lo": w,
                         "hi": w, "cumulative": w.cumsum() / w.sum()})


def empirical_credit_plot(runs: list[str]):
    if not runs:
        raise gr.Error("Choose at least one run.")
    frame = curves.empirical_credit_frame({Path(r).name: r for r in runs})
    if frame.empty:
        raise gr.Error("These runs have no credit log yet (credit.jsonl).")
    return plots.empirical_credit_figure(frame)


# ----- the app ------------------------------------------------------------------------------------
def build_app(runtime: Runtime | None = None) -> gr.Blocks:
    rt = runtime or Runtime()

    def credit_view(variants, preset, num_steps, log_y, cumulative, run):
        try:
            run = rt.resolve_run(run) if run else None
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return credit_plot(variants, preset, num_steps, log_y, cumulative, run)

    def empirical(runs):
        try:
            return empirical_credit_plot([rt.resolve_run(r) for r in runs or []])
        except ValueError as err:
            raise gr.Error(str(err)) from err

    def model_choices():
        return [("base model", "base"), *rt.tuned_choices()]

    def run_choices():
        return rt.run_choices()

    # Compare
    @user_errors
    def compare(prompt, negative, seed, steps, guidance, n, tuned, progress=gr.Progress()):
        progress(0, desc="sampling")
        result = rt.compare(prompt, negative, seed, steps, guidance, n, tuned,
                            progress=lambda f, d: progress(f, desc=d))
        info = (f"{len(result.base)} image(s) per model, seed {int(seed)}..{int(seed) + len(result.base) - 1}, "
                f"{int(steps)} DDIM steps, guidance {float(guidance):g}: {result.seconds:.2f} s. Both models start "
                "every image from the same noise.")
        captions = _score_captions(result.scores)
        return ([(im, captions["base"][i]) for i, im in enumerate(result.base)],
                [(im, captions["tuned"][i]) for i, im in enumerate(result.tuned)],
                result.scores, result.base_strip, result.tuned_strip, info)

    # Estimation
    @user_errors
    def estimation(model, samples, log_y, progress=gr.Progress()):
        progress(0, desc="estimation error")
        frame = rt.estimation(model, samples, progress=lambda f, d: progress(f, desc=d))
        table = frame.pivot(index="t", columns="series", values="value").reset_index()
        return plots.estimation_error_figure(frame, log_y=log_y), table.round(5)

    # Fine-tune
    @user_errors
    def finetune(variant, beta, lr, steps, rank, t_lo, t_hi, cal_batches, batch_pairs, seed):
        if variant not in FINETUNE_VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(FINETUNE_VARIANTS)}")
        lim = FINETUNE_LIMITS
        settings = {"variant": variant, "beta": finite_number(beta, *lim["beta"]),
                    "lr": finite_number(lr, *lim["lr"]), "steps": whole_number(steps, *lim["steps"]),
                    "lora_rank": whole_number(rank, *lim["lora_rank"]),
                    "t_range": [whole_number(t_lo, *lim["t_from"]), whole_number(t_hi, *lim["t_to"])],
                    "calibration_batches": whole_number(cal_batches, *lim["calibration_batches"]),
                    "batch_pairs": whole_number(batch_pairs, *lim["batch_pairs"]),
                    "seed": whole_number(seed, *lim["seed"])}
        job = rt.submit(settings)
        yield from _follow(job)

    def _follow(job):
        last = None
        while True:
            done = job.state in ("finished", "cancelled", "failed")
            n = len(job.metrics)
            if done or n != last:
                last = n
                yield _job_view(job, done)
            if done:
                return
            time.sleep(0.5)

    def _job_view(job, done: bool):
        pos = rt.position(job)
        if job.state == "queued":
            status = f"**{job.id}: queued**, {pos} fine-tune(s) ahead of it (one runs at a time on this server)."
        elif job.state == "running":
            m = job.metrics[-1] if job.metrics else {}
            status = (f"**{job.id}: running** {job.cfg.variant}, step {m.get('step', 0)}/{job.cfg.steps}"
                      + (f", loss {m['loss']:.4f}" if m.get("loss") is not None else "")
                      + ("" if job.metrics else " (calibrating)"))
        else:
            took = f" in {job.ended - job.started:.0f} s" if job.started and job.ended else ""
            status = f"**{job.id}: {job.state}**{took}" + (f": {job.error}" if job.error else "")
            if job.lora is not None:
                status += f". Its LoRA is now a *tuned* choice in Compare and Evaluate (run folder `{job.run}`)."
        figs = _training_figures(job)
        lora = str(job.lora) if done and job.lora is not None else None
        lists = refresh_choices() if done else (gr.update(),) * 5
        return (job.id, status, *figs, lora, *lists)

    def _training_figures(job):
        frame = curves.training_curves_frame({job.id: str(job.run)}, ("loss", "implicit_acc", "reward_margin"))
        figs = [plots.training_curves_figure(frame, m) if not frame.empty else None
                for m in ("loss", "implicit_acc", "reward_margin")]
        cal, schedule = None, curves.run_schedule(job.run)
        if schedule is not None and (job.run / "calibration.jsonl").is_file():
            frame = curves.calibration_frame(str(job.run), schedule, every=10)
            cal = plots.calibration_figure(frame) if not frame.empty else None
        return (*figs, cal)

    @user_errors
    def cancel(job_id):
        if not job_id:
            raise ValueError("no fine-tune of yours to cancel")
        job = rt.cancel(job_id)
        return f"**{job.id}**: cancel requested; it stops after the current step and keeps a checkpoint."

    # Evaluate
    @user_errors
    def evaluate(source, upload, max_prompts, models, scorers, seeds, steps, progress=gr.Progress()):
        from analysis.evaluate import summarise

        limit = whole_number(max_prompts, "the number of prompts", 1, 10**6)
        prompts = _prompt_set(source, upload)[:limit]
        names = ["base", *[m for m in models if m != "base"]]
        progress(0, desc="evaluating")
        table = rt.evaluate(prompts, names, scorers, seeds, steps, progress=lambda f, d: progress(f, desc=d))
        labels = dict(model_choices())
        label_of = {v: k for k, v in labels.items()}
        table["model"] = table.model.map(lambda s: label_of.get(s, Path(s).name))
        summary = summarise(table, label_of.get("base", "base"))
        path = rt.out / "evaluations" / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        grid = _best_worst(table, names, label_of, int(steps))
        return summary.round(4), plots.evaluation_figure(summary), grid, str(path)

    def _best_worst(table, names, label_of, steps):
        if len(names) < 2:
            return []
        base, other = label_of.get(names[0], names[0]), label_of.get(names[1], Path(names[1]).name)
        a = table[table.model == base].set_index(["prompt", "seed"]).score
        b = table[table.model == other].set_index(["prompt", "seed"]).score
        diff = (b - a.reindex(b.index)).sort_values()
        picks = list(diff.index[-3:][::-1]) + list(diff.index[:3])
        picks = list(dict.fromkeys(picks))
        prompts, seeds = [p for p, _ in picks], [int(s) for _, s in picks]
        ims_a = rt.images_for(names[0], prompts, seeds, steps)
        ims_b = rt.images_for(names[1], prompts, seeds, steps)
        out = []
        for (p, s), ia, ib in zip(picks, ims_a, ims_b):
            d = diff[(p, s)]
            out += [(ia, f"{base}: {a[(p, s)]:.3f} | {p}"), (ib, f"{other}: {b[(p, s)]:.3f} ({d:+.3f})")]
        return out

    def refresh_choices():
        return (gr.update(choices=model_choices()[1:]), gr.update(choices=model_choices()),
                gr.update(choices=[("", "")] + run_choices()), gr.update(choices=run_choices()),
                gr.update(choices=model_choices()))

    with gr.Blocks(title="DDE: Denoised Distribution Estimation") as demo:
        gr.Markdown(f"# DDE: preference alignment with denoised distribution estimation\n"
                    f"Backend: **{rt.kind}**{' (' + rt.model_path + ')' if rt.model_path else ' (embedded world)'}; "
                    f"outputs under `{rt.out}`.")
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column(scale=1):
                    prompt = gr.Textbox(EXAMPLES[0], label="Prompt", lines=2, max_length=1000)
                    negative = gr.Textbox("", label="Negative prompt")
                    with gr.Row():
                        seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                        n_images = gr.Slider(1, MAX_IMAGES, 4, step=1, label="Images")
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, 25, step=1, label="DDIM steps")
                        guidance = gr.Slider(0, 15, rt.default_guidance, step=0.5, label="Guidance")
                    tuned = gr.Dropdown(model_choices()[1:], value=rt.default_tuned, allow_custom_value=True,
                                        label="Tuned model",
                                        info="a listed model, or the path of a LoRA .safetensors or a run folder")
                    generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    gr.Examples([[e] for e in EXAMPLES], inputs=[prompt], label="Example prompts")
                with gr.Column(scale=2):
                    with gr.Row():
                        base_gallery = gr.Gallery(label="Base model", columns=4, height=300, elem_id="base-gallery")
                        tuned_gallery = gr.Gallery(label="Tuned model", columns=4, height=300, elem_id="tuned-gallery")
                    compare_info = gr.Markdown(label="Info", elem_id="compare-info")
                    scores = gr.Dataframe(label="Scores per image", interactive=False)
                    base_strip = gr.Image(label="Base: x0 prediction along the trajectory (image 1)", type="pil")
                    tuned_strip = gr.Image(label="Tuned: x0 prediction along the trajectory (image 1)", type="pil")
            compare_inputs = [prompt, negative, seed, steps, guidance, n_images, tuned]
            compare_outputs = [base_gallery, tuned_gallery, scores, base_strip, tuned_strip, compare_info]
            generate.click(compare, compare_inputs, compare_outputs, api_name="compare")
            prompt.submit(compare, compare_inputs, compare_outputs, api_visibility="private")

        with gr.Tab("Credit assignment"):
            with gr.Row():
                with gr.Column(scale=1):
                    variants = gr.CheckboxGroup(credit.variant_names(), value=DEFAULT_VARIANTS, label="Variants")
                    preset = gr.Dropdown(list(curves.SCHEDULER_PRESETS), value=next(iter(curves.SCHEDULER_PRESETS)),
                                         label="Scheduler config")
                    num_steps = gr.Number(1000, label="T (training timesteps)", precision=0)
                    log_y = gr.Checkbox(False, label="Log scale")
                    cumulative = gr.Checkbox(False, label="Cumulative mass")
                    shipped_dde = next((v for k, v in run_choices() if k == "shipped dde run"), "")
                    cal_run = gr.Dropdown([("", "")] + run_choices(), value=shipped_dde,
                                          label="Overlay a run's calibrated DDE weight",
                                          info="calibrated on that run's own schedule and data")
                with gr.Column(scale=3):
                    plot = gr.Plot(label="Credit weights", elem_id="credit-plot")
                    summary = gr.Markdown(label="Summary")
            credit_inputs = [variants, preset, num_steps, log_y, cumulative, cal_run]
            for component in credit_inputs:
                component.change(credit_view, credit_inputs, [plot, summary], api_visibility="private")
            demo.load(credit_view, credit_inputs, [plot, summary], api_name="credit_plot")
            gr.Markdown("### Measured credit per timestep (|dL/d delta| from each run's credit log)")
            with gr.Row():
                emp_runs = gr.CheckboxGroup(run_choices(), value=[v for _, v in run_choices()[:2]], label="Runs")
                emp_button = gr.Button("Plot measured credit")
            emp_plot = gr.Plot(label="Empirical credit")
            emp_button.click(empirical, [emp_runs], [emp_plot], api_name="empirical_credit")
            if emp_runs.value:
                demo.load(empirical, [emp_runs], [emp_plot], api_visibility="private")

        with gr.Tab("Estimation error"):
            gr.Markdown("Error of the terminal-sample estimate from step t (method.md section 6): the single-shot "
                        "x0 prediction and K-step DDIM, against the data variance, on training images. Computed on "
                        "demand, then cached.")
            with gr.Row():
                est_model = gr.Dropdown(model_choices(), value="base", allow_custom_value=True, label="Model")
                est_samples = gr.Slider(4, 128, 32, step=4, label="Images")
                est_log = gr.Checkbox(True, label="Log scale")
                est_button = gr.Button("Compute", variant="primary")
            est_plot = gr.Plot(label="Estimation error")
            est_table = gr.Dataframe(label="Values", interactive=False)
            est_button.click(estimation, [est_model, est_samples, est_log], [est_plot, est_table],
                             api_name="estimation")

        with gr.Tab("Fine-tune"):
            helps = field_help()
            job_id = gr.State("")
            with gr.Row():
                with gr.Column(scale=1):
                    ft_variant = gr.Dropdown(FINETUNE_VARIANTS, value="dde", label="Variant", info=helps["variant"])
                    with gr.Row():
                        ft_beta = gr.Number(500.0, label="beta", info=helps["beta"])
                        ft_lr = gr.Number(3e-4, label="Learning rate")
                    with gr.Row():
                        ft_steps = gr.Number(50, label="Steps", precision=0, minimum=1, maximum=5000)
                        ft_rank = gr.Number(8, label="LoRA rank", precision=0, minimum=1)
                    with gr.Row():
                        ft_tlo = gr.Number(0, label="t from", precision=0)
                        ft_thi = gr.Number(1000, label="t to (exclusive)", precision=0)
                    with gr.Row():
                        ft_cal = gr.Number(8, label="Calibration batches", precision=0, minimum=0,
                                           info=helps["calibration_batches"])
                        ft_batch = gr.Number(16, label="Pairs per step", precision=0, minimum=1)
                    ft_seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                    with gr.Row():
                        ft_start = gr.Button("Start fine-tune", variant="primary", elem_id="start-finetune")
                        ft_cancel = gr.Button("Cancel", variant="stop")
                with gr.Column(scale=2):
                    ft_status = gr.Markdown("No fine-tune started in this browser session.", label="Status",
                                            elem_id="finetune-status")
                    with gr.Row():
                        ft_loss = gr.Plot(label="Loss")
                        ft_acc = gr.Plot(label="Implicit accuracy")
                    with gr.Row():
                        ft_margin = gr.Plot(label="Reward margin")
                        ft_calplot = gr.Plot(label="Calibrated DDE weight")
                    ft_file = gr.File(label="LoRA (safetensors)", interactive=False)
            ft_inputs = [ft_variant, ft_beta, ft_lr, ft_steps, ft_rank, ft_tlo, ft_thi, ft_cal, ft_batch, ft_seed]

        with gr.Tab("Evaluate"):
            with gr.Row():
                with gr.Column(scale=1):
                    ev_source = gr.Radio(["held-out toy scenes", "uploaded text file"], value="held-out toy scenes",
                                         label="Prompt set")
                    ev_upload = gr.File(label="Prompts, one per line (UTF-8 text)", file_types=[".txt"],
                                        type="filepath")
                    ev_max = gr.Number(16, label="At most this many prompts", precision=0, minimum=1)
                    ev_models = gr.CheckboxGroup(model_choices(), value=["base", rt.default_tuned] if rt.default_tuned
                                                 else ["base"], label="Models (base is the reference)")
                    ev_scorers = gr.CheckboxGroup(list(rt.scorer_paths), value=list(rt.scorer_paths)[:1],
                                                  label="Scorers")
                    with gr.Row():
                        ev_seeds = gr.Number(1, label="Seeds per prompt", precision=0, minimum=1, maximum=8)
                        ev_steps = gr.Slider(1, MAX_STEPS, 25, step=1, label="DDIM steps")
                    ev_button = gr.Button("Evaluate", variant="primary")
                with gr.Column(scale=2):
                    ev_table = gr.Dataframe(label="Summary (95% bootstrap CIs; win rate vs base, ties 1/2)",
                                            interactive=False)
                    ev_plot = gr.Plot(label="Mean score")
                    ev_grid = gr.Gallery(label="Best and worst pairs (base | tuned, by score difference)", columns=4,
                                         height=360)
                    ev_csv = gr.File(label="Per-image scores (CSV)", interactive=False)
            ev_button.click(evaluate, [ev_source, ev_upload, ev_max, ev_models, ev_scorers, ev_seeds, ev_steps],
                            [ev_table, ev_plot, ev_grid, ev_csv], api_name="evaluate")

        with gr.Tab("About"):
            gr.Markdown(ABOUT)
            schedule = curves.schedule_from_preset(next(iter(curves.SCHEDULER_PRESETS)))
            gr.Plot(plots.credit_weights_figure(curves.credit_weights_frame(["dpo", "dde-closed"], schedule)),
                    label="DDE vs Diffusion-DPO credit")
            refresh = gr.Button("Refresh model and run lists")

        lists = [tuned, est_model, cal_run, emp_runs, ev_models]
        ft_outputs = [job_id, ft_status, ft_loss, ft_acc, ft_margin, ft_calplot, ft_file, *lists]
        ft_start.click(finetune, ft_inputs, ft_outputs, api_name="finetune", concurrency_limit=16)
        ft_cancel.click(cancel, [job_id], [ft_status], api_name="cancel_finetune", concurrency_limit=16)
        refresh.click(refresh_choices, None, lists,
                      api_visibility="private")
    return demo


def _score_captions(scores: pd.DataFrame) -> dict[str, list[str]]:
    out = {"base": [], "tuned": []}
    for _, row in scores.iterrows():
        for label in out:
            parts = [f"{c.rsplit(' ', 1)[0]} {row[c]:.3f}" for c in scores.columns
                     if c.endswith(f" {label}") and pd.notna(row[c])]
            out[label].append(f"#{int(row['image'])} seed {int(row['seed'])}" + (": " + ", ".join(parts) if parts
                                                                                  else ""))
    return out


def _prompt_set(source: str, upload) -> list[str]:
    from analysis.__main__ import read_prompts

    if source == "uploaded text file":
        if not upload:
            raise ValueError("upload a text file of prompts, one per line")
        return read_prompts(str(upload))
    return read_prompts("held-out")
