"""Plotly figures over the trace frames, for the dashboard's "Predicted vs counted" page.

Like perfbench/report/figures.py: frames in, a `plotly.graph_objects.Figure` out, no file reads.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

LAYOUT = dict(template="plotly_white", font=dict(size=13), hovermode="closest",
              legend=dict(title_text="", orientation="h", y=1.08, x=0), margin=dict(l=70, r=30, t=90, b=120))
PREDICTED, COUNTED, OFF = "#1f77b4", "#ff7f0e", "#d62728"
_METRICS = {"bytes": ("predicted_bytes", "counted_bytes", "bytes_ratio", "DRAM bytes per step"),
            "flops": ("predicted_flops", "counted_flops", "flops_ratio", "FLOPs per step")}


def predicted_vs_counted_figure(comparison: pd.DataFrame, metric: str = "bytes", title: str = "") -> go.Figure:
    """Predicted and counted bars per operation of one point (rows of ncu_vs_model), log scale;
    operations beyond +-20 % get their ratio in red above the bars."""
    predicted, counted, ratio, axis = _METRICS[metric]
    rows = comparison[comparison["op_class"] != "total"]
    labels = [f"{r.ops}<br><sub>{r.op_class}</sub>" for r in rows.itertuples(index=False)]
    hover = [f"{r.ops} ({r.op_class})<br>kernels: {r.kernels or '–'}<br>{r.note}" for r in rows.itertuples(index=False)]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=rows[predicted], name="predicted (analytic)", marker_color=PREDICTED,
                         hovertext=hover, hoverinfo="text+y"))
    fig.add_trace(go.Bar(x=labels, y=rows[counted], name="counted (ncu)", marker_color=COUNTED,
                         hovertext=hover, hoverinfo="text+y"))
    for label, r in zip(labels, rows.itertuples(index=False)):
        if r.mismatch:
            value = getattr(r, ratio)
            fig.add_annotation(x=label, y=1, yref="paper", yanchor="bottom", showarrow=False,
                               text=f"x{value:.2f}" if pd.notna(value) and value != float("inf") else "only counted",
                               font=dict(color=OFF))
    fig.update_layout(**LAYOUT, barmode="group", title=title, yaxis=dict(type="log", title=axis))
    return fig


def kernel_time_figure(breakdown: pd.DataFrame, title: str = "") -> go.Figure:
    """GPU time per step of each point, stacked by op class (rows of a kernel breakdown)."""
    per = (breakdown.groupby(["nvtx_range", "op_class"])["gpu_time_ms_per_step"].sum() * 1e3).unstack(fill_value=0.0)
    fig = go.Figure()
    for op_class in per.columns:
        fig.add_trace(go.Bar(y=per.index, x=per[op_class], name=op_class, orientation="h"))
    fig.update_layout(**LAYOUT, barmode="stack", title=title, xaxis=dict(title="us per step"),
                      yaxis=dict(title="", autorange="reversed"))
    return fig
