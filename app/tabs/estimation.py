"""Estimation error: how well a model's estimate of the final image from step t matches held-back
images. Opens with the shipped models' curves (written by ``python -m analysis all``); any model
can be measured on demand (queued on the compute lane, then cached)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from analysis import plots
from app import ui
from app.paths import ROOT
from app.runtime import Runtime
from app.ui import run_with_feedback, user_errors
from dde.limits import APP

SHIPPED_CURVES = ROOT / "docs" / "toy" / "curves" / "estimation_error.csv"
EXPLAIN = ("Error of the estimate of the final image from step t, on images held back from every run's calibration "
           "(the pairs' validation split): the single-shot DDIM prediction and K-step DDIM from t, against the "
           "prompt-conditional variance v and the Gaussian ideal at v; a run's calibrated prediction s_t r_t, fitted "
           "on its own training pairs, is the check (docs/method.md, section 7).")


def _table(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.pivot(index="t", columns="series", values="value").reset_index().round(5)


def build(rt: Runtime) -> dict:
    shipped = pd.read_csv(SHIPPED_CURVES) if rt.kind == "toy" and SHIPPED_CURVES.is_file() else None
    gr.Markdown(EXPLAIN + (" Shown first: the shipped base model with the shipped DDE run's calibration "
                           "(`python -m analysis all`)." if shipped is not None else ""))
    with gr.Row():
        model = ui.Dropdown(rt.model_choices(), value="base", allow_custom_value=True, label="Model")
        samples = ui.Slider(APP["estimation_images"].lo, APP["estimation_images"].hi, APP["estimation_images"].default,
                            step=2, label="Held-back images")
        log_y = gr.Checkbox(True, label="Log scale")
        button = gr.Button("Compute", variant="primary")
    status = gr.Markdown("")
    plot = gr.Plot(plots.estimation_error_figure(shipped) if shipped is not None else None,
                   label="Estimation error", elem_id="estimation-plot")
    table = gr.Dataframe(_table(shipped) if shipped is not None else None, label="Values", interactive=False)
    outputs = [plot, table, status]

    @user_errors
    def estimation(model, samples, log_y, progress=gr.Progress()):
        task = rt.estimation_task(model, samples, progress=ui.page_progress(progress))
        frame = yield from run_with_feedback(rt.lane, task, len(outputs), 2)
        yield plots.estimation_error_figure(frame, log_y=bool(log_y)), _table(frame), ""

    button.click(estimation, [model, samples, log_y], outputs, api_name="estimation", concurrency_limit=8)
    return {"refresh": (lambda: gr.update(choices=rt.model_choices()), [model])}
