"""Evaluate: models on a prompt set, paired by noise; score and win rate with their intervals at a
glance, per-attribute accuracy as grouped bars, the best and worst pairs captioned with their whole
prompt and both scores, a per-image CSV and a shareable report. Opens with the last shipped
evaluation (written by ``python -m analysis all``)."""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from analysis import plots
from analysis.evaluate import summarise
from app import report, ui
from app.paths import ROOT
from app.runtime import Runtime
from app.ui import interval, run_with_feedback, user_errors
from dde.limits import APP, number
from dde.toy.judge import ATTRIBUTES

SHIPPED_EVAL = ROOT / "docs" / "toy" / "eval"
SOURCES = ["held-out toy scenes", "uploaded text file"]


def glance(summary: pd.DataFrame) -> pd.DataFrame:
    """The columns a viewer reads first: model, images, score [95% interval], win rate vs base [95%]."""
    rows = []
    for r in summary.itertuples(index=False):
        win = getattr(r, "win_rate", float("nan"))
        rows.append({"model": r.model, "images": int(r.n), "score [95% CI]": interval(r.score, r.score_lo, r.score_hi),
                     "win rate vs base [95% CI]": interval(win, getattr(r, "win_lo", 0), getattr(r, "win_hi", 0),
                                                           pct=True) if pd.notna(win) else ""})
    return pd.DataFrame(rows)


def figures(summary: pd.DataFrame) -> dict:
    out = {"Mean score": plots.evaluation_figure(summary)}
    attrs = [a for a in ATTRIBUTES if f"acc_{a}" in summary and summary[f"acc_{a}"].notna().any()]
    if attrs:
        out["Per-attribute accuracy"] = plots.attribute_figure(summary, attrs)
    return out


def _prompt_set(source, upload) -> list[str]:
    from analysis.prompts import read_prompts

    if source not in SOURCES:
        raise ValueError(f"choose a prompt set: {', '.join(SOURCES)}")
    if source == SOURCES[1]:
        if not upload:
            raise ValueError("upload a text file of prompts, one per line")
        path = upload if isinstance(upload, str) else getattr(upload, "path", None) or (
            upload.get("path") if isinstance(upload, dict) else None)
        if not isinstance(path, str):
            raise ValueError("the uploaded file could not be read")
        return read_prompts(path)
    return read_prompts("held-out")


def best_worst(rt: Runtime, table: pd.DataFrame, specs: dict, steps: int, k: int = 3) -> list[tuple]:
    """The k pairs where the second model beats the base most and the k where it loses most, each
    image captioned with the whole prompt, the model and both scores."""
    labels = list(specs)
    if len(labels) < 2:
        return []
    base, other = labels[0], labels[1]
    a = table[table.model == base].set_index(["prompt", "seed"]).score
    b = table[table.model == other].set_index(["prompt", "seed"]).score
    diff = (b - a.reindex(b.index)).sort_values()
    picks = list(dict.fromkeys(list(diff.index[-k:][::-1]) + list(diff.index[:k])))
    prompts, seeds = [p for p, _ in picks], [int(s) for _, s in picks]
    ims_a = rt.images_for(specs[base], prompts, seeds, steps)
    ims_b = rt.images_for(specs[other], prompts, seeds, steps)
    out = []
    for (p, s), ia, ib in zip(picks, ims_a, ims_b):
        both = f"{base} {a[(p, s)]:.3f} vs {other} {b[(p, s)]:.3f} ({diff[(p, s)]:+.3f})"
        out += [(ia, f"{base} | {p} | seed {s} | {both}"), (ib, f"{other} | {p} | seed {s} | {both}")]
    return out


def build(rt: Runtime) -> dict:
    shipped = None
    if rt.kind == "toy" and (SHIPPED_EVAL / "summary.csv").is_file():
        shipped = pd.read_csv(SHIPPED_EVAL / "summary.csv")
        shipped = shipped[shipped.scorer == shipped.scorer.iloc[0]] if "scorer" in shipped else shipped
    state = gr.State(None)  # this browser session's last evaluation, for its report
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            source = gr.Radio(SOURCES, value=SOURCES[0], label="Prompt set")
            upload = gr.File(label="Prompts, one per line (UTF-8 text)", file_types=[".txt"], type="filepath")
            limit = ui.Number(APP["eval_prompts"].default, label="At most this many prompts", precision=0, minimum=1,
                              maximum=APP["eval_prompts"].hi)
            models = ui.Dropdown(rt.model_choices(), value=rt.default_models(), multiselect=True,
                                 allow_custom_value=True, label="Models (the base is the reference)")
            scorers = ui.CheckboxGroup(list(rt.scorer_paths), value=list(rt.scorer_paths)[:1], label="Scorers")
            with gr.Row():
                seeds = ui.Number(APP["eval_seeds"].default, label="Seeds per prompt", precision=0, minimum=1,
                                  maximum=APP["eval_seeds"].hi)
                steps = ui.Slider(APP["steps"].lo, APP["steps"].hi, APP["steps"].default, step=1, label="DDIM steps")
            with gr.Row():
                button = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
                download = gr.Button("Download report", elem_id="evaluate-report")
            status = gr.Markdown("Shown: the last shipped evaluation (`python -m analysis all`)." if shipped is not None
                                 else "")
            report_file = gr.File(label="Report", visible=False)
        with gr.Column(scale=3):
            table = gr.Dataframe(glance(shipped) if shipped is not None else None, elem_id="evaluate-summary",
                                 label="Summary: mean score and paired win rate against the base (ties 1/2), 95% "
                                       "bootstrap intervals", interactive=False, wrap=True)
            figs = figures(shipped) if shipped is not None else {}
            with gr.Row():
                score_plot = gr.Plot(figs.get("Mean score"), label="Mean score")
                attr_plot = gr.Plot(figs.get("Per-attribute accuracy"), label="Per-attribute accuracy")
            grid = gr.Gallery(label="Best and worst pairs (base | other model, by score difference)", columns=4,
                              height="auto", object_fit="contain")
            csv = gr.File(label="Per-image scores (CSV)", interactive=False)
    outputs = [table, score_plot, attr_plot, grid, csv, status, state]

    @user_errors
    def evaluate(source, upload, limit, models, scorers, seeds, steps, progress=gr.Progress()):
        prompts = _prompt_set(source, upload)[: number(limit, APP["eval_prompts"])]
        task = rt.evaluate_task(prompts, models, scorers, seeds, steps, progress=ui.page_progress(progress))
        table_, specs = yield from run_with_feedback(rt.lane, task, len(outputs), outputs.index(status))
        summary = summarise(table_, next(iter(specs)))
        path = rt.out / "evaluations" / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table_.to_csv(path, index=False)
        pairs = best_worst(rt, table_, specs, int(steps))
        figs = figures(summary)
        last = {"summary": summary, "figures": figs, "pairs": pairs,
                "settings": {"prompts": f"{len(prompts)} ({source})", "seeds per prompt": seeds, "DDIM steps": steps,
                             "scorers": ", ".join(scorers), "models": specs}}
        yield (glance(summary), figs["Mean score"], figs.get("Per-attribute accuracy"), pairs, str(path),
               f"{len(table_)} images scored.", last)

    @user_errors
    def make_report(last):
        if not last:
            raise ValueError("run an evaluation first")
        return gr.update(value=str(report.evaluate_report(rt, last["summary"], last["settings"], last["figures"],
                                                          last["pairs"])), visible=True)

    button.click(evaluate, [source, upload, limit, models, scorers, seeds, steps], outputs, api_name="evaluate",
                 concurrency_limit=8)
    download.click(make_report, [state], [report_file], api_name="evaluate_report")
    return {"refresh": (lambda: gr.update(choices=rt.model_choices()), [models])}
