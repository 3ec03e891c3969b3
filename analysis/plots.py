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
