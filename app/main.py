"""build_app() composes the app's tabs (app/tabs/*.py) over one :class:`app.runtime.Runtime`;
launching happens only in app.__main__. Tabs format; the math is in dde/ and analysis/, the model
work in the runtime, on the one compute lane."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from app.runtime import Runtime  # noqa: E402
from app.tabs import about, compare, credit, estimation, evaluate, finetune  # noqa: E402

TABS = (("Compare", compare), ("Credit assignment", credit), ("Estimation error", estimation),
        ("Fine-tune", finetune), ("Evaluate", evaluate), ("About", about))
# the endpoints a client may call by name (README); every other event is the page's own
API_NAMES = ("compare", "compare_report", "credit_plot", "empirical_credit", "estimation", "finetune",
             "cancel_finetune", "evaluate", "evaluate_report")
CSS = "#compare-models {min-width: 260px} .gallery-item img {image-rendering: pixelated}"


def build_app(runtime: Runtime | None = None) -> gr.Blocks:
    rt = runtime or Runtime()
    where = rt.model_path if rt.model_path else "the embedded world"
    with gr.Blocks(title="DDE: Denoised Distribution Estimation") as demo:
        gr.Markdown(f"# DDE: preference alignment with denoised distribution estimation\n"
                    f"Backend **{rt.kind}** ({where}); outputs under `{rt.paths.show(rt.out)}`.")
        for title, module in TABS:
            with gr.Tab(title) as tab:
                parts = module.build(rt)
            for fn, inputs, outputs, name in parts.get("loads", []):
                demo.load(fn, inputs, outputs, api_name=name, api_visibility="public" if name else "private")
            if "refresh" in parts:
                fn, components = parts["refresh"]
                tab.select(fn, None, components, api_visibility="private")
    return demo
