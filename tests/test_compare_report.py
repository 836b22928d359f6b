"""`perfbench compare --html` and the whole-model views the report and dashboard share."""

from __future__ import annotations

import re

import pandas as pd
import pytest

pytest.importorskip("plotly")

from perfbench.report import compare as cmp  # noqa: E402
from perfbench.report import model_views as mv  # noqa: E402
from perfbench.report.figures import value_axis  # noqa: E402
from perfbench.report.html_page import write_report  # noqa: E402
from results_factory import row  # noqa: E402
from test_compare import FakeModel, _results  # noqa: E402


def _comparison():
    frame, model = _results()
    return cmp.compare(frame, predictor=model.predictor, resolver=model.resolver,
                       known_gpus=("h100",))


def test_html_report_is_self_contained(tmp_path):
    path = write_report(_comparison(), tmp_path / "report.html", source="hand-made")
    text = path.read_text()
    assert re.search(r"plotly\.js v\d", text), "plotly.js is not inlined"
    assert not re.search(r"<script[^>]*\bsrc=", text), "the report loads a script from elsewhere"


def test_html_report_has_the_accuracy_table_and_one_curve_per_target_and_phase(tmp_path):
    text = write_report(_comparison(), tmp_path / "r.html").read_text()
    assert "median |err|" in text and "10.0%" in text
    # Plotly writes the title raw with orjson installed, JSON-escaped (\u00b7) without it.
    text = text.replace("\\u00b7", "·")
    assert text.count("mamba2 · decode") >= 1 and text.count("mamba2 · prefill") >= 1


def test_unwritable_report_path_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    from perfbench.errors import PerfbenchError

    with pytest.raises(PerfbenchError, match="cannot write"):
        write_report(_comparison(), tmp_path / "file" / "r.html")


def test_decode_speedup_is_hybrid_over_transformer_tokens_per_second():
    frame = pd.DataFrame({"name": [mv.HYBRID, mv.TRANSFORMER], "batch": [8, 8], "seqlen": [4096, 4096],
                          "tokens_per_s": [800.0, 100.0]})
    assert mv.decode_speedup(frame)["speedup"].tolist() == [8.0]


def test_decode_speedup_needs_both_models():
    frame = pd.DataFrame({"name": [mv.HYBRID], "batch": [8], "seqlen": [4096], "tokens_per_s": [1.0]})
    assert mv.decode_speedup(frame).empty


def test_sum_of_layers_counts_each_layer_by_the_models_pattern():
    # transformer-8b: 32 attention-mha + 32 mlp blocks
    rows = [row("transformer-8b", "decode", 1, 4096, 100.0, kind="model"),
            row("attention-mha", "decode", 1, 4096, 1.0), row("mlp", "decode", 1, 4096, 0.5)]
    table = mv.sum_of_layers(pd.DataFrame(rows), "transformer-8b")
    assert table["layers_ms"].tolist() == [pytest.approx(32 * 1.0 + 32 * 0.5)]
    assert table["model_over_layers"].tolist() == [pytest.approx(100.0 / 48.0)]


def test_sum_of_layers_is_empty_when_a_layer_was_not_measured():
    rows = [row("transformer-8b", "decode", 1, 4096, 100.0, kind="model"), row("mlp", "decode", 1, 4096, 0.5)]
    assert mv.sum_of_layers(pd.DataFrame(rows), "transformer-8b").empty


def test_hybrid_fits_a_larger_batch_than_the_transformer_at_long_context():
    table = mv.max_batch_frame([mv.HYBRID, mv.TRANSFORMER], [32768], "h100")
    assert table.loc[mv.HYBRID, "32K"] > table.loc[mv.TRANSFORMER, "32K"]


def test_log_ticks_cover_the_data_and_read_plainly():
    axis = value_axis([0.07, 40.0])
    assert min(axis["tickvals"]) <= 0.1 and max(axis["tickvals"]) >= 20
    assert "0.1" in axis["ticktext"] and all("e" not in t for t in axis["ticktext"])


def test_tick_labels_keep_their_magnitude():
    axis = value_axis([3000.0, 30000.0])
    labels = dict(zip(axis["tickvals"], axis["ticktext"]))
    assert labels[10000.0] == "10k" and labels[5000.0] == "5000"


def test_roofline_uses_the_calibrations_measured_ceilings_first(tmp_path):
    from analytic.calibration import Calibration

    path = Calibration(gpu="h100", gpu_name="NVIDIA H100 80GB HBM3", copy_bandwidth_bytes_s=2.9e12,
                       gemm_peak_flops=7.5e14, gemm=((1.0, 4096, 4096, 2.0e-5),),
                       launch={"graph_kernel_s": 2e-6, "eager_kernel_s": 9e-6},
                       op_classes={}).save(tmp_path / "cal.json")
    ceilings = cmp.roofline_ceilings("h100", path)
    assert [c[1:] for c in ceilings] == [(7.5e14, 2.9e12), (989.4e12, 3.35e12)]
    assert "measured" in ceilings[0][0] and "datasheet" in ceilings[1][0]


def test_share_of_the_roofline_is_achieved_over_the_lower_roof():
    from perfbench.report.figures import roofline_points

    # 1e12 FLOPs and 1e9 bytes in 1 ms: 1e15 FLOP/s achieved at intensity 1000 (compute roof 2e15)
    points = pd.DataFrame({"time_ms": [1.0], "flops_pred": [1e12], "bytes_pred": [1e9]})
    got = roofline_points(points, peak_flops=2e15, bw_bytes_s=1e13).iloc[0]
    assert got["intensity"] == 1000 and got["pct_of_limit"] == pytest.approx(0.5)


def _speedup_frame():
    rows = []
    for seqlen, fits_base in ((4096, True), (32768, False)):
        rows.append({"name": mv.HYBRID, "batch": 8, "seqlen": seqlen, "tokens_per_s": 800.0, "fits": True})
        rows.append({"name": mv.TRANSFORMER, "batch": 8, "seqlen": seqlen, "tokens_per_s": 100.0, "fits": fits_base})
    return pd.DataFrame(rows)


def test_speedup_chart_draws_lines_only_where_both_models_fit():
    from perfbench.report.figures import speedup_figure

    fig = speedup_figure(mv.decode_speedup(_speedup_frame()))
    line = next(t for t in fig.data if t.name == "B=8 predicted")
    assert list(line.x) == [4096]


def test_speedup_chart_marks_where_the_transformer_runs_out_of_memory():
    from perfbench.report.figures import speedup_figure

    fig = speedup_figure(mv.decode_speedup(_speedup_frame()))
    marks = [t for t in fig.data if t.meta == "transformer-oom"]
    assert len(marks) == 1 and list(marks[0].x) == [32768] and "out of memory" in marks[0].name


def test_speedup_caption_says_only_where_both_fit():
    from perfbench.report.figures import SPEEDUP_CAPTION

    assert "only where both fit" in SPEEDUP_CAPTION and "out of memory" in SPEEDUP_CAPTION
