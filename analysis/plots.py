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
    part = frame[frame.metric == metric]
    return lines_with_bands(part, "step", title=metric.replace("_", " "), x_title="training step", y_title=metric)


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
