"""About: the method in a paragraph, what is this project's derivation, and a figure."""

from __future__ import annotations

import gradio as gr

from analysis import curves, plots

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
calibration table r_t (the reference model's eps error, EMA-updated), v the prompt-conditional
variance of the images, the factors rho_t (single-shot) and 1 - rho_t (stepwise), and the DDE
weight w(t) = rho_t (1 - rho_t), mean 1 under the distribution t is drawn from. The Diffusion-DPO
loss they multiply is Diffusion-DPO's. All of it lives in one module, `dde/credit.py`, so the
paper's exact closed form can be swapped in there; `docs/method.md` gives the derivation.

The figure: the uncalibrated DDE weight (alpha_bar (1 - alpha_bar)) against Diffusion-DPO's uniform
weight on Stable Diffusion's schedule; it peaks at t = 354 (this project's figure).

**Tabs.** *Compare*: up to three models from the same noise, with scores, where along the
trajectory they differ, and a shareable report. *Credit assignment*: the weights of every variant,
a run's calibration over training, where the shipped models differ, the measured credit of runs.
*Estimation error*: how well the model's x0 estimate from step t matches held-back images.
*Fine-tune*: train DDE, Diffusion-DPO or an ablation and watch it learn. *Evaluate*: score models on
a prompt set with intervals, win rates and per-attribute accuracy."""


def build(rt) -> dict:
    gr.Markdown(ABOUT)
    schedule = curves.schedule_from_preset(next(iter(curves.SCHEDULER_PRESETS)))
    gr.Plot(plots.credit_weights_figure(curves.credit_weights_frame(["dpo", "dde-closed"], schedule)),
            label="DDE vs Diffusion-DPO credit")
    return {}
