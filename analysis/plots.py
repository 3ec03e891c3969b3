"""Plotly figure builders from analysis.curves frames; shared by the app and the command line."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

TIMESTEP_AXIS = "training timestep t (0 = least noisy)"


def credit_weights_figure(frame: pd.DataFrame, *, log_y: bool = False, cumulative: bool = False) -> go.Figure:
    """Lines of w(t) (or its cumulative mass) per series from :func:`analysis.curves.credit_weights_frame`."""
    column = "cumulative" if cumulative else "value"
    fig = go.Figure()
    for name, part in frame.groupby("series", sort=False):
        fig.add_trace(go.Scatter(x=part.t, y=part[column], mode="lines", name=str(name)))
    fig.update_layout(
        title="Cumulative credit mass" if cumulative else "Per-timestep credit weight w(t)",
        xaxis_title=TIMESTEP_AXIS,
        yaxis_title="fraction of total weight at <= t" if cumulative else "w(t), mean 1 over support",
        yaxis_type="log" if log_y and not cumulative else "linear",
        template="plotly_white", legend_title="variant", margin=dict(l=60, r=20, t=50, b=50),
    )
    return fig


def _band(fig: go.Figure, x, lo, hi, name: str, color: str | None = None) -> None:
    fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(hi) + list(lo)[::-1], fill="toself", mode="lines",
                             line=dict(width=0), opacity=0.2, showlegend=False, hoverinfo="skip", name=f"{name} band",
                             fillcolor=color))


def lines_with_bands(frame: pd.DataFrame, x: str, *, title: str, x_title: str, y_title: str,
                     log_y: bool = False) -> go.Figure:
    """One line per ``series`` with its (lo, hi) band; the generic builder behind the curve figures."""
    fig = go.Figure()
    for name, part in frame.groupby("series", sort=False):
        part = part.sort_values(x)
        if "lo" in part and (part.lo != part.value).any():
            _band(fig, part[x], part.lo, part.hi, str(name))
        fig.add_trace(go.Scatter(x=part[x], y=part.value, mode="lines+markers" if len(part) < 40 else "lines",
                                 name=str(name)))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, yaxis_type="log" if log_y else "linear",
                      template="plotly_white", margin=dict(l=60, r=20, t=50, b=50))
    return fig


def estimation_error_figure(frame: pd.DataFrame, log_y: bool = True) -> go.Figure:
    return lines_with_bands(frame, "t", title="Error of the terminal-sample estimate from step t",
                            x_title=TIMESTEP_AXIS, y_title="mean squared error per element", log_y=log_y)


def empirical_credit_figure(frame: pd.DataFrame) -> go.Figure:
    return lines_with_bands(frame, "t", title="Empirical credit per timestep bin (mean |dL/d delta|)",
                            x_title=TIMESTEP_AXIS, y_title="credit")


def training_curves_figure(frame: pd.DataFrame, metric: str) -> go.Figure:
    """Per-step values as faint points and the smoothed value as a line, per run."""
    part = frame[frame.metric == metric]
    fig = go.Figure()
    for name, run in part.groupby("series", sort=False):
        if "raw" in run:
            fig.add_trace(go.Scatter(x=run.step, y=run.raw, mode="markers", marker=dict(size=4), opacity=0.35,
                                     name=f"{name} per step", showlegend=False, hoverinfo="x+y"))
        fig.add_trace(go.Scatter(x=run.step, y=run.value, mode="lines", name=str(name)))
    fig.update_layout(title=metric.replace("_", " "), xaxis_title="training step", yaxis_title=metric,
                      template="plotly_white", margin=dict(l=60, r=20, t=50, b=50))
    return fig


VALIDATION_TITLES = {"val_loss": "held-back pairs: loss", "val_implicit_acc": "held-back pairs: implicit accuracy",
                     "judge": "judge score of fixed training-split prompts (same noise)"}


# for figures drawn narrow (three per row in the app): the legend under the plot, not beside it
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.25, x=0, font=dict(size=10))


def validation_figure(frame: pd.DataFrame, metric: str | None = None) -> go.Figure:
    """Checkpoint-time curves (analysis.curves.validation_frame): one metric, or all as panels' lines."""
    part = frame if metric is None else frame[frame.metric == metric]
    fig = go.Figure()
    for (name, m), run in part.groupby(["series", "metric"], sort=False):
        fig.add_trace(go.Scatter(x=run.step, y=run.value, mode="lines+markers",
                                 name=f"{name}: {VALIDATION_TITLES.get(m, m)}"))
    fig.update_layout(title=VALIDATION_TITLES.get(metric, "at each checkpoint") if metric else "at each checkpoint",
                      xaxis_title="training step", template="plotly_white", margin=dict(l=60, r=20, t=50, b=110),
                      legend=LEGEND_BELOW)
    return fig


def calibration_figure(frame: pd.DataFrame, column: str = "w_dde", max_lines: int = 6) -> go.Figure:
    """``column`` (w_dde or r) against t at up to ``max_lines`` logged steps, earliest to latest."""
    steps = sorted(frame.step.unique())
    keep = [steps[i] for i in sorted({round(k * (len(steps) - 1) / max(max_lines - 1, 1)) for k in range(max_lines)})]
    fig = go.Figure()
    for step in keep:
        part = frame[frame.step == step]
        fig.add_trace(go.Scatter(x=part.t, y=part[column], mode="lines", name=f"step {step}"))
    label = "calibrated DDE weight w(t)" if column == "w_dde" else "calibration r_t"
    fig.update_layout(title=f"{label} over training", xaxis_title=TIMESTEP_AXIS, yaxis_title=label,
                      template="plotly_white", margin=dict(l=60, r=20, t=50, b=50))
    return fig


def evaluation_figure(summary: pd.DataFrame) -> go.Figure:
    """Mean score per model with its 95% CI as error bars."""
    fig = go.Figure(go.Bar(x=summary.model, y=summary.score,
                           error_y=dict(type="data", symmetric=False, array=summary.score_hi - summary.score,
                                        arrayminus=summary.score - summary.score_lo)))
    fig.update_layout(title="Mean score (95% bootstrap CI)", yaxis_title="score", template="plotly_white",
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig


def _steps_to_show(frame: pd.DataFrame, max_lines: int) -> list:
    steps = sorted(frame.step.unique())
    return [steps[i] for i in sorted({round(k * (len(steps) - 1) / max(max_lines - 1, 1)) for k in range(max_lines)})]


def calibration_over_run_figure(frame: pd.DataFrame, max_lines: int = 4) -> go.Figure:
    """A run's calibration (analysis.curves.calibration_frame) at a few training steps: the
    calibrated single-shot error s_t r_t against the prompt-conditional variance v (log axis), and
    the calibrated DDE weight (second axis); the clipped region (s_t r_t >= v: the single-shot
    estimate is no better than the prompt's mean) shaded at the last step shown."""
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    keep = _steps_to_show(frame, max_lines)
    for k, step in enumerate(keep):
        part = frame[frame.step == step]
        dash = None if k == len(keep) - 1 else "dot"
        fig.add_trace(go.Scatter(x=part.t, y=part.s_r, mode="lines", line=dict(dash=dash),
                                 name=f"s_t r_t, step {step}"), secondary_y=False)
        fig.add_trace(go.Scatter(x=part.t, y=[part.v.iloc[0]] * len(part), mode="lines",
                                 line=dict(dash="dash", width=1), name=f"v = {part.v.iloc[0]:.4f}, step {step}"),
                      secondary_y=False)
        fig.add_trace(go.Scatter(x=part.t, y=part.w_dde, mode="lines", line=dict(dash=dash, width=3),
                                 name=f"w_dde, step {step}"), secondary_y=True)
    last = frame[frame.step == keep[-1]]
    clipped = last[last.clipped.astype(bool)]
    if len(clipped):
        fig.add_vrect(x0=int(clipped.t.min()), x1=int(clipped.t.max()), fillcolor="grey", opacity=0.15, line_width=0,
                      annotation_text="clipped: s_t r_t >= v", annotation_position="top left")
    fig.update_layout(title="Calibration over the run", xaxis_title=TIMESTEP_AXIS, template="plotly_white",
                      margin=dict(l=60, r=60, t=50, b=130), legend=LEGEND_BELOW)
    fig.update_xaxes(range=[0, int(frame.t.max())])  # the shaded region's label must not widen the axis
    fig.update_yaxes(title_text="single-shot error per element", type="log", secondary_y=False)
    fig.update_yaxes(title_text="calibrated DDE weight", secondary_y=True)
    return fig


def divergence_figure(frame: pd.DataFrame, weight: pd.DataFrame | None = None, title: str | None = None) -> go.Figure:
    """Per DDIM step, each tuned model's x0 distance from the base model's (analysis.divergence),
    with a credit weight (columns t, value) on a second axis, both against t."""
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, part in frame.groupby("series", sort=False):
        part = part.sort_values("t")
        _band(fig, part.t, part.lo, part.hi, str(name))
        fig.add_trace(go.Scatter(x=part.t, y=part.value, mode="lines+markers", name=f"{name} vs base"),
                      secondary_y=False)
    if weight is not None and len(weight):
        fig.add_trace(go.Scatter(x=weight.t, y=weight.value, mode="lines", line=dict(dash="dot", color="grey"),
                                 name=str(weight.series.iloc[0]) if "series" in weight else "DDE weight"),
                      secondary_y=True)
    fig.update_layout(title=title or "Where the models differ: x0 prediction distance from the base model",
                      xaxis_title=TIMESTEP_AXIS + "; sampling runs right to left", template="plotly_white",
                      margin=dict(l=60, r=60, t=50, b=50))
    fig.update_xaxes(autorange="reversed")
    fig.update_yaxes(title_text="RMS distance per element", secondary_y=False)
    fig.update_yaxes(title_text="credit weight w(t)", secondary_y=True)
    return fig


def attribute_figure(summary: pd.DataFrame, attributes: list[str]) -> go.Figure:
    """Per-attribute accuracy per model as grouped bars (summary columns acc_<attribute>)."""
    fig = go.Figure()
    for row in summary.itertuples(index=False):
        fig.add_trace(go.Bar(x=attributes, y=[getattr(row, f"acc_{a}") for a in attributes], name=str(row.model)))
    fig.update_layout(barmode="group", title="Share of images with each attribute right (judge)",
                      yaxis=dict(title="accuracy", range=[0, 1], tickformat=".0%"), template="plotly_white",
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig
