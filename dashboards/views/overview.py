"""Accuracy: `perfbench compare` on the page — error per target x phase, datasheet beside calibrated."""

import streamlit as st

from dashboards import data
from perfbench.report import figures
from perfbench.report.compare import display_table

st.title("Measured vs predicted: accuracy")
result = data.comparison_or_stop()
st.markdown(f"Results: `{data.settings().results_dir}` · " + data.describe(result))
st.caption("Median and p90 of |error| over every ok point of a target and phase; bias is the mean "
           "signed error (negative: the model is optimistic). Target: median ≤ 5 %, p90 ≤ 15 %.")
table = display_table(result.metrics)
data.table(table, hide_index=True, height=36 * (len(table) + 1) + 4)
data.plot(figures.metrics_figure(result.metrics), key="metrics")
