"""Credit assignment: every variant's weight w(t) on a chosen schedule, a run's calibration over
training (r_t, v, the calibrated weight, the clipped region), where the shipped models differ from
the base along the trajectory, and the measured credit of runs. No model work: all from files."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from analysis import curves, plots
from app import ui
from app.paths import ROOT
from app.runtime import Runtime
from app.ui import user_errors
from dde import credit
from dde.limits import Bound, number

DEFAULT_VARIANTS = ["dpo", "dde", "dde-step", "dde-single"]
T_BOUND = Bound("T (training timesteps)", 10, 10_000, 1000, True)
SHIPPED_DIVERGENCE = ROOT / "docs" / "toy" / "curves" / "divergence.csv"


def credit_plot(variants, preset, num_steps, log_y, cumulative, run=None):
    """The credit-weight figure and a mass summary; ``run`` (a RunDir) overlays its calibrated weight."""
    if not isinstance(variants, (list, tuple)) or any(not isinstance(v, str) for v in variants):
        raise ValueError("variants must be a list of variant names")
    if not variants and run is None:
        raise ValueError("choose at least one variant")
    T = number(num_steps, T_BOUND)  # noqa: N806
    if not isinstance(preset, str):
        raise ValueError("choose a scheduler config")
    schedule = curves.schedule_from_preset(preset, T)
    frames = [curves.credit_weights_frame(variants, schedule)] if variants else []
    if run is not None:
        frames.append(calibrated_frame(run, schedule))
    frame = pd.concat(frames, ignore_index=True)
    lo, hi = round(0.2 * schedule.T), round(0.7 * schedule.T)
    mass = curves.mass_in_range(frame, lo, hi)
    peaks = frame.loc[frame.groupby("series", sort=False).value.idxmax()].set_index("series").t
    flat = frame[frame.value > 0].groupby("series", sort=False).value.agg(lambda v: v.max() - v.min() < 1e-9)
    summary = "\n".join(f"| {n} | {'flat' if flat[n] else int(peaks[n])} | {mass[n]:.1%} |" for n in mass.index)
    table = f"| variant | peak t | weight in [{lo}, {hi}) |\n|---|---|---|\n{summary}"
    return plots.credit_weights_figure(frame, log_y=bool(log_y), cumulative=bool(cumulative)), table


def calibrated_frame(run, schedule) -> pd.DataFrame:
    """The calibrated DDE weight of a run (its last calibration table), on the run's own schedule."""
    table = run.calibration_table()
    if table is None:
        raise ValueError(f"run {run.path.name} has no calibration table (only calibrated DDE runs log one)")
    schedule = run.schedule(schedule)
    w = credit.weights("dde", schedule, table).numpy()
    return pd.DataFrame({"t": range(schedule.T), "series": f"dde calibrated ({run.path.name})", "value": w, "lo": w,
                         "hi": w, "cumulative": w.cumsum() / w.sum()})


def build(rt: Runtime) -> dict:
    from app.tabs.compare import credit_weight_frame

    runs = rt.run_choices()
    shipped_dde = next((v for k, v in runs if k == "shipped dde run"), "")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            variants = ui.CheckboxGroup(credit.variant_names(), value=DEFAULT_VARIANTS, label="Variants")
            preset = ui.Dropdown(list(curves.SCHEDULER_PRESETS), value=next(iter(curves.SCHEDULER_PRESETS)),
                                 label="Scheduler config")
            num_steps = ui.Number(T_BOUND.default, label=T_BOUND.label, precision=0)
            log_y = gr.Checkbox(False, label="Log scale")
            cumulative = gr.Checkbox(False, label="Cumulative mass")
            # run menus take any run folder inside the allowed roots (checked by rt.resolve_run), so a run
            # finished after the page loaded works before the menu is refreshed
            cal_run = ui.Dropdown([("", ""), *runs], value=shipped_dde, allow_custom_value=True,
                                  label="Overlay a run's calibrated DDE weight",
                                  info="calibrated on that run's own schedule and data")
        with gr.Column(scale=3):
            plot = gr.Plot(label="Credit weights", elem_id="credit-plot")
            summary = gr.Markdown()
    gr.Markdown("### A run's calibration over training\nThe calibrated single-shot error s_t r_t against the "
                "prompt-conditional variance v, and the calibrated DDE weight, at a few logged steps; shaded: where "
                "s_t r_t >= v (the single-shot estimate is no better than the prompt's mean, so rho is clipped).")
    with gr.Row():
        over_run = ui.Dropdown(runs, value=shipped_dde or None, allow_custom_value=True, label="Run", scale=1)
        over_plot = gr.Plot(label="Calibration over the run", elem_id="calibration-plot", scale=3)
    gr.Markdown("### Where the shipped models differ from the base\nPer DDIM step, the distance between each "
                "shipped tuned model's x0 prediction and the base model's over the held-out prompts (same noise), "
                "with the DDE weight on the second axis: the timesteps where the fine-tune acts.")
    weight = credit_weight_frame(rt)
    div = pd.read_csv(SHIPPED_DIVERGENCE) if SHIPPED_DIVERGENCE.is_file() else None
    gr.Plot(plots.divergence_figure(div, weight, title="Shipped models vs base, held-out prompts")
            if div is not None else None, label="Divergence over the held-out prompts", elem_id="shipped-divergence")
    gr.Markdown("### Measured credit per timestep\n|dL/d delta| from each run's credit log, per unit of the plain "
                "draw distribution (an importance-sampled run reads on the same scale).")
    with gr.Row():
        emp_runs = ui.Dropdown(runs, value=[v for _, v in runs[:2]], multiselect=True, allow_custom_value=True,
                               label="Runs")
        emp_button = gr.Button("Plot measured credit")
    emp_plot = gr.Plot(label="Empirical credit", elem_id="empirical-credit")

    @user_errors
    def credit_view(variants, preset, num_steps, log_y, cumulative, run):
        return credit_plot(variants, preset, num_steps, log_y, cumulative, rt.resolve_run(run) if run else None)

    @user_errors
    def calibration_view(run):
        if not run:
            raise ValueError("choose a run")
        rd = rt.resolve_run(run)
        frame = curves.calibration_frame(rd.path)
        if frame.empty:
            raise ValueError(f"run {rt.paths.show(rd.path)} has no calibration log (only calibrated variants log one)")
        return plots.calibration_over_run_figure(frame)

    @user_errors
    def empirical(runs):
        if not isinstance(runs, (list, tuple)) or not runs:
            raise ValueError("choose at least one run")
        resolved = {rt.paths.show(rt.resolve_run(r).path): str(rt.resolve_run(r).path) for r in runs}
        frame = curves.empirical_credit_frame(resolved)
        if frame.empty:
            raise ValueError("these runs have no credit log yet")
        return plots.empirical_credit_figure(frame)

    inputs = [variants, preset, num_steps, log_y, cumulative, cal_run]
    for component in inputs:
        component.change(credit_view, inputs, [plot, summary], api_visibility="private")
    over_run.change(calibration_view, [over_run], [over_plot], api_visibility="private")
    emp_button.click(empirical, [emp_runs], [emp_plot], api_name="empirical_credit")
    loads = [(credit_view, inputs, [plot, summary], "credit_plot")]
    if shipped_dde:
        loads.append((calibration_view, [over_run], [over_plot], None))
    if emp_runs.value:
        loads.append((empirical, [emp_runs], [emp_plot], None))

    def refresh():
        choices = rt.run_choices()
        return gr.update(choices=[("", ""), *choices]), gr.update(choices=choices), gr.update(choices=choices)

    return {"loads": loads, "refresh": (refresh, [cal_run, over_run, emp_runs])}
