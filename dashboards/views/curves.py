"""Curves: measured (markers, p10–p90 band) vs predicted (lines) against sequence length."""

import streamlit as st

from dashboards import data
from perfbench.report import figures

st.title("Curves: measured vs predicted")
result = data.comparison_or_stop()
joined = result.joined
st.markdown(data.describe(result))

targets = list(dict.fromkeys(result.metrics["name"]))
left, mid, right = st.columns([2, 1, 3])
name = left.selectbox("Layer or model", targets, key="curves_target")
phases = [p for p in ("prefill", "decode") if p in set(joined.loc[joined["name"] == name, "phase"])]
phase = mid.radio("Phase", phases, key="curves_phase", horizontal=True)
rows = joined[(joined["name"] == name) & (joined["phase"] == phase)]
batches = sorted(int(b) for b in rows["batch"].unique())
chosen = right.multiselect("Batch", batches, default=batches, key="curves_batches")
rows = rows[rows["batch"].isin(chosen)]

kind = "model" if (rows["target_kind"] == "model").any() else "layer"
decode = " (CUDA graphs)" if phase == "decode" and result.mode == "graph" else ""
title = f"{name} · {phase}{decode} · {', '.join(sorted(set(rows['gpu']))).upper()}"
data.plot(figures.curves_figure(rows, title), key="curves")

if not rows.empty:
    abs_err = rows["err"].abs()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("points", len(rows))
    c2.metric("median |error|", f"{abs_err.median() * 100:.1f}%")
    c3.metric("p90 |error|", f"{abs_err.quantile(0.9) * 100:.1f}%")
    c4.metric("bias (mean signed)", f"{rows['err'].mean() * 100:+.1f}%")
    data.table(figures.error_table(rows), hide_index=True,
                 column_config={"error %": st.column_config.NumberColumn(format="%+.1f")})
