"""Fine-tune: the training config as a form; start, cancel, and watch it learn: per-step loss,
implicit accuracy and reward margin (points and a smoothed line), the held-back pairs' loss and
accuracy, the judge score of fixed training-split prompts on fixed noise (the reward the fine-tune
is chasing), and the calibrated DDE weight. One fine-tune runs at a time; the rest queue."""

from __future__ import annotations

import time

import gradio as gr

from analysis import curves, plots
from app import ui
from app.runtime import Job, Runtime
from app.ui import user_errors
from dde import credit
from dde.config import field_help
from dde.limits import FINETUNE, number

SMOOTH = 10


def settings_from_form(variant, beta, lr, steps, rank, t_lo, t_hi, cal_batches, batch_pairs, seed) -> dict:
    """TrainConfig values from the form, each checked against the one table of bounds."""
    if variant not in credit.variant_names():
        raise ValueError(f"variant must be one of {', '.join(credit.variant_names())}")
    values = {"variant": variant, "beta": number(beta, FINETUNE["beta"]), "lr": number(lr, FINETUNE["lr"]),
              "steps": number(steps, FINETUNE["steps"]), "lora_rank": number(rank, FINETUNE["lora_rank"]),
              "t_range": [number(t_lo, FINETUNE["t_from"]), number(t_hi, FINETUNE["t_to"])],
              "calibration_batches": number(cal_batches, FINETUNE["calibration_batches"]),
              "batch_pairs": number(batch_pairs, FINETUNE["batch_pairs"]), "seed": number(seed, FINETUNE["seed"])}
    if values["t_range"][0] >= values["t_range"][1]:
        raise ValueError("t from must be below t to")
    return values


def figures(job: Job):
    run = {job.id: str(job.run.path)}
    frame = curves.training_curves_frame(run, ("loss", "implicit_acc", "reward_margin"), smooth=SMOOTH)
    train = [plots.training_curves_figure(frame, m) if not frame.empty else None
             for m in ("loss", "implicit_acc", "reward_margin")]
    val = curves.validation_frame(run)
    checks = plots.validation_figure(val[val.metric != "judge"]) if not val[val.metric != "judge"].empty else None
    judge = plots.validation_figure(val, "judge") if not val[val.metric == "judge"].empty else None
    cal = curves.calibration_frame(job.run.path, every=5)
    return (*train, checks, judge, plots.calibration_over_run_figure(cal) if not cal.empty else None)


def build(rt: Runtime) -> dict:
    helps = field_help()
    f = FINETUNE
    job_id = gr.State("")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            variant = ui.Dropdown(credit.variant_names(), value="dde", label="Variant", info=helps["variant"])
            with gr.Row():
                beta = ui.Number(f["beta"].default, label="beta", info=helps["beta"])
                lr = ui.Number(f["lr"].default, label="Learning rate")
            with gr.Row():
                steps = ui.Number(f["steps"].default, label="Steps", minimum=1, maximum=f["steps"].hi)
                rank = ui.Number(f["lora_rank"].default, label="LoRA rank", minimum=1)
            with gr.Row():
                t_lo = ui.Number(f["t_from"].default, label="t from", precision=0)
                t_hi = ui.Number(f["t_to"].default, label="t to (exclusive)", precision=0)
            with gr.Row():
                cal = ui.Number(f["calibration_batches"].default, label="Calibration batches", precision=0, minimum=0,
                                info=helps["calibration_batches"])
                batch = ui.Number(f["batch_pairs"].default, label="Pairs per step", precision=0, minimum=1)
            seed = ui.Number(f["seed"].default, label="Seed", precision=0, minimum=0)
            with gr.Row():
                start = gr.Button("Start fine-tune", variant="primary", elem_id="start-finetune")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=3):
            status = gr.Markdown("No fine-tune started in this browser session.", elem_id="finetune-status")
            with gr.Row():
                loss_plot = gr.Plot(label="Loss")
                acc_plot = gr.Plot(label="Implicit accuracy")
                margin_plot = gr.Plot(label="Reward margin")
            with gr.Row():
                val_plot = gr.Plot(label="Held-back pairs")
                judge_plot = gr.Plot(label="Judge score of fixed training prompts", elem_id="judge-probe")
                cal_plot = gr.Plot(label="Calibration")
            weights_file = gr.File(label="Weights (safetensors)", interactive=False)
    outputs = [job_id, status, loss_plot, acc_plot, margin_plot, val_plot, judge_plot, cal_plot, weights_file]

    def view(job: Job, done: bool):
        pos = rt.finetunes.position(job)
        if job.state == "queued":
            text = f"**{job.id}: queued**, {pos} fine-tune(s) ahead of it (one runs at a time on this server)."
        elif job.state == "running":
            m = job.metrics[-1] if job.metrics else {}
            text = (f"**{job.id}: running** {job.cfg.variant}, step {m.get('step', 0)}/{job.cfg.steps}"
                    + (f", loss {m['loss']:.4f}" if m.get("loss") is not None else "")
                    + ("" if job.metrics else " (calibrating)"))
        else:
            took = f" in {job.ended - job.started:.0f} s" if job.started and job.ended else ""
            text = f"**{job.id}: {job.state}**{took}" + (f": {job.error}" if job.error else "")
            if job.weights is not None:
                text += (f". It is now a model choice in Compare, Estimation and Evaluate "
                         f"(`{rt.paths.show(job.run.path)}`).")
        weights = str(job.weights) if done and job.weights is not None else None
        return (job.id, text, *figures(job), weights)

    @user_errors
    def finetune(*form):
        job = rt.finetunes.submit({"backend": rt.kind, "model": rt.model_path, "data": rt.data, "device": rt.device,
                                   **settings_from_form(*form), "checkpoint_every": max(1, int(form[3]) // 4)})
        last = None
        while True:
            done = job.state in ("finished", "cancelled", "failed")
            if done or len(job.metrics) != last:
                last = len(job.metrics)
                yield view(job, done)
            if done:
                return
            time.sleep(0.5)

    @user_errors
    def cancel_job(job_id):
        job = rt.finetunes.cancel(job_id)
        return f"**{job.id}**: cancel requested; it stops after the current step and keeps a checkpoint."

    form = [variant, beta, lr, steps, rank, t_lo, t_hi, cal, batch, seed]
    start.click(finetune, form, outputs, api_name="finetune", concurrency_limit=16)
    cancel.click(cancel_job, [job_id], [status], api_name="cancel_finetune", concurrency_limit=16)
    return {}
