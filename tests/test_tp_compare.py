"""Measured tensor-parallel points beside the analytic per-rank prediction (issue 9): `perfbench compare`
keeps a TP=2 point apart from the TP=1 point at the same size, prices it per rank, and reports it in its own
table (CLI, HTML); the bundled two-H200 dataset goes through the same path."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analytic.predict import predict, predict_tp
from perfbench.cli import app
from perfbench.report.compare import bundled_tp_results_dir, compare, select_points
from perfbench.measure.results import results_exist
from perfbench.tp.compare import display_tp_table, tp_comparison, tp_points
from results_factory import row, write_run

POINT = ("transformer-8b", "decode", 16, 4096)


def _frame(times=((1, 30.0), (2, 17.0)), extra=()) -> pd.DataFrame:
    rows = [{**row(*POINT, t, kind="model", gpu="h200", run_id=f"r{tp}"), "tp": tp} for tp, t in times]
    return pd.DataFrame(rows + list(extra))


def test_a_tp2_point_is_not_deduplicated_into_the_tp1_point_of_the_same_size():
    points = select_points(_frame())
    assert sorted(points["tp"]) == [1, 2]


def test_each_degree_is_priced_per_rank_and_tp1_equals_the_single_gpu_prediction():
    table = tp_comparison(_frame()).set_index("tp")
    args = dict(gpu="h200", calibration="default", graphs=True)
    assert table.loc[2, "time_ms_pred"] == pytest.approx(predict_tp(POINT[0], POINT[1], [16], [4096], tp=2, **args)
                                                         .iloc[0]["time_ms"])
    assert table.loc[1, "time_ms_pred"] == pytest.approx(predict(POINT[0], POINT[1], [16], [4096], tp=1, **args)
                                                         .iloc[0]["time_ms"])
    assert table.loc[2, "err"] == pytest.approx((table.loc[2, "time_ms_pred"] - 17.0) / 17.0)
    assert table.loc[2, "speedup"] == pytest.approx(30.0 / 17.0)
    assert table.loc[1, "allreduce_share_pred"] == 0 < table.loc[2, "allreduce_share_pred"] < 1


def test_a_point_skipped_for_memory_stays_in_the_table_without_an_error():
    skipped = {**row("transformer-8b", "decode", 64, 32768, 1.0, kind="model", gpu="h200", status="skipped"),
               "tp": 2, "reason": "does not fit"}
    table = tp_comparison(_frame(extra=[skipped]))
    line = table[(table["batch"] == 64) & (table["tp"] == 2)].iloc[0]
    assert line["status"] == "skipped" and math.isnan(line["err"]) and line["time_ms_pred"] > 0
    assert display_tp_table(table).set_index("point").loc["B=64 L=32K", "measured ms"] == "skipped"


def test_targets_never_measured_sharded_stay_out_of_the_tp_table():
    other = {**row("mamba2-hybrid-8b", "decode", 16, 4096, 9.0, kind="model", gpu="h200"), "tp": 1}
    assert set(tp_points(_frame(extra=[other]))["name"]) == {"transformer-8b"}
    assert tp_comparison(_frame(times=((1, 30.0),))).empty


def test_compare_keeps_tp_points_out_of_the_metrics_and_in_their_own_table(tmp_path):
    write_run(tmp_path / "tp", _frame().to_dict("records"))
    result = compare(tmp_path / "tp")
    assert int(result.metrics.set_index("name").loc["transformer-8b", "n"]) == 1  # the TP=1 point only
    assert sorted(result.tensor_parallel["tp"]) == [1, 2]
    assert any("tensor-parallel" in note for note in result.notes)


def test_cli_prints_the_tp_table_and_the_html_report_has_its_section(tmp_path):
    write_run(tmp_path / "tp", _frame().to_dict("records"))
    html = tmp_path / "report.html"
    out = CliRunner().invoke(app, ["compare", str(tmp_path / "tp"), "--format", "markdown", "--html", str(html)])
    assert out.exit_code == 0, out.output
    assert "Tensor parallel" in out.output and "| B=16 L=4K | 2 |" in out.output
    assert "Tensor parallelism (per rank" in html.read_text()


@pytest.mark.skipif(not results_exist(bundled_tp_results_dir()), reason="bundled TP results not present")
def test_bundled_two_h200_results_compare_at_both_degrees():
    table = compare(bundled_tp_results_dir()).tensor_parallel
    ok = table[table["status"] == "ok"]
    assert set(ok["tp"]) == {1, 2} and set(ok["name"]) == {"transformer-8b", "mamba2-hybrid-8b"}
    assert (ok.loc[ok["tp"] == 2, "speedup"].dropna() > 1).all()  # two GPUs were measured faster
