"""The HTML report's figures, read from their Plotly JSON: every panel's y axis carries tick labels
inside its data, and a curve of a single point is drawn visibly."""

from __future__ import annotations

import math

import pandas as pd
import pytest

pytest.importorskip("plotly")

from perfbench.report.compare import bundled_results_dir, compare  # noqa: E402
from perfbench.report.figures import curves_figure, value_axis  # noqa: E402
from perfbench.report.html_page import build_sections  # noqa: E402


def _figures():
    for _, items in build_sections(compare(bundled_results_dir())):
        yield from (item for item in items if not isinstance(item, str))


def _axis_values(figure, axis_name: str) -> list[float]:
    ref = "y" if axis_name == "yaxis" else "y" + axis_name[len("yaxis"):]
    values = []
    for trace in figure.data:
        if getattr(trace, "yaxis", None) in (None, ref) and getattr(trace, "y", None) is not None:
            values += [float(v) for v in trace.y if v is not None and v == v and v > 0]
    return values


def _y_axes(figure):
    layout = figure.to_plotly_json()["layout"]
    return [(name, axis) for name, axis in layout.items() if name.startswith("yaxis")]


def test_every_log_y_axis_of_the_report_has_two_ticks_inside_its_data():
    checked = 0
    for figure in _figures():
        for name, axis in _y_axes(figure):
            if axis.get("type") != "log" or "tickvals" not in axis:
                continue
            values = _axis_values(figure, name)
            inside = [t for t in axis["tickvals"] if min(values) <= t <= max(values)]
            assert len(inside) >= 2, (figure.layout.title.text, name, axis["tickvals"], min(values), max(values))
            checked += 1
    assert checked > 10


def test_the_mlp_decode_panel_has_y_tick_labels():
    figure = next(f for f in _figures() if f.layout.title.text and f.layout.title.text.startswith("mlp · decode"))
    axis = figure.to_plotly_json()["layout"]["yaxis"]
    values = _axis_values(figure, "yaxis")
    labels = [text for t, text in zip(axis["tickvals"], axis["ticktext"]) if min(values) <= t <= max(values)]
    assert len(labels) >= 2 and all(labels)


def test_a_narrow_range_gets_ticks_inside_it():
    axis = value_axis([0.103, 0.125])
    assert sum(0.103 <= t <= 0.125 for t in axis["tickvals"]) >= 2


def test_a_single_value_gets_a_tick_at_it():
    assert value_axis([0.25])["tickvals"] == [0.25]


def _one_point_batch() -> pd.DataFrame:
    rows = [dict(target_kind="layer", name="mlp", phase="decode", batch=b, seqlen=s, time_ms=t, time_ms_pred=t * 1.02,
                 err=0.02, p10_ms=t * 0.99, p90_ms=t * 1.01)
            for b, s, t in [(1, 1024, 0.1), (1, 4096, 0.12), (64, 4096, 0.3)]]
    return pd.DataFrame(rows)


def test_a_single_point_prediction_has_a_visible_marker():
    figure = curves_figure(_one_point_batch())
    single = [t for t in figure.data if t.name == "B=64 predicted"][0]
    assert "markers" in single.mode and single.marker.size >= 8


def test_every_single_point_line_in_the_report_has_markers():
    for figure in _figures():
        for trace in figure.data:
            if getattr(trace, "mode", None) and "lines" in trace.mode and trace.x is not None and len(trace.x) == 1:
                assert "markers" in trace.mode, (figure.layout.title.text, trace.name)


def test_a_multi_point_prediction_stays_a_plain_line():
    figure = curves_figure(_one_point_batch())
    assert [t for t in figure.data if t.name == "B=1 predicted"][0].mode == "lines"
