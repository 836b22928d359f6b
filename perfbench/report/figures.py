"""Plotly figures over tidy rows, shared by the HTML report and the dashboard.

Each function takes frames (joined measured/predicted points, or predictions) and returns a
`plotly.graph_objects.Figure`; none reads files or calls the model, so both consumers draw the
same picture from the same rows. Conventions: log axes for sizes and times, one colour per batch
(the same colour for the same batch in every figure), sizes labelled 1K/4K/128K.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perfbench.sizes import format_size

# One colour per batch size, stable across figures (D3 palette, colour-blind tolerable order).
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_STANDARD_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MODEL_COLOURS = {"transformer-8b": "#d62728", "mamba-8b": "#2ca02c", "mamba2-8b": "#1f77b4",
                 "mamba2-hybrid-8b": "#9467bd"}
PAPER_SPEEDUP = 8.0  # arXiv 2406.07887: the hybrid "is predicted to generate tokens up to 8x faster"
LAYOUT = dict(template="plotly_white", font=dict(size=13), hovermode="closest",
              legend=dict(title_text="", itemsizing="constant"), margin=dict(l=70, r=30, t=70, b=60))


def batch_colour(batch: int) -> str:
    batch = int(batch)
    if batch in _STANDARD_BATCHES:
        return _PALETTE[_STANDARD_BATCHES.index(batch)]
    return _PALETTE[int(round(math.log2(max(batch, 1)))) % len(_PALETTE)]


def model_colour(name: str) -> str:
    base = next((key for key in sorted(MODEL_COLOURS, key=len, reverse=True) if name.startswith(key)), None)
    return MODEL_COLOURS.get(base, "#444444")


def size_axis(values) -> dict:
    """Log axis with ticks at the powers of two that the data spans, labelled 1K, 4K, 128K."""
    vals = [float(v) for v in values if v and v > 0]
    if not vals:
        return dict(type="log")
    lo, hi = int(math.floor(math.log2(min(vals)))), int(math.ceil(math.log2(max(vals))))
    step = 1 if hi - lo <= 8 else 2
    ticks = [2 ** e for e in range(lo, hi + 1, step)]
    return dict(type="log", tickvals=ticks, ticktext=[format_size(t) for t in ticks])


def value_axis(values, unit_scale: float = 1.0) -> dict:
    """Log axis with 1-2-5 ticks over the data's range, labelled plainly (0.05, 2, 500, 10k)."""
    vals = [float(v) * unit_scale for v in np.ravel(values) if v == v and v and v > 0]
    if not vals:
        return dict(type="log")
    lo, hi = min(vals), max(vals)
    ticks = [m * 10.0 ** e for e in range(int(math.floor(math.log10(lo))) - 1, int(math.ceil(math.log10(hi))) + 1)
             for m in (1, 2, 5)]
    inside = [t for t in ticks if lo / 1.6 <= t <= hi * 1.6]
    if len(inside) < 4:
        ticks = [m * 10.0 ** e for e in range(int(math.floor(math.log10(lo))) - 1,
                                              int(math.ceil(math.log10(hi))) + 1) for m in range(1, 10)]
        inside = [t for t in ticks if lo / 1.25 <= t <= hi * 1.25]
    if len(inside) > 9:
        inside = [t for t in inside if round(t / 10 ** math.floor(math.log10(t))) in (1, 5)] or inside
    if len(inside) > 9:
        inside = [t for t in inside if round(t / 10 ** math.floor(math.log10(t))) == 1]
    if sum(lo <= t <= hi for t in inside) < 2:  # a narrow range (0.103-0.125 ms): ticks 0.09, 0.1 fell outside
        inside = _linear_ticks(lo, hi)
    return dict(type="log", tickvals=inside, ticktext=[_plain(t) for t in inside])


def _linear_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About `count` evenly spaced round ticks (steps 1, 2, 2.5, 5 x 10^k) inside [lo, hi]; the value
    itself when lo == hi, so that even one point's axis is labelled."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9)
    ticks = [float(f"{k * step:.12g}") for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]
    return [t for t in ticks if lo <= t <= hi] or [lo, hi]


def predicted_line(n_points: int) -> dict:
    """Scatter mode for a predicted curve: a line, with a dash marker where it has a single point (a
    line through one point draws nothing)."""
    if n_points > 1:
        return dict(mode="lines")
    return dict(mode="lines+markers", marker=dict(symbol="line-ew-open", size=16, line=dict(width=3)))


def _plain(value: float) -> str:
    for limit, unit, suffix in ((1e12, 1e12, "T"), (1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if value >= limit:
            return f"{value / unit:g}{suffix}"
    return f"{value:g}"


def _top_legend(fig: go.Figure, note: str = "", below: bool = False) -> None:
    """Legend in rows above (or below) the plot, leaving the width to the data; `note` joins the title."""
    title = fig.layout.title.text or ""
    if note:
        title = f"{title}<br><sup>{note}</sup>" if title else f"<sup>{note}</sup>"
    if below:
        legend = dict(title_text="", orientation="h", yanchor="top", y=-0.22, x=0, xanchor="left")
        margin = dict(t=80, b=130)
    else:
        legend = dict(title_text="", orientation="h", yanchor="bottom", y=1.02, x=0, xanchor="left")
        margin = dict(t=140)
    fig.update_layout(title=dict(text=title or None, x=0.01, xanchor="left", yref="container", y=1.0,
                                 yanchor="top", pad=dict(t=14)),
                      legend=legend, margin=margin)


def _x_title(phase: str) -> str:
    return "context length (tokens)" if phase == "decode" else "prompt length (tokens)"


def _y_title(phase: str, kind: str = "layer") -> str:
    if phase == "decode":
        return "decode step (ms)"
    return "time to first token (ms)" if kind == "model" else "prefill time (ms)"


def _pct(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value * 100:+.1f}%"


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=15))
    fig.update_layout(**LAYOUT, xaxis_visible=False, yaxis_visible=False, height=300)
    return fig


# --------------------------------------------------------------------------- prediction intervals

def interval_bounds(frame: pd.DataFrame, y: str, suffix: str = "") -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) of a predicted quantity's ~80 % interval (analytic/uncertainty.py), or None where
    the frame has none: time_lo_ms / time_hi_ms for a time; a rate (tokens_per_s) by the inverse ratios."""
    lo, hi = f"time_lo_ms{suffix}", f"time_hi_ms{suffix}"
    if not {lo, hi} <= set(frame.columns) or frame[lo].isna().all():
        return None
    if y.startswith("time_ms"):
        return frame[lo].to_numpy(), frame[hi].to_numpy()
    values, time = frame[y].to_numpy(), frame[f"time_ms{suffix}"].to_numpy()
    return values * time / frame[hi].to_numpy(), values * time / frame[lo].to_numpy()


def add_interval_band(fig: go.Figure, x, bounds, colour: str, group: str, **where) -> None:
    """A shaded band between a prediction's interval bounds, drawn under its line."""
    if bounds is None:
        return
    lo, hi = bounds
    x = np.asarray(x)
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                             fillcolor=colour, opacity=0.12, line=dict(width=0), hoverinfo="skip",
                             legendgroup=group, showlegend=False, name=f"{group} predicted interval"), **where)


# --------------------------------------------------------------------------- measured vs predicted

def curves_figure(points: pd.DataFrame, title: str = "") -> go.Figure:
    """Measured (markers, p10–p90 band) vs predicted (lines) against sequence length, per batch.

    `points`: joined rows of one target and phase (compare.join_predictions). A lower panel shows
    the signed error with the ±5 % target band; hover gives every number.
    """
    if points.empty:
        return empty_figure("no measured points for this selection")
    phase = str(points["phase"].iloc[0])
    kind = str(points["target_kind"].iloc[0])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28],
                        vertical_spacing=0.06)
    for batch, group in points.sort_values("seqlen").groupby("batch", sort=True):
        colour = batch_colour(batch)
        x = group["seqlen"].to_numpy()
        label = f"B={batch}"
        if {"p10_ms", "p90_ms"} <= set(group.columns) and group["p10_ms"].notna().any():
            fig.add_trace(go.Scatter(
                x=np.concatenate([x, x[::-1]]),
                y=np.concatenate([group["p90_ms"].to_numpy(), group["p10_ms"].to_numpy()[::-1]]),
                fill="toself", fillcolor=colour, opacity=0.18, line=dict(width=0), hoverinfo="skip",
                legendgroup=label, showlegend=False, name=f"{label} p10–p90"), row=1, col=1)
        custom = np.stack([group["time_ms_pred"], group["err"] * 100, group.get("p10_ms", np.nan),
                           group.get("p90_ms", np.nan)], axis=-1)
        fig.add_trace(go.Scatter(
            x=x, y=group["time_ms"], mode="markers", name=f"{label} measured", legendgroup=label,
            marker=dict(color=colour, size=9, line=dict(width=1, color="white")), customdata=custom,
            hovertemplate=(f"{label}, L=%{{x:,}}<br>measured %{{y:.4g}} ms "
                           "(p10 %{customdata[2]:.4g}, p90 %{customdata[3]:.4g})<br>"
                           "predicted %{customdata[0]:.4g} ms<br>error %{customdata[1]:+.1f}%"
                           "<extra></extra>")), row=1, col=1)
        add_interval_band(fig, x, interval_bounds(group, "time_ms_pred", "_pred"), colour, label, row=1, col=1)
        fig.add_trace(go.Scatter(
            x=x, y=group["time_ms_pred"], **predicted_line(len(x)), name=f"{label} predicted", legendgroup=label,
            line=dict(color=colour, width=2), marker_color=colour, showlegend=True,
            hovertemplate=f"{label}, L=%{{x:,}}<br>predicted %{{y:.4g}} ms<extra></extra>"),
            row=1, col=1)
        fig.add_trace(go.Scatter(
            x=x, y=group["err"] * 100, mode="lines+markers", legendgroup=label, showlegend=False,
            name=f"{label} error", line=dict(color=colour, width=1), marker=dict(color=colour, size=6),
            hovertemplate=f"{label}, L=%{{x:,}}<br>error %{{y:+.1f}}%<extra></extra>"), row=2, col=1)
    for bound in (-5, 5):
        fig.add_hline(y=bound, line=dict(color="#999", dash="dot", width=1), row=2, col=1)
    fig.add_hline(y=0, line=dict(color="#555", width=1), row=2, col=1)
    xs = points["seqlen"].unique()
    fig.update_xaxes(**size_axis(xs), row=1, col=1)
    fig.update_xaxes(**size_axis(xs), title_text=_x_title(phase), row=2, col=1)
    fig.update_yaxes(**value_axis(pd.concat([points["time_ms"], points["time_ms_pred"],
                                             points.get("p10_ms", points["time_ms"]),
                                             points.get("p90_ms", points["time_ms"])])),
                     title_text=_y_title(phase, kind), row=1, col=1)
    fig.update_yaxes(title_text="error (%)", zeroline=False, row=2, col=1)
    fig.update_layout(**LAYOUT, title=title or None, height=660)
    _top_legend(fig, "● measured (band p10–p90) · ─ predicted (light band: its ~80 % interval)")
    return fig


def error_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per-point table for display next to a curves figure (errors in %)."""
    columns = {"batch": "batch", "seqlen": "seqlen", "time_ms": "measured ms",
               "time_ms_pred": "predicted ms", "err_pct": "error %", "p10_ms": "p10 ms",
               "p90_ms": "p90 ms", "bound_pred": "bound"}
    frame = points.assign(err_pct=points["err"] * 100)
    frame = frame[[c for c in columns if c in frame.columns]].rename(columns=columns)
    return frame.sort_values(["batch", "seqlen"]).reset_index(drop=True)


def metrics_figure(metrics: pd.DataFrame, title: str = "") -> go.Figure:
    """Median and p90 |error| per target x phase; datasheet beside calibrated when present."""
    if metrics.empty:
        return empty_figure("no metrics")
    labels = [f"{n} · {p}" for n, p in zip(metrics["name"], metrics["phase"])]
    fig = go.Figure()
    series = [("median_abs_err", "median |err|", "#1f77b4"), ("p90_abs_err", "p90 |err|", "#aec7e8")]
    if "datasheet_median_abs_err" in metrics.columns:
        series += [("datasheet_median_abs_err", "datasheet median |err|", "#ff7f0e"),
                   ("datasheet_p90_abs_err", "datasheet p90 |err|", "#ffbb78")]
    for column, name, colour in series:
        fig.add_trace(go.Bar(x=labels, y=metrics[column] * 100, name=name, marker_color=colour,
                             hovertemplate="%{x}<br>" + name + " %{y:.1f}%<extra></extra>"))
    fig.add_hline(y=5, line=dict(color="#2ca02c", dash="dash"), annotation_text="5 % target",
                  annotation_position="top left")
    fig.update_layout(**LAYOUT, barmode="group", title=title or None, height=420,
                      yaxis_title="|error| (%)", xaxis_tickangle=-30)
    return fig


# --------------------------------------------------------------------------- roofline

def roofline_points(points: pd.DataFrame, peak_flops: float, bw_bytes_s: float) -> pd.DataFrame:
    """Achieved FLOP/s and bytes/s of each measured point (analytic counts / measured time).

    `pct_of_limit` = achieved / min(peak, bw x intensity): the fraction of the roofline reached.
    """
    time_s = points["time_ms"] / 1e3
    out = points.assign(
        achieved_flops_s=points["flops_pred"] / time_s,
        achieved_bytes_s=points["bytes_pred"] / time_s,
        intensity=points["flops_pred"] / points["bytes_pred"])
    limit = np.minimum(peak_flops, bw_bytes_s * out["intensity"])
    return out.assign(limit_flops_s=limit, pct_of_limit=out["achieved_flops_s"] / limit)


def roofline_figure(points: pd.DataFrame, ceilings: list[tuple[str, float, float]],
                    title: str = "") -> go.Figure:
    """Measured points at their arithmetic intensity vs achieved TFLOP/s, under the roofs.

    `points` come from `roofline_points` (colour per target, symbol per phase); `ceilings` are
    (label, peak FLOP/s, bandwidth bytes/s): the first is the one % of limit refers to.
    """
    if points.empty:
        return empty_figure("no measured points with FLOP and byte counts")
    fig = go.Figure()
    lo = max(points["intensity"].min() / 3, 1e-2)
    hi = points["intensity"].max() * 3
    roof_y = []
    for i, (label, peak, bw) in enumerate(ceilings):
        ridge = peak / bw
        x = np.array(sorted({lo, min(max(ridge, lo), hi), hi}))
        y = np.minimum(peak, bw * x) / 1e12
        roof_y.extend(y)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label,
                                 line=dict(color="#222" if i == 0 else "#999", width=2,
                                           dash="solid" if i == 0 else "dash"),
                                 hovertemplate=(f"{label}<br>peak {peak / 1e12:.0f} TFLOP/s, "
                                                f"{bw / 1e12:.2f} TB/s, ridge {ridge:.0f} FLOP/B<extra></extra>")))
    symbols = {"prefill": "circle", "decode": "diamond"}
    names = list(dict.fromkeys(points["name"]))
    for (name, phase), group in points.groupby(["name", "phase"], sort=False):
        colour = _PALETTE[names.index(name) % len(_PALETTE)]
        custom = np.stack([group["batch"], group["seqlen"], group["achieved_bytes_s"] / 1e12,
                           group["pct_of_limit"] * 100, group["time_ms"]], axis=-1)
        fig.add_trace(go.Scatter(
            x=group["intensity"], y=group["achieved_flops_s"] / 1e12, mode="markers",
            name=f"{name} · {phase}",
            marker=dict(color=colour, symbol=symbols.get(phase, "circle"), size=9, opacity=0.85,
                        line=dict(width=0.5, color="white")),
            customdata=custom,
            hovertemplate=(f"{name} {phase} B=%{{customdata[0]}} L=%{{customdata[1]:,}}<br>"
                           "intensity %{x:.3g} FLOP/B<br>achieved %{y:.3g} TFLOP/s, "
                           "%{customdata[2]:.2f} TB/s<br>%{customdata[3]:.0f}% of the limit "
                           "(%{customdata[4]:.4g} ms)<extra></extra>")))
    fig.update_xaxes(**value_axis([lo, hi]), title_text="arithmetic intensity (FLOP / byte, analytic counts)")
    fig.update_yaxes(**value_axis(list(points["achieved_flops_s"] / 1e12) + roof_y),
                     title_text="achieved TFLOP/s (analytic FLOPs ÷ measured time)")
    fig.update_layout(**LAYOUT, title=title or None, height=600)
    fig.update_layout(legend=dict(title_text="● prefill  ◆ decode"))
    return fig


# --------------------------------------------------------------------------- whole models

def model_curves_figure(predicted: pd.DataFrame, measured: pd.DataFrame | None, y: str,
                        y_title: str, title: str = "", log_y: bool = True) -> go.Figure:
    """One line per model (predicted) and open markers (measured) against context length."""
    fig = go.Figure()
    for name, group in predicted.sort_values("seqlen").groupby("name", sort=False):
        add_interval_band(fig, group["seqlen"], interval_bounds(group, y), model_colour(name), name)
        fig.add_trace(go.Scatter(x=group["seqlen"], y=group[y], **predicted_line(len(group)), name=name,
                                 legendgroup=name, line=dict(color=model_colour(name), width=2.5),
                                 marker_color=model_colour(name),
                                 hovertemplate=f"{name}<br>L=%{{x:,}}<br>predicted %{{y:.4g}}<extra></extra>"))
    values = list(predicted[y]) if not predicted.empty else []
    if measured is not None and not measured.empty:
        for name, group in measured.sort_values("seqlen").groupby("name", sort=False):
            fig.add_trace(go.Scatter(x=group["seqlen"], y=group[y], mode="markers", name=f"{name} measured",
                                     legendgroup=name, showlegend=False,
                                     marker=dict(color=model_colour(name), size=10, symbol="circle-open",
                                                 line=dict(width=2)),
                                     hovertemplate=f"{name}<br>L=%{{x:,}}<br>measured %{{y:.4g}}<extra></extra>"))
        values += list(measured[y])
    xs = predicted["seqlen"].unique() if not predicted.empty else []
    fig.update_xaxes(**size_axis(xs), title_text="context length (tokens)")
    if log_y:
        fig.update_yaxes(**value_axis(values), title_text=y_title)
    else:
        fig.update_yaxes(title_text=y_title)
    fig.update_layout(**LAYOUT, title=title or None, height=480)
    _top_legend(fig, "lines predicted · ○ measured", below=True)
    return fig


def memory_figure(memory: pd.DataFrame, title: str = "", gpu_mem_bytes: float | None = None) -> go.Figure:
    """One panel per model: stacked GiB of weights, KV cache, SSM state, activations per context."""
    parts = [("weights_bytes", "weights", "#9e9e9e"), ("kv_cache_bytes", "KV cache", "#d62728"),
             ("ssm_state_bytes", "SSM + conv state", "#1f77b4"),
             ("activation_peak_bytes", "activation peak", "#bcbd22")]
    names = list(dict.fromkeys(memory["name"]))
    if not names:
        return empty_figure("no models")
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, subplot_titles=names,
                        horizontal_spacing=0.02)
    for col, name in enumerate(names, start=1):
        rows = memory[memory["name"] == name].sort_values("seqlen")
        x = rows["seqlen"].map(format_size)
        for column, label, colour in parts:
            if column in rows.columns:
                fig.add_trace(go.Bar(x=x, y=rows[column] / 2**30, name=label, marker_color=colour,
                                     legendgroup=label, showlegend=col == 1,
                                     hovertemplate=f"{name} L=%{{x}}<br>{label} %{{y:.1f}} GiB<extra></extra>"),
                              row=1, col=col)
        if gpu_mem_bytes:
            fig.add_hline(y=gpu_mem_bytes / 2**30, line=dict(color="#000", dash="dash", width=1),
                          row=1, col=col)
    fig.update_annotations(font_size=12)
    fig.update_layout(**LAYOUT, barmode="stack", title=title or None, height=450)
    fig.update_yaxes(title_text="GiB" + (" (dashed: GPU memory)" if gpu_mem_bytes else ""), row=1, col=1)
    fig.update_xaxes(title_text="context", type="category")
    _top_legend(fig, below=True)
    return fig


def speedup_figure(predicted: pd.DataFrame, measured: pd.DataFrame | None = None,
                   title: str = "", max_batch_curve: pd.DataFrame | None = None) -> go.Figure:
    """Hybrid-vs-Transformer decode speedup (tokens/s ratio) over context, one colour per batch.

    Frames have columns batch, seqlen, speedup. The paper's "up to 8x" is a dashed line; the
    optional `max_batch_curve` is each model at its own largest batch that fits (capacity).
    """
    fig = go.Figure()
    predicted, out_of_memory = _both_fit(predicted)
    for batch, group in predicted.sort_values("seqlen").groupby("batch", sort=True):
        fig.add_trace(go.Scatter(x=group["seqlen"], y=group["speedup"], mode="lines+markers",
                                 name=f"B={batch} predicted", legendgroup=f"B={batch}",
                                 line=dict(color=batch_colour(batch), width=2), marker=dict(size=5),
                                 hovertemplate=f"B={batch}, L=%{{x:,}}<br>predicted %{{y:.2f}}x<extra></extra>"))
    if not out_of_memory.empty:
        marks = out_of_memory.sort_values(["batch", "seqlen"])
        colours = [batch_colour(b) for b in marks["batch"]]
        fig.add_trace(go.Scatter(x=marks["seqlen"], y=[1.0] * len(marks), mode="markers",
                                 name="✕ Transformer out of memory (same batch)", meta="transformer-oom",
                                 customdata=marks["batch"],
                                 marker=dict(color=colours, size=12, symbol="x-thin-open",
                                             line=dict(width=2, color=colours)),
                                 hovertemplate="B=%{customdata}, L=%{x:,}<br>the Transformer does not fit: "
                                               "no speedup to draw<extra></extra>"))
    if measured is not None and not measured.empty:
        for batch, group in measured.sort_values("seqlen").groupby("batch", sort=True):
            fig.add_trace(go.Scatter(x=group["seqlen"], y=group["speedup"], mode="markers",
                                     name=f"B={batch} measured", legendgroup=f"B={batch}",
                                     marker=dict(color=batch_colour(batch), size=11, symbol="diamond",
                                                 line=dict(width=1, color="white")),
                                     hovertemplate=f"B={batch}, L=%{{x:,}}<br>measured %{{y:.2f}}x<extra></extra>"))
    if max_batch_curve is not None and not max_batch_curve.empty:
        group = max_batch_curve.sort_values("seqlen")
        fig.add_trace(go.Scatter(x=group["seqlen"], y=group["speedup"], mode="lines+markers",
                                 name="each at its largest batch (predicted)",
                                 line=dict(color="#000", width=3, dash="dot"),
                                 customdata=np.stack([group["batch_hybrid"], group["batch_transformer"]], axis=-1),
                                 hovertemplate=("L=%{x:,}<br>%{y:.2f}x<br>hybrid B=%{customdata[0]}, "
                                                "Transformer B=%{customdata[1]}<extra></extra>")))
    fig.add_hline(y=PAPER_SPEEDUP, line=dict(color="#d62728", dash="dash", width=2),
                  annotation_text="paper: “up to 8x” (arXiv 2406.07887)",
                  annotation_position="top left", annotation_font_color="#d62728")
    fig.add_hline(y=1, line=dict(color="#999", width=1))
    xs = predicted["seqlen"].unique() if not predicted.empty else []
    fig.update_xaxes(**size_axis(xs), title_text="context length (tokens)")
    top = max([PAPER_SPEEDUP * 1.25] + [float(f["speedup"].max()) * 1.1 for f in
                                         (predicted, measured, max_batch_curve) if f is not None and not f.empty])
    fig.update_yaxes(title_text="hybrid ÷ Transformer decode tokens/s", range=[0, top])
    fig.update_layout(**LAYOUT, title=title or None, height=500)
    _top_legend(fig, "lines predicted · ◆ measured")
    return fig


def _both_fit(speedup: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows where both models fit, rows where only the Transformer runs out of memory)."""
    if speedup.empty or "fits_base" not in speedup:
        return speedup, speedup.iloc[0:0]
    fast = speedup["fits_fast"].astype(bool) if "fits_fast" in speedup else True
    base = speedup["fits_base"].astype(bool)
    return speedup[fast & base], speedup[fast & ~base]


SPEEDUP_CAPTION = ("Hybrid ÷ Transformer decode tokens/s at the same batch, only where both fit (lines; "
                   "✕ on the 1x line: the Transformer runs out of memory there), and each at its largest "
                   "batch that fits (dotted)")


def whatif_figure(base: pd.DataFrame, edited: pd.DataFrame, y: str, y_title: str,
                  title: str = "") -> go.Figure:
    """Edited config (solid) against its base (dashed), one colour per batch, over context."""
    fig = go.Figure()
    for frame, label, dash in ((edited, "edited", "solid"), (base, "base", "dash")):
        for batch, group in frame.sort_values("seqlen").groupby("batch", sort=True):
            if dash == "solid":
                add_interval_band(fig, group["seqlen"], interval_bounds(group, y), batch_colour(batch), f"B={batch}")
            fig.add_trace(go.Scatter(
                x=group["seqlen"], y=group[y], mode="lines+markers", name=f"B={batch} {label}",
                legendgroup=f"B={batch}", line=dict(color=batch_colour(batch), width=2.5 if dash == "solid" else 1.5,
                                                    dash=dash),
                marker=dict(size=6 if dash == "solid" else 4),
                hovertemplate=f"B={batch} {label}<br>L=%{{x:,}}<br>%{{y:.4g}}<extra></extra>"))
    xs = edited["seqlen"].unique() if not edited.empty else []
    fig.update_xaxes(**size_axis(xs), title_text="context length (tokens)")
    fig.update_yaxes(**value_axis(list(base[y]) + list(edited[y])), title_text=y_title)
    fig.update_layout(**LAYOUT, title=title or None, height=480)
    _top_legend(fig, "solid edited · dashed base", below=True)
    return fig


def breakdown_figure(frames: dict[str, pd.DataFrame], title: str = "") -> go.Figure:
    """Time per op class for one point, one bar per config (frames from analytic breakdown)."""
    fig = go.Figure()
    classes = sorted({c for f in frames.values() for c in f["op_class"]})
    palette = list(_PALETTE)
    for i, op_class in enumerate(classes):
        fig.add_trace(go.Bar(
            x=list(frames), y=[float(f.loc[f["op_class"] == op_class, "time_ms"].sum()) for f in frames.values()],
            name=op_class, marker_color=palette[i % len(palette)],
            hovertemplate=op_class + " %{y:.4g} ms<extra></extra>"))
    fig.update_layout(**LAYOUT, barmode="stack", title=title or None, height=430, yaxis_title="ms")
    return fig


def tp_points_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Measured tensor-parallel points (perfbench.tp.compare's table) beside their predictions.

    One category per point (target, phase, batch, context), one bar group per TP degree: the bar is
    the prediction split into compute and all-reduce, the diamond the measured median. Points
    that did not fit are labelled so at zero.
    """
    fig = go.Figure()
    rows = table.assign(label=[f"{n.replace('-8b', '')} {p} B={int(b)} {format_size(int(s))}"
                               for n, p, b, s in zip(table["name"], table["phase"], table["batch"], table["seqlen"])])
    tps = sorted(int(t) for t in rows["tp"].unique())
    for i, tp in enumerate(tps):
        group = rows[rows["tp"] == tp]
        colour = _PALETTE[i % len(_PALETTE)]
        compute = group["time_ms_pred"] - group["allreduce_ms_pred"]
        fig.add_trace(go.Bar(x=group["label"], y=compute, offsetgroup=str(tp), name=f"TP={tp} compute (predicted)",
                             marker_color=colour, legendgroup=str(tp),
                             hovertemplate=f"TP={tp} %{{x}}<br>compute %{{y:.3f}} ms<extra></extra>"))
        if tp > 1:
            fig.add_trace(go.Bar(x=group["label"], y=group["allreduce_ms_pred"], offsetgroup=str(tp), base=compute,
                                 name=f"TP={tp} all-reduce (predicted)", legendgroup=str(tp),
                                 marker=dict(color=colour, pattern_shape="/", opacity=0.55),
                                 hovertemplate=f"TP={tp} %{{x}}<br>all-reduce %{{y:.3f}} ms<extra></extra>"))
        ok = group[group["status"] == "ok"]
        fig.add_trace(go.Scatter(x=ok["label"], y=ok["time_ms"], mode="markers", offsetgroup=str(tp),
                                 name=f"TP={tp} measured", legendgroup=str(tp),
                                 marker=dict(color="#000", size=10, symbol="diamond-open", line=dict(width=2)),
                                 customdata=ok["err"] * 100,
                                 hovertemplate=(f"TP={tp} %{{x}}<br>measured %{{y:.3f}} ms<br>"
                                                "error %{customdata:+.1f}%<extra></extra>")))
        skipped = group[group["status"] != "ok"]
        if not skipped.empty:
            fig.add_trace(go.Scatter(x=skipped["label"], y=[0] * len(skipped), mode="markers", offsetgroup=str(tp),
                                     name=f"TP={tp} does not fit", legendgroup=str(tp), showlegend=False,
                                     marker=dict(color="#d62728", size=9, symbol="x"),
                                     hovertemplate=f"TP={tp} %{{x}}<br>does not fit the GPU<extra></extra>"))
    fig.update_layout(**LAYOUT, title=title or None, height=520, barmode="group", scattermode="group")
    fig.update_xaxes(title_text="", tickangle=-30)
    fig.update_yaxes(title_text="time (ms): decode step, or time to first token", type="log")
    _top_legend(fig, "bars predicted (hatched: all-reduce) · ◇ measured · × does not fit")
    return fig


SSM_COLOURS = {"mamba2": "#1f77b4", "mamba3": "#ff7f0e", "gdn": "#2ca02c", "mamba": "#8c564b"}


def design_space_figure(designs: pd.DataFrame, front: pd.DataFrame, title: str = "") -> go.Figure:
    """Decode tokens/s at each design's largest batch against its KV + state bytes per sequence, one
    colour per SSM kind, the Pareto front as a line, the base design (the paper's mix) starred."""
    fig = go.Figure()
    for ssm, group in designs.groupby("ssm", sort=True):
        fig.add_trace(go.Scatter(
            x=group["memory_per_seq_bytes"] / 2**20, y=group["decode_tokens_per_s"], mode="markers", name=ssm,
            marker=dict(size=9, color=SSM_COLOURS.get(ssm, "#444444")), customdata=group[["design", "mix", "max_batch"]],
            hovertemplate="%{customdata[0]} (%{customdata[1]})<br>%{x:.3g} MiB / sequence<br>"
                          "%{y:.4g} tokens/s at B=%{customdata[2]}<extra></extra>"))
    if not front.empty:
        line = front.sort_values("memory_per_seq_bytes")
        fig.add_trace(go.Scatter(x=line["memory_per_seq_bytes"] / 2**20, y=line["decode_tokens_per_s"],
                                 mode="lines", name="Pareto front", line=dict(color="#444444", dash="dot"),
                                 hoverinfo="skip"))
    base = designs[designs["is_base"]]
    if not base.empty:
        row = base.iloc[0]
        fig.add_trace(go.Scatter(x=[row["memory_per_seq_bytes"] / 2**20], y=[row["decode_tokens_per_s"]],
                                 mode="markers+text", name=f"base {row['mix']}", text=[f"base {row['mix']}"],
                                 textposition="top center",
                                 marker=dict(symbol="star", size=18, color="#d62728", line=dict(width=1, color="black")),
                                 hoverinfo="skip"))
    fig.update_xaxes(**value_axis(designs["memory_per_seq_bytes"] / 2**20), title_text="KV + state per sequence (MiB)")
    fig.update_yaxes(**value_axis(designs["decode_tokens_per_s"]), title_text="decode tokens/s at the largest batch")
    fig.update_layout(**LAYOUT, title=title or None, height=520)
    _top_legend(fig, "SSM kind · dotted: Pareto front", below=True)
    return fig
