"""The dashboard's tensor-parallel page (issue 9) under AppTest: predictions per TP degree follow
the widgets, measured tp > 1 points appear beside them, and their absence is one note."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from streamlit.testing.v1 import AppTest  # noqa: E402

from results_factory import row, write_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboards" / "app.py"
PAGE = "views/tp.py"


@pytest.fixture(scope="module")
def tp_results_dir(tmp_path_factory) -> Path:
    """A two-GPU run: transformer-8b decode B=16 at 4K (the page's default point), TP=1 and TP=2, on H200."""
    path = tmp_path_factory.mktemp("results") / "h200"
    rows = []
    for tp, time_ms in ((1, 30.0), (2, 17.0)):
        point = row("transformer-8b", "decode", 16, 4096, time_ms, kind="model", gpu="h200")
        rows.append({**point, "tp": tp})
    write_run(path, rows)
    return path


def _open(results: Path, monkeypatch, bundled: Path | None = None) -> AppTest:
    """The page on `results`; `bundled` replaces the shipped two-H200 TP dataset (results/h200-tp)."""
    monkeypatch.setenv("PERFBENCH_RESULTS", str(results))
    if bundled is not None:
        import perfbench.report.compare

        monkeypatch.setattr(perfbench.report.compare, "bundled_tp_results_dir", lambda: bundled)
    return AppTest.from_file(str(APP), default_timeout=60).run().switch_page(PAGE).run()


def _rerun(at: AppTest) -> AppTest:
    return at.switch_page(PAGE).run()


def _figures(at: AppTest) -> dict[str, dict]:
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {f["layout"]["title"]["text"].split(" per ")[0].split(",")[0]: f for f in figures}


def _time(at: AppTest) -> dict:
    return next(f for title, f in _figures(at).items() if title.startswith(("Decode step", "Prefill")))


def _values(values) -> list:
    """Plotly's JSON writes numeric arrays as {dtype, bdata (base64)}; plain lists pass through."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def _bars(fig: dict, name_start: str) -> dict[str, float]:
    trace = next(t for t in fig["data"] if t.get("name", "").startswith(name_start))
    return dict(zip(_values(trace["x"]), _values(trace["y"])))


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_page_draws_time_memory_and_capacity_per_degree(synthetic_results_dir, monkeypatch):
    at = _open(synthetic_results_dir, monkeypatch)
    _assert_clean(at)
    figures = _figures(at)
    assert set(figures) == {"Decode step", "Memory", "Largest decode batch"}
    assert list(_bars(_time(at), "compute")) == ["TP=1", "TP=2", "TP=4", "TP=8"]


def test_collectives_are_zero_on_one_gpu_and_grow_their_share_with_the_degree(synthetic_results_dir, monkeypatch):
    comm = _bars(_time(_open(synthetic_results_dir, monkeypatch)), "all-reduce")
    assert comm["TP=1"] == 0 and 0 < comm["TP=2"]


def test_memory_per_gpu_shrinks_and_capacity_grows_with_the_degree(synthetic_results_dir, monkeypatch):
    figures = _figures(_open(synthetic_results_dir, monkeypatch))
    weights = _bars(figures["Memory"], "weights")
    capacity = _bars(figures["Largest decode batch"], "largest")
    assert weights["TP=2"] < weights["TP=1"] and capacity["TP=8"] > capacity["TP=1"]


def test_model_choice_changes_the_predictions(synthetic_results_dir, monkeypatch):
    at = _open(synthetic_results_dir, monkeypatch)
    before = _bars(_time(at), "compute")
    at.selectbox(key="tp_model").set_value("mamba2-hybrid-8b")
    at = _rerun(at)
    assert "mamba2-hybrid-8b" in _time(at)["layout"]["title"]["text"]
    assert _bars(_time(at), "compute") != before


def test_degree_choice_drops_the_other_degrees(synthetic_results_dir, monkeypatch):
    at = _open(synthetic_results_dir, monkeypatch)
    at.multiselect(key="tp_degrees").set_value([1, 2])
    at = _rerun(at)
    assert list(_bars(_time(at), "compute")) == ["TP=1", "TP=2"]
    assert list(_bars(_figures(at)["Memory"], "weights")) == ["TP=1", "TP=2"]


def test_phase_and_batch_change_the_predictions(synthetic_results_dir, monkeypatch):
    at = _open(synthetic_results_dir, monkeypatch)
    seen = [_bars(_time(at), "compute")]
    for widget, key, value in (("selectbox", "tp_batch", 64), ("radio", "tp_phase", "prefill")):
        getattr(at, widget)(key=key).set_value(value)
        at = _rerun(at)
        _assert_clean(at)
        seen.append(_bars(_time(at), "compute"))
    assert all(a != b for a, b in zip(seen, seen[1:]))
    assert _time(at)["layout"]["title"]["text"].startswith("Prefill")


def test_the_page_predicts_for_the_sidebars_gpu(tp_results_dir, monkeypatch):
    at = _open(tp_results_dir, monkeypatch)
    assert at.selectbox(key="gpu").value == "h200"
    assert "H200" in _time(at)["layout"]["title"]["text"]


def test_without_tp_measurements_the_page_keeps_the_sidebars_results(synthetic_results_dir, monkeypatch):
    at = _open(synthetic_results_dir, monkeypatch)
    _assert_clean(at)
    notes = [i.value for i in at.info]
    assert len(notes) == 1 and str(synthetic_results_dir) in notes[0] and "h200-tp" in notes[0]
    assert not any(t.get("name", "").startswith("measured") for t in _time(at)["data"])


def test_without_any_tp_measurement_one_note_says_so(synthetic_results_dir, tmp_path, monkeypatch):
    at = _open(synthetic_results_dir, monkeypatch, bundled=tmp_path / "no-bundle")
    notes = [i.value for i in at.info]
    assert len(notes) == 1 and "No measured tensor-parallel points" in notes[0] and "\n" not in notes[0]
    assert not any(t.get("name", "").startswith("measured") for t in _time(at)["data"])


def test_page_works_without_any_results(tmp_path, monkeypatch):
    at = _open(tmp_path / "missing", monkeypatch, bundled=tmp_path / "no-bundle")
    _assert_clean(at)
    assert _figures(at) and len(at.info) == 1


def test_measured_tp_points_are_drawn_beside_the_predictions(tp_results_dir, monkeypatch):
    at = _open(tp_results_dir, monkeypatch)
    _assert_clean(at)
    assert not at.info
    measured = next(t for t in _time(at)["data"] if t.get("name", "").startswith("measured"))
    assert dict(zip(_values(measured["x"]), _values(measured["y"]))) == {"TP=1": 30.0, "TP=2": 17.0}
    table = next(df.value for df in at.dataframe if "measured_ms" in df.value.columns).set_index("tp")
    assert table.loc[2, "measured_ms"] == 17.0
    assert table.loc[2, "error"] == pytest.approx((table.loc[2, "time_ms"] - 17.0) / 17.0 * 100, rel=1e-3)  # shown to 4 digits


def test_measured_points_elsewhere_are_listed_not_drawn(tp_results_dir, monkeypatch):
    at = _open(tp_results_dir, monkeypatch)
    at.selectbox(key="tp_batch").set_value(1)
    at = _rerun(at)
    assert any("B=16" in c.value for c in at.caption)
    assert not any(t.get("name", "").startswith("measured") for t in _time(at)["data"])
