"""Prediction intervals and provenance (issue 26 item 3): analytic/provenance.py, analytic/uncertainty.py,
the calibration's uncertainty section, and perfbench/calibration/uncertainty.py's fit and held-out coverage."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from analytic.calibration import (CalibrationError, bundled_path, default_calibration, from_dict, load_calibration,
                                  read_calibration_data)
from analytic.composition import rank_ops
from analytic.ops import GEMM, SSD, gemm
from analytic.predict import breakdown, predict
from analytic.provenance import (BETWEEN, CALIBRATED, EXTRAPOLATED, INTERPOLATED, RULES, kernel_family_provenance, labels, op_provenance,
                                 point_provenance, register_rule)
from analytic.uncertainty import Term, point_interval
from models.registry import get_layer
from models.specs import Mamba2Spec

RESULTS = Path(__file__).resolve().parents[1] / "results"
CAL = default_calibration("h100")


def _section(**classes) -> dict:
    return {"classes": classes or {"gemm/prefill": {"q10": -0.05, "q50": 0.0, "q90": 0.04, "n": 10}},
            "sets": ["results/h100-holdout"],
            "leave_one_out": {"extrapolated": {"q10": -0.1, "q50": 0.0, "q90": 0.15, "n": 50}}}


@pytest.mark.parametrize("target, phase, graphs", [
    ("mamba", "prefill", True), ("mamba2", "decode", True), ("attention", "decode", False),
    ("mlp", "prefill", True), ("mamba2-hybrid-8b", "prefill", True), ("mamba-8b", "decode", True),
])
def test_interval_contains_the_point_prediction(target, phase, graphs):
    frame = predict(target, phase, [1, 7, 64], [300, 4096], graphs=graphs)
    assert (frame["time_lo_ms"] <= frame["time_ms"]).all() and (frame["time_ms"] <= frame["time_hi_ms"]).all()
    assert (frame["time_hi_ms"] > frame["time_lo_ms"]).all()


def test_interval_widens_for_an_extrapolated_op():
    seconds, time_s = [np.array([1.0]), np.array([1.0])], np.array([2.0])
    calibrated = [Term("gemm/prefill", s, np.array([CALIBRATED])) for s in seconds]
    extrapolated = [calibrated[0], Term("gemm/prefill", seconds[1], np.array([EXTRAPOLATED]))]
    lo_c, hi_c, _ = point_interval(calibrated, time_s, CAL)
    lo_e, hi_e, codes = point_interval(extrapolated, time_s, CAL)
    assert lo_e[0] < lo_c[0] and hi_e[0] > hi_c[0]
    assert labels(codes)[0] == "extrapolated"


def test_interpolating_between_measured_shapes_widens_more_than_along_one():
    seconds, time_s = [np.array([1.0])], np.array([1.0])
    along = point_interval([Term("gemm/prefill", seconds[0], np.array([INTERPOLATED]))], time_s, CAL)
    between = point_interval([Term("gemm/prefill", seconds[0], np.array([BETWEEN]))], time_s, CAL)
    assert between[0][0] < along[0][0] and between[1][0] > along[1][0]
    assert labels(between[2])[0] == labels(along[2])[0] == "interpolated"


def test_a_gemm_bracketed_by_other_measured_shapes_is_between_them():
    assert op_provenance(gemm("w", np.array([64.0]), 5000, 3000), None, CAL)[0] == BETWEEN


def test_leave_one_out_quantiles_come_from_the_calibrations_own_gemm_grid():
    from perfbench.calibration.uncertainty import leave_one_out

    loo = leave_one_out(CAL)
    assert set(loo) <= {"interpolated", "extrapolated"} and loo
    assert all(entry["q10"] <= entry["q50"] <= entry["q90"] and entry["n"] >= 3 for entry in loo.values())


def test_a_layer_at_an_unmeasured_state_size_gets_a_wider_interval():
    measured = predict(get_layer("mamba"), "prefill", [16], [4096]).iloc[0]
    # The bundled files sample the scan at d_state 16-256: 512 lies outside what was measured.
    other = predict(dataclasses.replace(get_layer("mamba"), d_state=512), "prefill", [16], [4096]).iloc[0]
    width = lambda row: np.log(row["time_hi_ms"] / row["time_lo_ms"])  # noqa: E731
    assert other["provenance"] == "extrapolated" and measured["provenance"] == "calibrated"
    assert width(other) > width(measured)


def test_without_a_calibration_every_point_is_datasheet():
    frame = predict("mamba2-hybrid-8b", "decode", [1, 8], [1024], calibration="none")
    assert set(frame["provenance"]) == {"datasheet"}
    assert (frame["time_hi_ms"] > frame["time_ms"]).all()


def test_a_gemm_outside_the_measured_ranges_is_extrapolated():
    widest_n = max(n for _m, n, _k, _t in CAL.gemm)
    op = gemm("w", np.array([64.0]), 2 * widest_n, 4096)
    assert op_provenance(op, None, CAL)[0] == EXTRAPOLATED


def test_a_gemm_between_measured_rows_is_interpolated_and_on_one_calibrated():
    n, k = 4096, 4096  # a measured (N, K) of the bundled table
    codes = op_provenance(gemm("w", np.array([64.0, 100.0]), n, k), None, CAL)
    assert codes.tolist() == [CALIBRATED, INTERPOLATED]


def test_a_kernel_at_an_unmeasured_head_dim_is_extrapolated():
    spec = dataclasses.replace(get_layer("mamba2"), headdim=256)  # the bundled files sample SSD at 32-128
    compute, _comm = rank_ops("layer", spec, "prefill", np.array([4.0]), np.array([2048.0]), 1)
    ops = [c for c in compute if c.op.op_class == SSD]
    assert ops and all(op_provenance(c.op, spec, CAL)[0] == EXTRAPOLATED for c in ops)


def test_a_kernel_between_sampled_hyper_parameters_is_interpolated():
    # GQA ratio 3: between the sampled 2 and 4 (the bundled files sample ratios 1, 2, 4 and 8)
    spec = dataclasses.replace(get_layer("attention"), n_heads=24, n_kv_heads=8)
    frame = breakdown(spec, "decode", 4, 2048)
    assert set(frame.loc[frame["op_class"] == "attention_decode", "provenance"]) == {"interpolated"}


def test_a_family_coverage_does_not_index_falls_back_to_the_layer_specs():
    spec = Mamba2Spec(d_model=2048)  # the fallback: same kernel-shape hyper-parameters, another width
    compute, _comm = rank_ops("layer", spec, "prefill", np.array([4.0]), np.array([2048.0]), 1)
    op = next(c.op for c in compute if c.op.op_class == SSD)
    assert kernel_family_provenance(op, spec, CAL)[0] == BETWEEN
    assert kernel_family_provenance(op, dataclasses.replace(spec, d_state=64), CAL)[0] == EXTRAPOLATED


def test_no_calibration_makes_every_op_datasheet():
    assert labels(op_provenance(gemm("w", np.array([64.0]), 4096, 4096), None, None))[0] == "datasheet"


def test_a_point_takes_the_weakest_provenance_among_its_large_terms():
    codes = [np.array([CALIBRATED]), np.array([EXTRAPOLATED]), np.array([EXTRAPOLATED])]
    assert point_provenance(codes[:2], [np.array([0.99]), np.array([0.01])])[0] == CALIBRATED
    assert point_provenance(codes[:2], [np.array([0.5]), np.array([0.5])])[0] == EXTRAPOLATED


def test_a_registered_rule_answers_for_its_ops():
    before = RULES[GEMM]
    try:
        register_rule(GEMM, lambda op, _spec, _cal: np.full(np.shape(op.flops), CALIBRATED, dtype=np.int8))
        assert op_provenance(gemm("w", np.array([64.0]), 10 ** 7, 3000), None, CAL)[0] == CALIBRATED
    finally:
        register_rule(GEMM, before)


def test_breakdown_rows_carry_provenance_and_an_interval_around_their_time():
    frame = breakdown("mamba2-hybrid-8b", "decode", 4, 2048, graphs=True)
    assert frame["provenance"].isin(["calibrated", "interpolated", "extrapolated"]).all()
    assert (frame["time_lo_ms"] <= frame["time_ms"]).all() and (frame["time_ms"] <= frame["time_hi_ms"]).all()


def test_the_uncertainty_section_round_trips(tmp_path):
    cal = dataclasses.replace(CAL, uncertainty=from_dict({**CAL.to_dict(), "uncertainty": _section()}).uncertainty)
    path = cal.save(tmp_path / "h100.json")
    assert load_calibration(path).uncertainty == cal.uncertainty
    assert cal.uncertainty["classes"]["gemm/prefill"]["q90"] == 0.04


@pytest.mark.parametrize("section, message", [
    ({"classes": {"gemm/prefill": {"q10": 0.1, "q50": 0.0, "q90": 0.2, "n": 3}}}, "q10 <= q50 <= q90"),
    ({"classes": {"warp/prefill": {"q10": -0.1, "q50": 0.0, "q90": 0.1, "n": 3}}}, "not <term>/<phase>"),
    ({"classes": {"gemm/train": {"q10": -0.1, "q50": 0.0, "q90": 0.1, "n": 3}}}, "not <term>/<phase>"),
    ({"classes": {"gemm/prefill": {"q10": "low", "q50": 0.0, "q90": 0.1, "n": 3}}}, "needs numbers"),
    ({"classes": {"gemm/prefill": {"q10": -0.1, "q50": 0.0, "q90": 0.1, "n": 3}}, "sets": "h100"}, "list of result set"),
    ({"classes": []}, "needs a classes object"),
    ({"classes": {}, "leave_one_out": {"calibrated": {"q10": 0, "q50": 0, "q90": 0, "n": 1}}}, "only interpolated"),
    ({"classes": {}, "leave_one_out": {"extrapolated": {"q10": 0.2, "q50": 0, "q90": 0.1, "n": 1}}}, "q10 <= q50"),
])
def test_bad_uncertainty_entries_give_one_line_errors(section, message):
    with pytest.raises(CalibrationError) as err:
        from_dict({**CAL.to_dict(), "uncertainty": section}, "cal.json")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_bundled_files_carry_a_section_fitted_on_named_sets():
    for gpu in ("h100", "h200"):
        section = read_calibration_data(bundled_path(gpu))["uncertainty"]
        assert section["sets"] and all(name.startswith(f"results/{gpu}-") for name in section["sets"])
        assert "all/prefill" in section["classes"]


def test_weighted_quantiles_with_equal_weights_are_midpoint_percentiles():
    from perfbench.calibration.uncertainty import weighted_quantiles

    values = np.random.default_rng(1).normal(size=101)
    assert np.allclose(weighted_quantiles(values, np.ones(101)), np.percentile(values, [10, 50, 90], method="hazen"))


def test_weighted_quantiles_ignore_points_of_no_share():
    from perfbench.calibration.uncertainty import weighted_quantiles

    assert weighted_quantiles([0.0, 0.1, 5.0], [1.0, 1.0, 0.0], (0.5,)) == [pytest.approx(0.05)]


def test_coverage_on_held_out_sets_is_computed():
    from perfbench.calibration.uncertainty import split_coverage

    section, covered, n = split_coverage([RESULTS / "h100-holdout15"], [RESULTS / "h100-holdout17"], CAL)
    assert section["sets"] == ["results/h100-holdout15"]
    assert n > 0 and 0.0 <= covered <= 1.0


def test_compare_reports_interval_coverage_per_group():
    from perfbench.report.compare import compare, metrics_records

    result = compare(RESULTS / "h100-holdout17")
    assert result.metrics["interval_coverage"].between(0.0, 1.0).all()
    assert "interval_coverage" in metrics_records(result.metrics)[0]


def test_calibrate_uncertainty_from_writes_the_section(tmp_path):
    from typer.testing import CliRunner

    from perfbench.cli import app

    out = tmp_path / "h100.json"
    result = CliRunner().invoke(app, ["calibrate", "--refit", str(bundled_path("h100")), "--out", str(out),
                                      "--uncertainty-from", str(RESULTS / "h100-holdout16")])
    assert result.exit_code == 0, result.output
    section = load_calibration(out, "h100").uncertainty
    assert section["sets"] == ["results/h100-holdout16"] and section["classes"]["all/prefill"]["n"] > 0


def test_measured_vs_predicted_curves_shade_the_predicted_interval():
    from perfbench.report import figures
    from perfbench.report.compare import compare

    joined = compare(RESULTS / "h100-holdout17").joined
    points = joined[(joined["name"] == "mamba2") & (joined["phase"] == "prefill")]
    names = [trace.name for trace in figures.curves_figure(points).data]
    assert any(name.endswith("predicted interval") for name in names)


def test_model_curves_shade_the_interval_of_a_rate_too():
    from perfbench.report import figures

    frame = predict("mamba2-hybrid-8b", "decode", [4], [1024, 4096])
    lo, hi = figures.interval_bounds(frame, "tokens_per_s")
    assert (lo <= frame["tokens_per_s"]).all() and (frame["tokens_per_s"] <= hi).all()
    fig = figures.model_curves_figure(frame, None, "tokens_per_s", "tokens / s")
    assert any(trace.name.endswith("predicted interval") for trace in fig.data)


def test_calibrate_uncertainty_from_refuses_a_fitted_set(tmp_path):
    from typer.testing import CliRunner

    from perfbench.cli import app
    from perfbench.errors import PerfbenchError

    result = CliRunner().invoke(app, ["calibrate", "--refit", str(bundled_path("h100")), "--out", str(tmp_path / "x.json"),
                                      "--uncertainty-from", str(RESULTS / "h100")])
    assert isinstance(result.exception, PerfbenchError) and "marked fitted" in str(result.exception)
    assert "\n" not in str(result.exception) and not (tmp_path / "x.json").exists()
