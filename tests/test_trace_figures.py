"""Figures for the dashboard's "Predicted vs counted" page draw the rows they are given."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("plotly")
from perfbench.traces.figures import kernel_time_figure, predicted_vs_counted_figure  # noqa: E402

COMPARISON = pd.DataFrame({
    "op_class": ["gemm", "state_update", "total"], "ops": ["in_proj", "ssm_update", "all"],
    "kernels": ["nvjet_x", "_selective_scan_update_kernel", ""], "note": ["", "off", ""],
    "predicted_bytes": [1e6, 3e5, 1.3e6], "counted_bytes": [1e6, 6e5, 1.6e6], "bytes_ratio": [1.0, 2.0, 1.23],
    "predicted_flops": [5e6, 1e5, 5.1e6], "counted_flops": [5e6, 1e5, 5.1e6], "flops_ratio": [1.0, 1.0, 1.0],
    "mismatch": [False, True, True]})


def test_predicted_vs_counted_has_a_bar_pair_per_operation_without_the_total():
    fig = predicted_vs_counted_figure(COMPARISON, "bytes")
    assert [len(trace.x) for trace in fig.data] == [2, 2]
    assert list(fig.data[1].y) == [1e6, 6e5]


def test_operations_off_by_more_than_20_percent_are_labelled_with_their_ratio():
    fig = predicted_vs_counted_figure(COMPARISON, "bytes")
    assert [a.text for a in fig.layout.annotations] == ["x2.00"]


def test_kernel_time_stacks_op_classes_per_point():
    breakdown = pd.DataFrame({"nvtx_range": ["a", "a", "b"], "op_class": ["gemm", "ssd", "gemm"],
                              "gpu_time_ms_per_step": [0.5, 0.25, 1.0]})
    fig = kernel_time_figure(breakdown)
    by_class = {trace.name: dict(zip(trace.y, trace.x)) for trace in fig.data}
    assert by_class["gemm"] == {"a": 500.0, "b": 1000.0} and by_class["ssd"]["a"] == 250.0
