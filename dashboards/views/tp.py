"""Tensor parallelism: predicted step time over TP degrees split into compute and
collectives, memory per GPU and the largest batch that fits, with measured TP points beside them.

Predictions are analytic.predict.tp_scaling (Megatron-style sharding, ring all-reduce); measured points
are results rows with their `tp` column, when a `perfbench run --tp N` has produced any.
"""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analytic.calibration import resolve
from analytic.hardware import get_gpu
from analytic.collectives import interconnect
from analytic.memory import memory_per_gpu
from analytic.predict import tp_scaling
from dashboards import data
from perfbench.report.compare import bundled_tp_results_dir
from perfbench.tp.compare import has_tp_points, with_tp
from models.registry import PAPER_MODELS, get_model
from models.specs import SpecError
from perfbench.errors import USER_ERRORS
from perfbench.report.figures import LAYOUT, value_axis
from perfbench.sizes import format_size

DEGREES = (1, 2, 4, 8)
BATCHES = (1, 8, 16, 32, 64, 128, 256)
CONTEXTS = (1024, 4096, 8192, 16384, 32768, 65536, 131072)
COMPUTE, COMM, MEASURED = "#1f77b4", "#ff7f0e", "#000000"
# perfbench.report.figures' look, legend in a row above the plot
STYLE = {**LAYOUT, "legend": dict(title_text="", orientation="h", yanchor="bottom", y=1.02, x=0),
         "margin": dict(l=70, r=30, t=110, b=60)}
MEMORY_PARTS = (("weights_bytes", "weights", "#9e9e9e"), ("kv_cache_bytes", "KV cache", "#d62728"),
                ("ssm_state_bytes", "SSM + conv state", "#1f77b4"),
                ("activation_peak_bytes", "activation peak", "#bcbd22"))

st.title("Tensor parallelism: scaling over GPUs")
s = data.settings()
graphs = s.mode == "graph"


def measured_points(frame: pd.DataFrame | None) -> pd.DataFrame:
    """Ok whole-model results rows carrying a TP degree (the `tp` results column)."""
    if frame is None or frame.empty or "tp" not in frame:
        return pd.DataFrame()
    return with_tp(frame[(frame["status"] == "ok") & (frame["target_kind"] == "model")])


def tp_results() -> tuple[pd.DataFrame, str | None]:
    """(measured TP rows, why none) from the sidebar's results directory, the one every page reads."""
    results, error = data.try_results()
    rows = measured_points(results)
    if has_tp_points(rows):
        return rows, None
    why = (f"the results could not be read ({error})" if error
           else f"{s.results_dir} holds no points with tp > 1")
    return pd.DataFrame(), why


measured_all, missing = tp_results()

cols = st.columns([3, 2, 1.2, 1.2, 3])
model = cols[0].selectbox("Model", PAPER_MODELS, index=PAPER_MODELS.index("transformer-8b"), key="tp_model")
phase = cols[1].radio("Phase", ["decode", "prefill"], horizontal=True, key="tp_phase")
batch = cols[2].selectbox("Batch", BATCHES, index=BATCHES.index(16), key="tp_batch")
context = cols[3].selectbox("Context" if phase == "decode" else "Prompt", CONTEXTS,
                            index=CONTEXTS.index(4096), format_func=format_size, key="tp_context")
gpu = data.current_gpu()  # the sidebar's, as on every page
degrees = cols[4].multiselect("TP degrees", DEGREES, default=list(DEGREES), key="tp_degrees")
degrees = tuple(sorted(degrees)) or (1,)


@st.cache_data(show_spinner=False, max_entries=64)
def scaling(model: str, phase: str, batch: int, context: int, gpu: str, degrees: tuple, calibration: str,
            graphs: bool) -> pd.DataFrame:
    frame = tp_scaling(model, phase, batch, context, gpu, tps=degrees, calibration=calibration, graphs=graphs)
    return frame.assign(compute_ms=frame["time_ms"] - frame["allreduce_ms"])


@st.cache_data(show_spinner=False, max_entries=64)
def memory(model: str, phase: str, batch: int, context: int, degrees: tuple) -> pd.DataFrame:
    """analytic.memory.memory_per_gpu's parts per degree (degrees that cannot shard the model left out)."""
    rows = []
    for tp in degrees:
        try:
            parts = memory_per_gpu(get_model(model), batch, context, tp, phase=phase)
        except SpecError:
            continue
        rows.append({"tp": tp, **{k: float(np.asarray(v).ravel()[0]) for k, v in parts.items()}})
    return pd.DataFrame(rows)


def _labels(values) -> list[str]:
    return [f"TP={int(v)}" for v in values]


def time_figure(rows: pd.DataFrame, measured: pd.DataFrame, title: str) -> go.Figure:
    """Stacked predicted compute + collectives per degree; measured medians (p10–p90) as markers."""
    x = _labels(rows["tp"])
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=rows["compute_ms"], name="compute (predicted)", marker_color=COMPUTE,
                         hovertemplate="%{x}<br>compute %{y:.3f} ms<extra></extra>"))
    fig.add_trace(go.Bar(x=x, y=rows["allreduce_ms"], name="all-reduce + all-gather (predicted)",
                         marker_color=COMM, hovertemplate="%{x}<br>collectives %{y:.3f} ms<extra></extra>"))
    for r, label in zip(rows.itertuples(index=False), x):
        if np.isfinite(r.time_ms):
            fits = pd.isna(r.max_batch) or r.max_batch >= r.batch
            fig.add_annotation(x=label, y=r.time_ms, yanchor="bottom", showarrow=False,
                               text=f"{r.speedup:.2f}x · comm {r.allreduce_share:.0%}"
                               + ("" if fits else " · does not fit"),
                               font=dict(color=None if fits else "#d62728"))
        else:
            fig.add_annotation(x=label, y=0, yanchor="bottom", showarrow=False, text="cannot split",
                               font=dict(color="#d62728"))
    if not measured.empty:
        fig.add_trace(go.Scatter(
            x=_labels(measured["tp"]), y=measured["time_ms"], mode="markers", name="measured (median, p10–p90)",
            marker=dict(color=MEASURED, size=11, symbol="diamond-open", line=dict(width=2)),
            error_y=dict(type="data", symmetric=False, array=measured["p90_ms"] - measured["time_ms"],
                         arrayminus=measured["time_ms"] - measured["p10_ms"])))
    fig.update_layout(**STYLE, barmode="stack", title=title, height=440,
                      xaxis=dict(title="tensor-parallel degree (GPUs)", type="category", categoryorder="array",
                                 categoryarray=x),
                      yaxis=dict(title="time to first token (ms)" if phase == "prefill" else "decode step (ms)"))
    return fig


def memory_figure(parts: pd.DataFrame, gpu_mem_bytes: float, title: str) -> go.Figure:
    """Per-GPU memory per degree, stacked by what holds it, under the GPU's capacity (dashed)."""
    fig = go.Figure()
    x = _labels(parts["tp"]) if not parts.empty else []
    for column, label, colour in MEMORY_PARTS:
        if column in parts:
            fig.add_trace(go.Bar(x=x, y=parts[column] / 2**30, name=label, marker_color=colour,
                                 hovertemplate=f"%{{x}}<br>{label} %{{y:.1f}} GiB<extra></extra>"))
    fig.add_hline(y=gpu_mem_bytes / 2**30, line=dict(color="#000", dash="dash", width=1),
                  annotation_text="GPU memory", annotation_position="top right")
    fig.update_layout(**STYLE, barmode="stack", title=title, height=420,
                      xaxis=dict(title="tensor-parallel degree (GPUs)", type="category"),
                      yaxis=dict(title="GiB per GPU"))
    return fig


def capacity_figure(rows: pd.DataFrame, title: str) -> go.Figure:
    valid = rows[rows["max_batch"].notna()]
    fig = go.Figure(go.Bar(x=_labels(valid["tp"]), y=valid["max_batch"].astype(float), name="largest batch",
                           marker_color="#2ca02c", text=[f"{int(b):,}" for b in valid["max_batch"]],
                           textposition="outside", hovertemplate="%{x}<br>batch %{y:,}<extra></extra>"))
    fig.update_layout(**STYLE, title=title, height=420, showlegend=False,
                      xaxis=dict(title="tensor-parallel degree (GPUs)", type="category"),
                      yaxis=dict(title="largest batch that fits", **value_axis(valid["max_batch"].astype(float))))
    return fig


try:
    rows = scaling(model, phase, int(batch), int(context), gpu, degrees, s.calibration, graphs)
    parts = memory(model, phase, int(batch), int(context), degrees)
    spec_gpu = get_gpu(gpu)
    cal = resolve(s.calibration, gpu)
    link = interconnect(spec_gpu, cal)
except USER_ERRORS as exc:
    st.error(str(exc))
    st.stop()

multi = measured_all[measured_all["tp"] > 1] if not measured_all.empty else measured_all
measured = measured_all
if not measured.empty:
    measured = measured[(measured["name"] == model) & (measured["phase"] == phase) & (measured["batch"] == batch)
                        & (measured["seqlen"] == context) & (measured["gpu"] == gpu) & measured["tp"].isin(degrees)]
    if phase == "decode" and "mode" in measured:
        measured = measured[measured["mode"] == s.mode]
    measured = measured.sort_values("tp")
if multi.empty:
    st.info(f"No measured tensor-parallel points: {missing}, so only predictions are shown (the sidebar's "
            f"Results directory set to {bundled_tp_results_dir()} shows the bundled two-H200 points; "
            "`perfbench run --tp 2` measures more).")
else:
    st.caption(f"Measured points from {s.results_dir} (TP degrees "
               f"{', '.join(str(t) for t in sorted(set(measured_all['tp'])))})")
if not multi.empty and measured.empty:
    points = sorted({f"{r.name} {r.phase} B={r.batch} L={format_size(r.seqlen)} {r.gpu.upper()}"
                     for r in multi.itertuples(index=False)})
    st.caption(f"No measured TP point at this choice; measured with tp > 1: {'; '.join(points[:8])}"
               + (" …" if len(points) > 8 else ""))

st.caption(f"{spec_gpu.name} · {'calibrated' if cal is not None else 'datasheet roofline'} prediction · "
           f"{'decode with CUDA graphs' if graphs and phase == 'decode' else 'eager'} · collectives as ring "
           f"all-reduce, latency + 2(N−1)/N × bytes ÷ bus bandwidth, with {link.bus_bw_bytes_s / 1e9:,.0f} GB/s "
           f"and {link.latency_s * 1e6:.0f} us per call ({link.source})")

what = "Decode step" if phase == "decode" else "Prefill (time to first token)"
length = "context" if phase == "decode" else "prompt"
point = f"{model} · B={batch} · {length} {format_size(context)} · {gpu.upper()}"
data.plot(time_figure(rows, measured, f"{what} per TP degree<br><sup>{point} · labels: speedup over the "
                                      f"first degree, collectives' share; red where the batch does not fit "
                                      f"the GPUs</sup>"), key="tp_time")
left, right = st.columns(2)
with left:
    data.plot(memory_figure(parts, spec_gpu.mem_bytes, f"Memory per GPU, B={batch}"), key="tp_memory")
with right:
    data.plot(capacity_figure(rows, f"Largest {phase} batch per GPU group at {format_size(context)}"),
              key="tp_capacity")

table = rows.assign(allreduce_share=rows["allreduce_share"] * 100, efficiency=rows["speedup"] / rows["tp"] * 100,
                    memory_per_gpu_gib=rows["memory_per_gpu_bytes"] / 2**30)
columns = ["tp", "time_ms", "compute_ms", "allreduce_ms", "allreduce_share", "speedup", "efficiency",
           "tokens_per_s", "memory_per_gpu_gib", "max_batch", "reason"]
if not measured.empty:
    by_tp = measured.drop_duplicates("tp", keep="last").set_index("tp")
    table["measured_ms"] = table["tp"].map(by_tp["time_ms"])
    table["error"] = (table["time_ms"] - table["measured_ms"]) / table["measured_ms"] * 100
    columns[2:2] = ["measured_ms", "error"]
data.table(table[columns], hide_index=True, key="tp_table", column_config={
    "time_ms": st.column_config.NumberColumn("predicted ms", format="%.3f"),
    "compute_ms": st.column_config.NumberColumn("compute ms", format="%.3f"),
    "allreduce_ms": st.column_config.NumberColumn("collectives ms", format="%.3f"),
    "allreduce_share": st.column_config.NumberColumn("collectives %", format="%.1f"),
    "speedup": st.column_config.NumberColumn(format="%.2fx"),
    "efficiency": st.column_config.NumberColumn("efficiency % (speedup ÷ N)", format="%.0f"),
    "tokens_per_s": st.column_config.NumberColumn("tokens/s (group)", format="%.0f"),
    "memory_per_gpu_gib": st.column_config.NumberColumn("GiB per GPU", format="%.1f"),
    "measured_ms": st.column_config.NumberColumn("measured ms", format="%.3f"),
    "error": st.column_config.NumberColumn("error % (pred − meas) ÷ meas", format="%+.1f")})
