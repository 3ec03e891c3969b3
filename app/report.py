"""Self-contained HTML reports of a Compare or an evaluation: one file, images inline (PNG data
URIs), plots as interactive plotly figures (plotly.js inline, no network needed), the settings, the
scores and each model's key facts, so a result can be shared and opened without the app."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

import pandas as pd


def _png(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="t", float_format=lambda v: f"{v:.4g}", na_rep="")


def model_facts(rt, spec_text: str) -> list[str]:
    """Key lines about a model: its card's numbers for the shipped ones, its config for a run."""
    from dde.backends.spec import SHIPPED
    from dde.run import RunDir

    lines = []
    if spec_text == "base" and rt.kind == "toy":
        from dde.toy import DEFAULT_BASE

        meta = json.loads((DEFAULT_BASE / "model.json").read_text()) if rt.model_path is None else {}
        card = meta.get("card")
        if card:
            ev = card["held_out_eval"]
            acc = ", ".join(f"{a} {v:.0%}" for a, v in ev["accuracy"].items())
            lines += [f"shipped toy base model: `{card['command']}`",
                      f"held-out judge score {ev['total']:.3f} ({ev['n']} images); accuracy {acc}"]
    elif spec_text in SHIPPED or spec_text == "tuned":
        card_path = SHIPPED.get(spec_text, SHIPPED["dde"]).parent / "card.json"
        if card_path.is_file():
            card = json.loads(card_path.read_text())
            variant = card.get("variant", spec_text)
            c = card["chosen"][variant]
            row = next((r for r in card["summary"] if r["model"] == variant), None)
            lines.append(f"{variant}: beta {c['beta']:g}, lr {c['lr']:g}, {c['steps']} steps "
                         "(chosen on training-split prompts)")
            if row:
                lines.append(f"held-out judge gain over the base {row['gain']:+.3f} [{row['gain_lo']:+.3f}, "
                             f"{row['gain_hi']:+.3f}], win rate {row['win_rate']:.0%}, {row['seeds']} training seeds")
    else:
        try:
            path = rt.paths.resolve(spec_text)
            run = RunDir(path) if path.is_dir() else RunDir.of_weights(path)
            if run is not None and RunDir.is_run(run.path):
                cfg = run.config()
                lines.append(f"run {rt.paths.show(run.path)}: {cfg.variant}, beta {cfg.beta:g}, lr {cfg.lr:g}, "
                             f"{cfg.steps} steps, LoRA rank {cfg.lora_rank}")
        except ValueError:
            pass
    return lines


def _page(title: str, body: list[str], figures: dict) -> str:
    parts = []
    for k, (name, fig) in enumerate(figures.items()):
        parts.append(f"<h2>{html.escape(name)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=(k == 0)))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table.t{border-collapse:collapse;"
             "font-size:13px}table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
             ".imgs{display:flex;gap:16px;flex-wrap:wrap}.col{flex:1;min-width:240px}.col img{width:96px;"
             "image-rendering:pixelated;margin:2px}figure{display:inline-block;margin:2px}figcaption{font-size:11px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>" + "".join(body) + "".join(parts)
            + "</body></html>")


def _write(rt, kind: str, text: str) -> Path:
    from dde.io import atomic_write_text

    path = rt.out / "reports" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}.html"
    return atomic_write_text(text, path)


def compare_report(rt, result, weight: pd.DataFrame) -> Path:
    """The report of a Compare (app.runtime.CompareResult)."""
    from analysis import plots

    s = result.settings
    settings = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in s.items())
    means = result.mean_scores()
    cols = []
    for k, label in enumerate(result.labels):
        mean = ", ".join(f"mean {sc} {v:.3f}" for sc, v in means[label].items())
        facts = "".join(f"<li>{html.escape(line)}</li>" for line in model_facts(rt, result.specs[k]))
        imgs = "".join(f"<figure><img src='{_png(im)}'><figcaption>#{i + 1}</figcaption></figure>"
                       for i, im in enumerate(result.images[k]))
        cols.append(f"<div class='col'><h3>{html.escape(label)}</h3><p>{html.escape(mean)}</p><ul>{facts}</ul>"
                    f"{imgs}<p><img style='width:100%' src='{_png(result.strips[k])}'></p></div>")
    body = [f"<p>Made by the DDE app on {time.strftime('%F %T %Z')}. Every model started every image from the "
            f"same noise.</p><ul>{settings}</ul>", f"<div class='imgs'>{''.join(cols)}</div>",
            "<h2>Scores per image</h2>", _table(result.scores)]
    figures = {}
    if len(result.divergence):
        figures["Where the models differ"] = plots.divergence_figure(result.divergence, weight)
    return _write(rt, "compare", _page(f"Compare: {s['prompt']}", body, figures))


def evaluate_report(rt, summary: pd.DataFrame, settings: dict, figures: dict, pairs: list[tuple]) -> Path:
    """The report of an evaluation: summary, figures, the best and worst pairs with their captions."""
    rows = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in settings.items())
    facts = "".join(f"<li>{html.escape(line)}</li>" for spec in settings.get("models", {}).values()
                    for line in model_facts(rt, spec))
    shown = "".join(f"<figure><img src='{_png(im)}'><figcaption>{html.escape(cap)}</figcaption></figure>"
                    for im, cap in pairs)
    body = [f"<p>Made by the DDE app on {time.strftime('%F %T %Z')}.</p><ul>{rows}</ul><ul>{facts}</ul>",
            "<h2>Summary</h2>", _table(summary), "<h2>Best and worst pairs</h2>", f"<div>{shown}</div>"]
    return _write(rt, "evaluate", _page("Evaluation", body, figures))
