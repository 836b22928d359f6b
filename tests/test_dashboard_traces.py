"""The dashboard's "Predicted vs counted" page (issue 5) under AppTest: kernel breakdowns and ncu
comparisons from Parquet or raw captures, and one clear line when there is nothing to show."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from streamlit.testing.v1 import AppTest  # noqa: E402

from perfbench.traces import ncu  # noqa: E402
from perfbench.traces.nsys_sqlite import parse_nsys_sqlite  # noqa: E402
from trace_synth import ncu_raw_csv, nsys_two_points  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboards" / "app.py"
PAGE = "views/traces.py"
DECODE = "mamba2/decode/B=64/L=4096"
PREFILL = "mlp/prefill/B=8/L=4096"
SSU = "_selective_scan_update_kernel"
# One Mamba-2 decode step as ncu counts it, and the model's ops for it: the state update reads and
# writes twice what the model says (600 kB vs 300 kB), everything else agrees.
STEP = [
    ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", {ncu.DRAM_READ: 1_000_000, ncu.DRAM_WRITE: 1_000,
                                           ncu.TENSOR_FLOPS: 5_000_000, ncu.DURATION: 9_000}),
    ("void causal_conv1d_update_kernel<64, 4, true>(ConvParamsBase)",
     {ncu.DRAM_READ: 5_000, ncu.DRAM_WRITE: 500, ncu.DURATION: 2_000}),
    (SSU, {ncu.DRAM_READ: 300_000, ncu.DRAM_WRITE: 300_000, ncu.DURATION: 4_000}),
    ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", {ncu.DRAM_READ: 500_000, ncu.DRAM_WRITE: 1_000,
                                           ncu.TENSOR_FLOPS: 2_500_000, ncu.DURATION: 6_000}),
]
PREDICTED = pd.DataFrame({
    "op": ["in_proj", "conv1d", "ssm_update", "out_proj"],
    "op_class": ["gemm", "conv1d", "state_update", "gemm"],
    "flops": [5.0e6, 0.0, 0.0, 2.5e6], "bytes": [1.0e6, 5.5e3, 3.0e5, 5.0e5],
    "time_ms": [0.01] * 4, "bound": ["memory"] * 4})


def _comparison(trace_id: str) -> pd.DataFrame:
    kernels = ncu.counted(ncu.parse_ncu_csv(ncu_raw_csv(STEP * 3)), DECODE, trace_id=trace_id)
    return ncu.compare_with_model(kernels, breakdown=lambda *point: PREDICTED)


@pytest.fixture(scope="module")
def traces_dir(tmp_path_factory) -> Path:
    """What `perfbench trace` leaves: <trace_id>/breakdown.parquet and ncu_vs_model.parquet."""
    root = tmp_path_factory.mktemp("traces")
    nsys_id, ncu_id = "20261124T100000Z-aa01", "20261124T110000Z-bb02"
    (root / nsys_id).mkdir()
    (root / ncu_id).mkdir()
    sqlite = nsys_two_points(root / nsys_id / "mamba2-mlp_decode-prefill.sqlite")
    parse_nsys_sqlite(sqlite, trace_id=nsys_id).to_parquet(root / nsys_id / "breakdown.parquet")
    _comparison(ncu_id).to_parquet(root / ncu_id / "ncu_vs_model.parquet")
    return root


def _app(results: Path, traces: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("PERFBENCH_RESULTS", str(results))
    monkeypatch.setenv("PERFBENCH_TRACES", str(traces))
    return AppTest.from_file(str(APP), default_timeout=60)


def _open(at: AppTest, bundled: bool = False) -> AppTest:
    """The traces page; the bundled tests/data captures off unless asked for, so the test sees
    only its own traces."""
    at = at.switch_page(PAGE).run()
    at.sidebar.checkbox(key="traces_bundled").set_value(bundled)
    return at.switch_page(PAGE).run()


def _figures(at: AppTest) -> dict[str, dict]:
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {f["layout"]["title"]["text"].split(" · ")[0]: f for f in figures}


def _table(at: AppTest, column: str):
    """The first st.dataframe holding `column` (AppTest does not keep a dataframe's key)."""
    return next(df for df in at.dataframe if column in df.value.columns)


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_page_shows_kernel_time_and_both_ncu_figures(synthetic_results_dir, traces_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, traces_dir, monkeypatch).run())
    _assert_clean(at)
    assert set(_figures(at)) == {"GPU time per step by op class", "DRAM bytes per step", "FLOPs per step"}


def test_kernel_figure_has_a_bar_per_point_of_the_trace(synthetic_results_dir, traces_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, traces_dir, monkeypatch).run())
    fig = _figures(at)["GPU time per step by op class"]
    assert {y for trace in fig["data"] for y in trace["y"]} == {DECODE, PREFILL}


def test_kernel_table_lists_the_chosen_points_kernels(synthetic_results_dir, traces_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, traces_dir, monkeypatch).run())
    at.selectbox(key="traces_point").set_value(DECODE)
    at = at.switch_page(PAGE).run()
    decode = _table(at, "kernel_full").value
    assert SSU in set(decode["kernel"])
    assert decode["share"].sum() == pytest.approx(100.0, abs=0.01)  # each share shown to 4 digits
    at.selectbox(key="traces_point").set_value(PREFILL)
    prefill = _table(at.switch_page(PAGE).run(), "kernel_full").value
    assert SSU not in set(prefill["kernel"]) and "vectorized_elementwise_kernel" in set(prefill["kernel"])


def test_operation_off_by_more_than_20_percent_is_highlighted_and_names_its_kernel(synthetic_results_dir, traces_dir,
                                                                                   monkeypatch):
    at = _open(_app(synthetic_results_dir, traces_dir, monkeypatch).run())
    table = _table(at, "ops")
    rows = table.value.set_index("ops")
    assert rows.loc["ssm_update", "bytes_ratio"] == "x2.00" and rows.loc["ssm_update", "mismatch"]
    assert not rows.loc["in_proj", "mismatch"]
    assert "#fde2e1" in table.proto.arrow_data.styler.styles  # the red row background travels with the table
    named = [m.value for m in at.markdown if "ssm_update" in m.value]
    assert named and SSU in named[0]


def test_ncu_bytes_figure_marks_only_the_operation_that_is_off(synthetic_results_dir, traces_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, traces_dir, monkeypatch).run())
    fig = _figures(at)["DRAM bytes per step"]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["x2.00"]


def test_raw_captures_without_parquet_are_parsed_with_the_trace_parsers(synthetic_results_dir, tmp_path, monkeypatch):
    nsys_two_points(tmp_path / "capture.sqlite")
    # capture.py's per-point file name tells which point the CSV profiled
    (tmp_path / "mamba2_decode_B_64_L_4096.ncu.csv").write_text(ncu_raw_csv(STEP * 3))
    at = _open(_app(synthetic_results_dir, tmp_path, monkeypatch).run())
    _assert_clean(at)
    figures = _figures(at)
    assert {y for t in figures["GPU time per step by op class"]["data"] for y in t["y"]} == {DECODE, PREFILL}
    assert "DRAM bytes per step" in figures  # compared with the real analytic model


def test_the_same_point_in_two_traces_is_shown_per_trace(synthetic_results_dir, traces_dir, tmp_path, monkeypatch):
    root = tmp_path / "traces"
    for file in traces_dir.rglob("*.parquet"):
        (root / file.parent.name).mkdir(parents=True, exist_ok=True)
        (root / file.parent.name / file.name).write_bytes(file.read_bytes())
    (root / "raw").mkdir()
    (root / "raw" / "mamba2_decode_B_64_L_4096.ncu.csv").write_text(ncu_raw_csv(STEP * 3))
    at = _open(_app(synthetic_results_dir, root, monkeypatch).run())
    _assert_clean(at)
    summary = _table(at, "off_by_20pct").value
    assert sorted(summary["trace"]) == ["20261124T110000Z-bb02", "traces/raw/mamba2_decode_B_64_L_4096.ncu.csv"]


def test_no_traces_is_one_info_line(synthetic_results_dir, tmp_path, monkeypatch):
    at = _open(_app(synthetic_results_dir, tmp_path, monkeypatch).run())
    _assert_clean(at)
    assert len(at.info) == 1 and "perfbench trace" in at.info[0].value
    assert not at.get("plotly_chart")


def test_missing_traces_dir_says_it_does_not_exist(synthetic_results_dir, tmp_path, monkeypatch):
    at = _open(_app(synthetic_results_dir, tmp_path / "nowhere", monkeypatch).run())
    _assert_clean(at)
    assert len(at.info) == 1 and "does not exist" in at.info[0].value


def test_breakdown_only_says_ncu_has_not_run(synthetic_results_dir, traces_dir, tmp_path, monkeypatch):
    only = tmp_path / "nsys-only"
    only.mkdir()
    (only / "breakdown.parquet").write_bytes((next(traces_dir.rglob("breakdown.parquet"))).read_bytes())
    at = _open(_app(synthetic_results_dir, only, monkeypatch).run())
    _assert_clean(at)
    assert any("--ncu" in i.value for i in at.info)
    assert set(_figures(at)) == {"GPU time per step by op class"}


def test_a_damaged_trace_file_is_one_warning_not_a_traceback(synthetic_results_dir, tmp_path, monkeypatch):
    (tmp_path / "breakdown.parquet").write_bytes(b"PAR1 not parquet")
    (tmp_path / "broken.sqlite").write_bytes(b"not sqlite at all")
    at = _open(_app(synthetic_results_dir, tmp_path, monkeypatch).run())
    assert not at.exception and not at.error
    assert any("breakdown.parquet" in w.value for w in at.warning)
    assert all("\n" not in w.value for w in at.warning)


def test_an_ncu_csv_whose_name_gives_no_point_is_skipped_in_one_caption(synthetic_results_dir, tmp_path, monkeypatch):
    (tmp_path / "ncu_mamba2_decode.ncu.csv").write_text(ncu_raw_csv(STEP * 3))
    at = _open(_app(synthetic_results_dir, tmp_path, monkeypatch).run())
    _assert_clean(at)
    assert not at.warning
    assert any("ncu_mamba2_decode.ncu.csv" in c.value and "not compared" in c.value for c in at.caption)


def test_page_renders_with_the_bundled_captures(synthetic_results_dir, tmp_path, monkeypatch):
    at = _open(_app(synthetic_results_dir, tmp_path, monkeypatch).run(), bundled=True)
    _assert_clean(at)
