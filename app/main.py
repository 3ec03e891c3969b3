"""build_app() composes the app; launching happens only in app.__main__.

At this stage the app has the credit-assignment view (the full app composes more tabs here).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from analysis import curves, plots  # noqa: E402
from dde import credit  # noqa: E402

ABOUT = """**DDE (Denoised Distribution Estimation)** aligns a text-to-image diffusion model with human
preferences through a DPO-style loss whose per-timestep credit comes from estimating the terminal
denoised distribution from every step: a stepwise estimate from T down to t and a single-shot DDIM
estimate from t to 0. Their product concentrates the credit on the middle of the trajectory.
The formulas here are *DDE as derived in this project from the paper's published description*
(arXiv 2411.14871); they live in one module, `dde/credit.py`."""

DEFAULT_VARIANTS = ["dpo", "dde", "dde-step", "dde-single"]


def credit_plot(variants: list[str], preset: str, num_steps: float, log_y: bool, cumulative: bool):
    """Handler: the credit-weight figure and a mass summary for the chosen variants."""
    if not variants:
        raise gr.Error("Choose at least one variant.")
    if num_steps is None or not 10 <= int(num_steps) <= 10_000:
        raise gr.Error("T must be an integer between 10 and 10000.")
    try:
        schedule = curves.schedule_from_preset(preset, int(num_steps))
        frame = curves.credit_weights_frame(variants, schedule)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    lo, hi = round(0.2 * schedule.T), round(0.7 * schedule.T)
    mass = curves.mass_in_range(frame, lo, hi)
    peaks = frame.loc[frame.groupby("series", sort=False).value.idxmax()].set_index("series").t
    summary = "\n".join(f"| {n} | {int(peaks[n])} | {mass[n]:.1%} |" for n in mass.index)
    table = f"| variant | peak t | weight in [{lo}, {hi}) |\n|---|---|---|\n{summary}"
    return plots.credit_weights_figure(frame, log_y=log_y, cumulative=cumulative), table


def build_app() -> gr.Blocks:
    with gr.Blocks(title="DDE: Denoised Distribution Estimation") as demo:
        gr.Markdown("# DDE: preference alignment with denoised distribution estimation")
        with gr.Tab("Credit assignment"):
            with gr.Row():
                with gr.Column(scale=1):
                    variants = gr.CheckboxGroup(credit.variant_names(), value=DEFAULT_VARIANTS, label="Variants")
                    preset = gr.Dropdown(list(curves.SCHEDULER_PRESETS), value=next(iter(curves.SCHEDULER_PRESETS)),
                                         label="Scheduler config")
                    num_steps = gr.Number(1000, label="T (training timesteps)", precision=0)
                    log_y = gr.Checkbox(False, label="Log scale")
                    cumulative = gr.Checkbox(False, label="Cumulative mass")
                with gr.Column(scale=3):
                    plot = gr.Plot(label="Credit weights")
                    summary = gr.Markdown()
            inputs = [variants, preset, num_steps, log_y, cumulative]
            for component in inputs:
                component.change(credit_plot, inputs, [plot, summary], api_name=False)
            demo.load(credit_plot, inputs, [plot, summary], api_name="credit_plot")
        with gr.Tab("About"):
            gr.Markdown(ABOUT)
    return demo
