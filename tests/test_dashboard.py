"""Dashboard pages under streamlit.testing.v1.AppTest: they render, and their widgets drive the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from streamlit.testing.v1 import AppTest  # noqa: E402

from perfbench.measure.results import source_files  # noqa: E402
from results_factory import row, synthetic_sweep, write_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboards" / "app.py"
# Every page file, so a page added later (e.g. the traces page) is covered without editing this.
PAGES = sorted(f"views/{p.name}" for p in (ROOT / "dashboards" / "views").glob("*.py") if p.name != "__init__.py")
# traces: its charts need trace files, absent in CI (tests/test_dashboard_traces.py draws them)
CHARTLESS = {"views/runs.py", "views/traces.py"}
BUNDLED = ROOT / "results" / "h100"


def _app(results: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("PERFBENCH_RESULTS", str(results))
    return AppTest.from_file(str(APP), default_timeout=60)


def _open(at: AppTest, page: str) -> AppTest:
    """st.navigation apps go back to the default page on a plain rerun: name the page every time."""
    return at.switch_page(page).run()


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_synthetic_results_dir(page, synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), page)
    _assert_clean(at)
    if page not in CHARTLESS:
        assert _figures(at), "no Plotly figure on the page"


@pytest.mark.skipif(not source_files(BUNDLED), reason="no bundled results yet in results/h100")
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_bundled_data(page, monkeypatch):
    at = _open(_app(BUNDLED, monkeypatch).run(), page)
    _assert_clean(at)


def _trace_names(fig: dict) -> list[str]:
    return [t.get("name", "") for t in fig["data"]]


def test_curves_target_choice_changes_the_plotted_points(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/curves.py")
    before = _figures(at)[0]
    at.selectbox(key="curves_target").set_value("attention")
    after = _figures(_open(at, "views/curves.py"))[0]
    assert "attention" in after["layout"]["title"]["text"]
    assert [t.get("y") for t in after["data"]] != [t.get("y") for t in before["data"]]


def test_curves_batch_choice_drops_the_other_batches(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/curves.py")
    assert any("B=64" in n for n in _trace_names(_figures(at)[0]))
    at.multiselect(key="curves_batches").set_value([1])
    names = _trace_names(_figures(_open(at, "views/curves.py"))[0])
    assert any("B=1" in n for n in names) and not any("B=64" in n for n in names)


def test_decode_timing_mode_switches_the_measured_points(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/curves.py")
    at.radio(key="curves_phase").set_value("decode")
    graph = _figures(_open(at, "views/curves.py"))[0]
    at.sidebar.radio(key="mode").set_value("eager")
    eager = _figures(_open(at, "views/curves.py"))[0]
    measured = lambda fig: [t["y"] for t in fig["data"] if t.get("name", "").endswith("measured")]  # noqa: E731
    assert measured(graph) != measured(eager)


def test_roofline_phase_filter_changes_the_points(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/roofline.py")
    assert any("decode" in n for n in _trace_names(_figures(at)[0]))
    at.multiselect(key="roof_phases").set_value(["prefill"])
    names = _trace_names(_figures(_open(at, "views/roofline.py"))[0])
    assert any("prefill" in n for n in names) and not any("decode" in n for n in names)


def test_models_batch_choice_changes_the_decode_curves(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/models.py")
    before = _figures(at)[0]
    at.radio(key="models_batch").set_value(64)
    after = _figures(_open(at, "views/models.py"))[0]
    assert "B=64" in after["layout"]["title"]["text"]
    assert after["data"][0]["y"] != before["data"][0]["y"]


def test_models_page_marks_the_papers_8x_on_the_speedup_curve(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/models.py")
    speedup = [f for f in _figures(at) if "Hybrid" in f["layout"].get("title", {}).get("text", "")][0]
    lines = [s for s in speedup["layout"].get("shapes", []) if s.get("y0") == s.get("y1") == 8.0]
    texts = [a.get("text", "") for a in speedup["layout"].get("annotations", [])]
    assert lines and any("8x" in t for t in texts)


def test_whatif_d_state_edit_changes_the_edited_prediction_only(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/whatif.py")

    def decode_curves(at):
        fig = [f for f in _figures(at) if f["layout"].get("title", {}).get("text", "").startswith("Decode step<br>")][0]
        return ({t["name"]: t["y"] for t in fig["data"] if t["name"].endswith("edited")},
                {t["name"]: t["y"] for t in fig["data"] if t["name"].endswith("base")})

    edited_before, base_before = decode_curves(at)
    at.number_input(key="whatif_d_state").set_value(256)
    edited_after, base_after = decode_curves(_open(at, "views/whatif.py"))
    assert edited_after != edited_before and base_after == base_before


def test_whatif_gpu_choice_changes_the_prediction(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/whatif.py")
    before = _figures(at)[1]["data"]
    at.selectbox(key="whatif_gpu").set_value("a100")
    after = _figures(_open(at, "views/whatif.py"))[1]["data"]
    assert [t["y"] for t in after] != [t["y"] for t in before]


def test_whatif_impossible_config_is_a_one_line_error(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/whatif.py")
    at.number_input(key="whatif_headdim").set_value(96)  # 8192 / 96 is not whole
    at = _open(at, "views/whatif.py")
    assert not at.exception
    assert len(at.error) == 1 and "headdim" in at.error[0].value


def test_runs_status_filter_changes_the_points_table(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/runs.py")
    rows_all = len(at.dataframe[-1].value)
    at.multiselect(key="runs_status").set_value(["oom"])
    at = _open(at, "views/runs.py")
    assert 0 < len(at.dataframe[-1].value) < rows_all


@pytest.mark.parametrize("page", ["views/overview.py", "views/curves.py", "views/roofline.py",
                                  "views/runs.py"])
def test_empty_results_dir_is_one_error_line_not_a_traceback(page, tmp_path, monkeypatch):
    at = _open(_app(tmp_path, monkeypatch).run(), page)
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value


def test_results_of_only_a_damaged_file_are_one_error_line(tmp_path, monkeypatch):
    (tmp_path / "run-broken.parquet").write_bytes(b"PAR1 this is not parquet")
    at = _open(_app(tmp_path, monkeypatch).run(), "views/curves.py")
    assert not at.exception
    assert len(at.error) == 1 and "run-broken.parquet" in at.error[0].value


@pytest.mark.parametrize("page", ["views/overview.py", "views/curves.py", "views/roofline.py",
                                  "views/runs.py", "views/models.py"])
def test_a_damaged_file_beside_healthy_runs_is_one_warning_and_the_page_draws(page, tmp_path, monkeypatch):
    write_run(tmp_path, synthetic_sweep())
    (tmp_path / "run-broken.parquet").write_bytes(b"PAR1 this is not parquet")
    at = _open(_app(tmp_path, monkeypatch).run(), page)
    assert not at.exception and not at.error
    assert len(at.warning) == 1 and "run-broken.parquet" in at.warning[0].value


@pytest.mark.parametrize("page", ["views/models.py", "views/whatif.py", "views/design.py"])
def test_prediction_pages_work_without_any_results(page, tmp_path, monkeypatch):
    at = _open(_app(tmp_path / "missing", monkeypatch).run(), page)
    _assert_clean(at)
    assert _figures(at)


def test_results_with_only_failed_points_say_so(tmp_path, monkeypatch):
    write_run(tmp_path, [row("mamba2", "decode", 128, 131072, 1.0, status="oom")])
    at = _open(_app(tmp_path, monkeypatch).run(), "views/overview.py")
    assert not at.exception
    assert len(at.error) == 1 and "no ok points" in at.error[0].value


def test_whatif_hf_config_path_becomes_the_base_model(synthetic_results_dir, monkeypatch):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/whatif.py")
    at.radio(key="whatif_source").set_value("Hugging Face config")
    at = _open(at, "views/whatif.py")
    at.text_input(key="whatif_hf_path").set_value(str(Path(__file__).parent / "data" / "hf" / "Qwen2.5-0.5B"))
    at = _open(at, "views/whatif.py")
    _assert_clean(at)
    assert any("*-*-" in c.value for c in at.caption)


def test_whatif_hf_config_bad_path_is_one_error_line(synthetic_results_dir, monkeypatch, tmp_path):
    at = _open(_app(synthetic_results_dir, monkeypatch).run(), "views/whatif.py")
    at.radio(key="whatif_source").set_value("Hugging Face config")
    at = _open(at, "views/whatif.py")
    at.text_input(key="whatif_hf_path").set_value(str(tmp_path / "missing"))
    at = _open(at, "views/whatif.py")
    assert not at.exception
    assert len(at.error) == 1 and "not found" in at.error[0].value


def test_design_space_stars_the_papers_hybrid_mix(tmp_path, monkeypatch):
    at = _open(_app(tmp_path / "missing", monkeypatch).run(), "views/design.py")
    names = _trace_names(_figures(at)[0])
    assert "base 43/7/50" in names and "Pareto front" in names
