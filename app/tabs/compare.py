"""Compare: up to three models from the same noise, each column labelled with its model and mean
score; where along the trajectory they differ; a self-contained HTML report to share."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from analysis import plots
from app import report, ui
from app.runtime import MAX_COMPARE_MODELS, CompareResult, Runtime
from app.ui import run_with_feedback, user_errors
from dde.limits import APP

TOY_EXAMPLES_FILE = "assets/compare_examples.json"


def examples(rt: Runtime) -> list[str]:
    """The example prompts: for the toy world, the training-split scenes where base and tuned
    differ most (picked by ``python -m bench.make_examples``); else a few generic prompts."""
    import json

    from app.paths import ROOT

    if rt.kind == "toy":
        path = ROOT / TOY_EXAMPLES_FILE
        if path.is_file():
            return [row["prompt"] for row in json.loads(path.read_text())["examples"]]
        return ["a big red circle on the left on a black background"]
    return ["a photo of an astronaut riding a horse on the moon", "a watercolor painting of a lighthouse at dawn",
            "a cozy reading nook with a cat, warm light"]


def credit_weight_frame(rt: Runtime):
    """The DDE credit weight shown beside the divergence: the shipped DDE run's calibrated weight
    (toy), else the closed form on the standard schedule."""
    from analysis import curves
    from dde import credit
    from dde.backends.spec import SHIPPED
    from dde.run import RunDir

    run = RunDir(SHIPPED["dde"].parent / "run")
    schedule, table = run.schedule(), run.calibration_table()
    if rt.kind != "toy" or schedule is None or table is None:
        schedule = curves.schedule_from_preset(next(iter(curves.SCHEDULER_PRESETS)))
        w = credit.weights("dde-closed", schedule).numpy()
        return pd.DataFrame({"t": range(schedule.T), "value": w, "series": "DDE weight (closed form)"})
    w = credit.weights("dde", schedule, table).numpy()
    return pd.DataFrame({"t": range(schedule.T), "value": w, "series": "DDE weight (shipped run, calibrated)"})


def build(rt: Runtime) -> dict:
    state = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            prompt = gr.Textbox(examples(rt)[0], label="Prompt", lines=2, max_length=int(APP["prompt_chars"].hi))
            negative = gr.Textbox("", label="Negative prompt", max_length=int(APP["prompt_chars"].hi))
            with gr.Row():
                seed = ui.Number(APP["seed"].default, label="Seed", precision=0, minimum=0)
                n_images = ui.Slider(APP["images"].lo, APP["images"].hi, APP["images"].default, step=1,
                                     label="Images per model")
            with gr.Row():
                steps = ui.Slider(APP["steps"].lo, APP["steps"].hi, APP["steps"].default, step=1, label="DDIM steps")
                guidance = ui.Slider(APP["guidance"].lo, APP["guidance"].hi, rt.default_guidance, step=0.5,
                                     label="Guidance")
            models = ui.Dropdown(rt.model_choices(), value=rt.compare_defaults(), multiselect=True,
                                 allow_custom_value=True, max_choices=MAX_COMPARE_MODELS, elem_id="compare-models",
                                 label=f"Models (up to {MAX_COMPARE_MODELS}; the base is always the first column)",
                                 info="a listed model, or the path of a LoRA / UNet .safetensors or a run folder")
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                download = gr.Button("Download report", elem_id="compare-report")
            gr.Examples([[e] for e in examples(rt)], inputs=[prompt], label="Example prompts (where the models differ)")
            info = gr.Markdown("", elem_id="compare-info")
            report_file = gr.File(label="Report (one HTML file: images, plots, settings)", visible=False,
                                  elem_id="compare-report-file")
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                galleries = [gr.Gallery(label=f"Model {k + 1}", columns=2, height="auto", object_fit="contain",
                                        allow_preview=True, elem_id=f"gallery-{k}", visible=k < 2)
                             for k in range(MAX_COMPARE_MODELS)]
            divergence = gr.Plot(label="Where the models differ", elem_id="divergence-plot")
            scores = gr.Dataframe(label="Scores per image", interactive=False, wrap=True)
            with gr.Accordion("x0 prediction along the trajectory (image 1 of each model)", open=False):
                strips = [gr.Image(label=f"Model {k + 1}", type="pil", visible=k < 2, show_label=True)
                          for k in range(MAX_COMPARE_MODELS)]

    outputs = [*galleries, *strips, divergence, scores, info, state]
    weight = credit_weight_frame(rt)

    @user_errors
    def compare(prompt, negative, seed, steps, guidance, n, models, progress=gr.Progress()):
        task = rt.compare_task(prompt, negative, seed, steps, guidance, n, models,
                               progress=ui.page_progress(progress))
        result: CompareResult = yield from run_with_feedback(rt.lane, task, len(outputs), outputs.index(info))
        yield render(result)

    def render(result: CompareResult):
        means = result.mean_scores()
        gallery_updates, strip_updates = [], []
        for k in range(MAX_COMPARE_MODELS):
            if k < len(result.labels):
                label = result.labels[k]
                mean = ", ".join(f"mean {s} {v:.3f}" for s, v in means[label].items())
                caps = [f"#{i + 1}, seed {result.settings['seed'] + i}" for i in range(len(result.images[k]))]
                gallery_updates.append(gr.update(value=list(zip(result.images[k], caps)), visible=True,
                                                 label=f"{label}" + (f": {mean}" if mean else "")))
                strip_updates.append(gr.update(value=result.strips[k], visible=True, label=label))
            else:
                gallery_updates.append(gr.update(value=None, visible=False))
                strip_updates.append(gr.update(value=None, visible=False))
        fig = plots.divergence_figure(result.divergence, weight) if len(result.divergence) else None
        s = result.settings
        text = (f"{s['images']} image(s) per model, seeds {s['seed']}..{s['seed'] + s['images'] - 1}, "
                f"{s['steps']} DDIM steps, guidance {s['guidance']:g}: {result.seconds:.1f} s. Every model starts "
                "every image from the same noise.")
        return (*gallery_updates, *strip_updates, fig, result.scores, text, result)

    @user_errors
    def make_report(result):
        if result is None:
            raise ValueError("generate a comparison first")
        path = report.compare_report(rt, result, weight)
        return gr.update(value=str(path), visible=True)

    inputs = [prompt, negative, seed, steps, guidance, n_images, models]
    generate.click(compare, inputs, outputs, api_name="compare", concurrency_limit=8)
    prompt.submit(compare, inputs, outputs, api_visibility="private", concurrency_limit=8)
    download.click(make_report, [state], [report_file], api_name="compare_report")
    return {"refresh": (lambda: gr.update(choices=rt.model_choices()), [models])}
