"""`perfbench compare`: joins and error metrics on a hand-made results set with known values."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from perfbench.commands import compare as compare_command
from perfbench.report import compare as cmp
from perfbench.errors import PerfbenchError
from results_factory import row, write_run

# mamba2 decode: measured vs predicted ms -> err +0.1, -0.1, 0, +0.1, -0.5
DECODE = [((1, 1024), 1.0, 1.1), ((1, 4096), 2.0, 1.8), ((8, 1024), 4.0, 4.0),
          ((8, 4096), 8.0, 8.8), ((64, 4096), 10.0, 5.0)]
# mamba2 prefill: err +0.2 and -0.2
PREFILL = [((1, 1024), 5.0, 6.0), ((8, 1024), 10.0, 8.0)]


class FakeModel:
    """A predictor and calibration resolver with known answers; records what it was asked."""

    def __init__(self, table: dict, datasheet_scale: float = 0.5):
        self.table = table
        self.datasheet_scale = datasheet_scale
        self.calls: list[tuple] = []

    def predictor(self, target, phase, batch, seqlen, gpu, calibration, graphs):
        self.calls.append((target, phase, gpu, calibration, graphs))
        scale = 1.0 if calibration is not None else self.datasheet_scale
        rows = [{"batch": b, "seqlen": s, "time_ms": scale * self.table.get((target, phase, b, s), np.nan),
                 "flops": 1e12, "bytes": 1e9, "bound": "memory", "intensity": 1000.0, "n_kernels": 7,
                 "calibrated": calibration is not None}
                for b in batch for s in seqlen]
        return pd.DataFrame(rows)

    @staticmethod
    def resolver(gpu, calibration):
        if calibration is None or calibration == "none":
            return None, cmp.DATASHEET
        return f"cal-{gpu}", cmp.CALIBRATED


def _results(extra: list[dict] = ()) -> tuple[pd.DataFrame, FakeModel]:
    rows, table = [], {}
    for (b, s), measured, predicted in DECODE:
        rows.append(row("mamba2", "decode", b, s, measured))
        table[("mamba2", "decode", b, s)] = predicted
    for (b, s), measured, predicted in PREFILL:
        rows.append(row("mamba2", "prefill", b, s, measured))
        table[("mamba2", "prefill", b, s)] = predicted
    return pd.DataFrame(rows + list(extra)), FakeModel(table)


def _compare(frame, model, **kw):
    kw.setdefault("known_gpus", ("h100", "h200", "a100"))
    return cmp.compare(frame, predictor=model.predictor, resolver=model.resolver, **kw)


def _metric(result, phase, name="mamba2"):
    m = result.metrics
    return m[(m["name"] == name) & (m["phase"] == phase)].iloc[0]


def test_median_and_p90_of_absolute_error_are_fractions():
    frame, model = _results()
    got = _metric(_compare(frame, model), "decode")
    assert got["n"] == 5
    assert got["median_abs_err"] == pytest.approx(0.1)
    assert got["p90_abs_err"] == pytest.approx(np.percentile([0, 0.1, 0.1, 0.1, 0.5], 90))


def test_bias_is_the_mean_signed_error():
    frame, model = _results()
    assert _metric(_compare(frame, model), "decode")["bias"] == pytest.approx(-0.08)


def test_worst_point_is_the_largest_absolute_error():
    frame, model = _results()
    got = _metric(_compare(frame, model), "decode")
    assert (got["worst_batch"], got["worst_seqlen"], got["worst_point"]) == (64, 4096, "B=64 L=4K")
    assert got["worst_err"] == pytest.approx(-0.5)


def test_metrics_count_the_points_predicted_host_bound():
    frame, model = _results()
    plain = model.predictor

    def predictor(target, phase, batch, seqlen, *args):
        out = plain(target, phase, batch, seqlen, *args)
        out["bound"] = np.where((phase == "prefill") & (out["batch"] == 1), "host", "memory")
        return out

    model.predictor = predictor
    result = _compare(frame, model)
    prefill_host = int(((result.joined["phase"] == "prefill") & (result.joined["batch"] == 1)).sum())
    assert prefill_host > 0
    assert _metric(result, "prefill")["host_bound"] == prefill_host
    assert _metric(result, "decode")["host_bound"] == 0


def test_error_sign_is_predicted_minus_measured_over_measured():
    frame, model = _results()
    joined = _compare(frame, model).joined
    point = joined[(joined["phase"] == "prefill") & (joined["batch"] == 1)].iloc[0]
    assert point["err"] == pytest.approx((6.0 - 5.0) / 5.0)


def test_phases_are_reported_separately():
    frame, model = _results()
    got = _metric(_compare(frame, model), "prefill")
    assert got["n"] == 2 and got["median_abs_err"] == pytest.approx(0.2)


def test_rows_that_are_not_ok_do_not_count():
    frame, model = _results([row("mamba2", "decode", 128, 131072, 1.0, status="oom"),
                             row("mamba2", "decode", 64, 1024, 3.0, status="error")])
    assert _metric(_compare(frame, model), "decode")["n"] == 5


def test_decode_uses_graph_points_and_graph_predictions_by_default():
    frame, model = _results([row("mamba2", "decode", 1, 1024, 99.0, mode="eager")])
    result = _compare(frame, model)
    assert _metric(result, "decode")["n"] == 5
    assert {graphs for _, phase, _, _, graphs in model.calls if phase == "decode"} == {True}


def test_eager_mode_compares_eager_decode_points_with_eager_predictions():
    frame, model = _results([row("mamba2", "decode", 1, 1024, 2.2, mode="eager")])
    result = _compare(frame, model, mode="eager")
    decode = _metric(result, "decode")
    assert decode["n"] == 1 and decode["mode"] == "eager"
    assert decode["median_abs_err"] == pytest.approx(abs(1.1 - 2.2) / 2.2)
    assert {graphs for _, phase, _, _, graphs in model.calls if phase == "decode"} == {False}


def test_prefill_counts_in_either_decode_mode():
    frame, model = _results()
    assert _metric(_compare(frame, model, mode="eager"), "prefill")["n"] == 2


def test_the_results_gpu_column_picks_the_predicted_gpu():
    frame, model = _results([row("mamba2", "prefill", 1, 1024, 5.0, gpu="h200")])
    result = _compare(frame, model)
    assert sorted(set(result.metrics["gpu"])) == ["h100", "h200"]
    assert {gpu for _, _, gpu, _, _ in model.calls} == {"h100", "h200"}


def test_gpu_option_keeps_only_that_gpus_points():
    frame, model = _results([row("mamba2", "prefill", 1, 1024, 5.0, gpu="h200")])
    result = _compare(frame, model, gpu="h200")
    assert list(result.metrics["gpu"]) == ["h200"] and int(result.metrics["n"].sum()) == 1


def test_points_on_a_gpu_without_spec_are_skipped_with_a_note():
    frame, model = _results([row("mamba2", "prefill", 1, 1024, 5.0, gpu="cpu")])
    result = _compare(frame, model)
    assert "cpu" not in set(result.metrics["gpu"])
    assert any("'cpu'" in note for note in result.notes)


def test_calibrated_comparison_reports_the_datasheet_side_by_side():
    frame, model = _results()
    result = _compare(frame, model)
    got = _metric(result, "prefill")
    assert result.prediction == cmp.CALIBRATED
    # datasheet predictions are half the calibrated ones here: 3.0 vs 5.0 and 4.0 vs 10.0
    assert got["datasheet_median_abs_err"] == pytest.approx(np.median([0.4, 0.6]))


def test_calibration_none_predicts_from_the_datasheet_only():
    frame, model = _results()
    result = _compare(frame, model, calibration="none")
    assert result.prediction == cmp.DATASHEET
    assert "datasheet_median_abs_err" not in result.metrics.columns
    assert {cal for _, _, _, cal, _ in model.calls} == {None}


def test_a_point_measured_in_several_runs_counts_once_latest_wins():
    newer = row("mamba2", "prefill", 1, 1024, 6.0, run_id="20261124T000000Z-cd34")
    newer["timestamp"] = "2026-11-24T00:00:00Z"
    frame, model = _results([newer])
    got = _metric(_compare(frame, model), "prefill")
    assert got["n"] == 2 and got["median_abs_err"] == pytest.approx(np.median([0.0, 0.2]))


def test_no_ok_points_is_a_one_line_error():
    frame = pd.DataFrame([row("mamba2", "decode", 1, 1024, 1.0, status="oom")])
    with pytest.raises(PerfbenchError, match="no ok points"):
        _compare(frame, FakeModel({}))


def test_unknown_mode_is_rejected():
    frame, model = _results()
    with pytest.raises(PerfbenchError, match="unknown mode"):
        _compare(frame, model, mode="cudagraph")


def test_json_records_name_layers_and_models():
    frame, model = _results([row("mamba2-hybrid-8b", "decode", 1, 4096, 10.0, kind="model")])
    model.table[("mamba2-hybrid-8b", "decode", 1, 4096)] = 11.0
    records = cmp.metrics_records(_compare(frame, model).metrics)
    assert {"layer": "mamba2", "phase": "decode"}.items() <= records[1].items()
    hybrid = [r for r in records if "model" in r][0]
    assert hybrid["model"] == "mamba2-hybrid-8b" and "layer" not in hybrid
    assert hybrid["median_abs_err"] == pytest.approx(0.1)
    json.dumps(records)  # plain types only


def test_layers_come_before_models_and_prefill_before_decode():
    frame, model = _results([row("transformer-8b", "decode", 1, 4096, 10.0, kind="model"),
                             row("attention", "decode", 1, 4096, 1.0)])
    model.table[("transformer-8b", "decode", 1, 4096)] = 10.0
    model.table[("attention", "decode", 1, 4096)] = 1.0
    metrics = _compare(frame, model).metrics
    assert list(zip(metrics["name"], metrics["phase"])) == [
        ("mamba2", "prefill"), ("mamba2", "decode"), ("attention", "decode"), ("transformer-8b", "decode")]


# --------------------------------------------------------------------------- the command

@pytest.fixture
def fake_analytic(monkeypatch):
    frame, model = _results([row("mamba2", "decode", 128, 131072, 1.0, status="oom")])
    monkeypatch.setattr(cmp, "predict_grid", model.predictor)
    monkeypatch.setattr(cmp, "resolve_calibration", model.resolver)
    monkeypatch.setattr(cmp, "analytic_gpus", lambda: ("h100", "h200", "a100"))
    return frame


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from perfbench import cli

    monkeypatch.setattr(sys, "argv", ["perfbench", "compare", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_cli_json_is_a_list_with_the_contract_keys(tmp_path, monkeypatch, capsys, fake_analytic):
    write_run(tmp_path / "res", fake_analytic.to_dict("records"))
    code, out, _ = _cli(monkeypatch, capsys, str(tmp_path / "res"), "--format", "json")
    records = json.loads(out)
    assert code == 0 and isinstance(records, list)
    for record in records:
        assert {"layer", "phase", "n", "median_abs_err", "p90_abs_err"} <= set(record)
    decode = [r for r in records if r["phase"] == "decode"][0]
    assert decode["median_abs_err"] == pytest.approx(0.1)


def test_cli_table_says_which_prediction(tmp_path, monkeypatch, capsys, fake_analytic):
    write_run(tmp_path / "res", fake_analytic.to_dict("records"))
    code, out, _ = _cli(monkeypatch, capsys, str(tmp_path / "res"), "--calibration", "none")
    assert code == 0 and "prediction: datasheet" in out and "mamba2" in out


def test_cli_csv_has_one_row_per_target_and_phase(tmp_path, monkeypatch, capsys, fake_analytic):
    import io

    write_run(tmp_path / "res", fake_analytic.to_dict("records"))
    code, out, _ = _cli(monkeypatch, capsys, str(tmp_path / "res"), "--format", "csv")
    table = pd.read_csv(io.StringIO(out))
    assert code == 0 and sorted(table["phase"]) == ["decode", "prefill"]


def test_cli_markdown_is_a_pipe_table(tmp_path, monkeypatch, capsys, fake_analytic):
    write_run(tmp_path / "res", fake_analytic.to_dict("records"))
    code, out, _ = _cli(monkeypatch, capsys, str(tmp_path / "res"), "--format", "markdown")
    assert code == 0 and "| mamba2 | decode |" in out and "10.0%" in out


def test_cli_without_bundled_data_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    for module in (cmp, compare_command):
        monkeypatch.setattr(module, "bundled_results_dir", lambda: tmp_path / "results" / "h100")
    code, out, err = _cli(monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no bundled results" in err


def test_cli_results_of_only_a_damaged_file_warn_once_and_fail_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "run-x.parquet").write_bytes(b"not parquet at all")
    code, _, err = _cli(monkeypatch, capsys, str(tmp_path))
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2
    assert lines[0].startswith("warning: ") and "run-x.parquet" in lines[0] and lines[1].startswith("error: ")


def test_cli_compares_the_healthy_runs_beside_a_damaged_file(tmp_path, monkeypatch, capsys, fake_analytic):
    write_run(tmp_path / "res", fake_analytic.to_dict("records"))
    (tmp_path / "res" / "run-x.parquet").write_bytes(b"PAR1 not parquet")
    code, out, err = _cli(monkeypatch, capsys, str(tmp_path / "res"), "--format", "markdown")
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 0 and "| mamba2 | decode |" in out
    assert len(warnings) == 1 and "run-x.parquet" in warnings[0]


def test_cli_unknown_format_is_rejected(tmp_path, monkeypatch, capsys, fake_analytic):
    write_run(tmp_path / "res", fake_analytic.to_dict("records"))
    code, _, err = _cli(monkeypatch, capsys, str(tmp_path / "res"), "--format", "yaml")
    assert code == 2 and "unknown format" in err


def test_the_analytic_model_prices_every_point_of_a_full_sweep():
    """Contract check against the real `analytic.predict.predict`: nothing dropped, errors finite."""
    from results_factory import synthetic_sweep

    frame = pd.DataFrame(synthetic_sweep())
    result = cmp.compare(frame, calibration="none")
    ok_graph = frame[(frame["status"] == "ok") & ((frame["phase"] == "prefill") | (frame["mode"] == "graph"))]
    assert [n for n in result.notes if "--mode eager" not in n] == []  # only the eager points' pointer
    assert len(result.joined) == len(ok_graph)
    assert np.isfinite(result.joined["err"]).all()
    assert set(zip(result.metrics["name"], result.metrics["phase"])) == set(zip(ok_graph["name"], ok_graph["phase"]))


def test_cli_markdown_header_has_one_cell_per_column(tmp_path, monkeypatch, capsys, fake_analytic):
    write_run(tmp_path / "res", fake_analytic.to_dict("records"))
    _, out, _ = _cli(monkeypatch, capsys, str(tmp_path / "res"), "--format", "markdown")
    header, rule = [line for line in out.splitlines() if line.startswith("|")][:2]
    unescaped = lambda line: line.replace("\\|", "").count("|")  # noqa: E731
    assert unescaped(header) == unescaped(rule)
