"""Roofline: each measured point at its arithmetic intensity vs achieved FLOP/s, under the ceilings."""

import streamlit as st

from dashboards import data
from perfbench.report import figures
from perfbench.report.compare import roofline_ceilings

st.title("Roofline")
result = data.comparison_or_stop()
joined = result.joined
st.caption("FLOPs and bytes are the analytic model's counts for each point; achieved rates divide "
           "them by the measured time. % of limit = achieved ÷ min(peak, bandwidth × intensity), "
           "against the first ceiling (measured when the GPU has a calibration).")

gpus = sorted(set(joined["gpu"]))
left, mid, right = st.columns([1, 3, 2])
gpu = left.selectbox("GPU", gpus, key="roof_gpu")
names = list(dict.fromkeys(result.metrics["name"]))
layers = [n for n in names if (joined.loc[joined["name"] == n, "target_kind"] == "layer").any()]
chosen = mid.multiselect("Targets", names, default=layers or names, key="roof_targets")
phases = right.multiselect("Phase", ["prefill", "decode"], default=["prefill", "decode"], key="roof_phases")

ceilings = roofline_ceilings(gpu)
_, peak, bw = ceilings[0]
rows = joined[(joined["gpu"] == gpu) & joined["name"].isin(chosen) & joined["phase"].isin(phases)]
points = figures.roofline_points(rows, peak, bw) if not rows.empty else rows
data.plot(figures.roofline_figure(points, ceilings, f"Roofline · {gpu.upper()}"), key="roofline")

if not points.empty:
    st.subheader("Share of the roofline reached")
    summary = (points.groupby(["name", "phase"], sort=False)["pct_of_limit"]
               .agg(["count", "median", "min", "max"]).reset_index())
    summary[["median", "min", "max"]] *= 100
    data.table(summary.rename(columns={"count": "points", "median": "median %", "min": "min %",
                                         "max": "max %"}),
                 hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.0f")
                                                 for c in ("median %", "min %", "max %")})
    table = points[["name", "phase", "batch", "seqlen", "time_ms", "intensity", "achieved_flops_s",
                    "achieved_bytes_s", "pct_of_limit"]].assign(
        achieved_tflops=points["achieved_flops_s"] / 1e12, achieved_tb_s=points["achieved_bytes_s"] / 1e12,
        pct_of_limit=points["pct_of_limit"] * 100).drop(columns=["achieved_flops_s", "achieved_bytes_s"])
    with st.expander("Every point"):
        data.table(table, hide_index=True)
