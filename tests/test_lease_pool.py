"""GEMM grids and power figures pooled over leases: medians, provenance, and clear refusals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from analytic.calibration import bundled_path, from_dict, read_calibration_data
from perfbench.cli import app
from perfbench.errors import PerfbenchError
from perfbench.calibration.kernels import FAMILIES
from perfbench.calibration.pooling import pooled_gemm_grid, pooled_kernel_samples, pooled_power


def _lease(when: str, scale: float, gpu: str = "h100", **power) -> dict:
    """The bundled H100 file as if its grid and power were measured at `when`, every GEMM `scale` x as long."""
    data = read_calibration_data(bundled_path("h100"))
    data["gpu"] = gpu
    data["provenance"] = {"remeasured": {"gemm": {"created": when}, "power": {"created": when}}}
    data["gemm"] = [{"m": g["m"], "n": g["n"], "k": g["k"], "time_s": g["time_s"] * scale} for g in data["gemm"]]
    data["power"] = {**data["power"], **power}
    data.pop("power_samples", None)
    return data


def test_each_grid_time_is_the_median_over_the_leases_and_keeps_them():
    base = _lease("t1", 1.0)
    out = pooled_gemm_grid(base, {"b.json": _lease("t2", 1.3), "c.json": _lease("t3", 0.9)})
    assert out["provenance"]["gemm_pooled_from"] == ["t1", "t2", "t3"]
    for before, after in zip(base["gemm"], out["gemm"]):
        assert after["time_s"] == pytest.approx(before["time_s"])  # the middle of 0.9, 1.0, 1.3
        assert sorted(after["lease_times_s"]) == pytest.approx(sorted(before["time_s"] * s for s in (0.9, 1.0, 1.3)))
    assert out["gemm_peak_flops"] == pytest.approx(max(2 * g["m"] * g["n"] * g["k"] / g["time_s"] for g in out["gemm"]))
    from_dict(out)  # still a valid calibration
    # Pooling the pooled file again with a fourth lease uses every lease's time, not the median.
    again = pooled_gemm_grid(out, {"d.json": _lease("t4", 1.2)})
    assert again["gemm"][0]["time_s"] == pytest.approx(base["gemm"][0]["time_s"] * 1.1)


def test_pooling_refuses_another_gpu_or_a_lease_twice():
    with pytest.raises(PerfbenchError, match="not 'h100'"):
        pooled_gemm_grid(_lease("t1", 1.0), {"x.json": _lease("t2", 1.0, gpu="h200")})
    with pytest.raises(PerfbenchError, match="already in the pool"):
        pooled_gemm_grid(_lease("t1", 1.0), {"x.json": _lease("t1", 1.0)})
    with pytest.raises(PerfbenchError, match="already in the pool"):
        pooled_power(_lease("t1", 1.0), {"x.json": _lease("t1", 1.0)})


def test_power_figures_are_the_median_over_runs():
    out = pooled_power(_lease("t1", 1.0, elementwise_w=461.0),
                       {"b.json": _lease("t2", 1.0, elementwise_w=497.0), "c.json": _lease("t3", 1.0, elementwise_w=480.0)})
    assert out["power"]["elementwise_w"] == pytest.approx(480.0)
    assert out["power_samples"]["elementwise_w"] == [461.0, 497.0, 480.0]
    assert out["provenance"]["power_pooled_from"] == ["t1", "t2", "t3"]
    from_dict(out)
    # A pooled file pooled again brings every run's value, not its median, and its runs count as pooled.
    again = pooled_power(_lease("t4", 1.0, elementwise_w=500.0), {"out.json": out})
    assert again["power_samples"]["elementwise_w"] == [500.0, 461.0, 497.0, 480.0]
    assert again["power"]["elementwise_w"] == pytest.approx(488.5)
    with pytest.raises(PerfbenchError, match="already in the pool"):
        pooled_power(_lease("t2", 1.0), {"out.json": out})


def test_calibrate_pools_from_the_command_line(tmp_path):
    paths = []
    for when, scale in (("t1", 1.0), ("t2", 1.2), ("t3", 0.8)):
        paths.append(tmp_path / f"{when}.json")
        paths[-1].write_text(json.dumps(_lease(when, scale)))
    out = tmp_path / "pooled.json"
    result = CliRunner().invoke(app, ["calibrate", "--refit", str(paths[0]), "--gemm-from", str(paths[1]),
                                      "--gemm-from", str(paths[2]), "--power-from", str(paths[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["provenance"]["gemm_pooled_from"] == ["t1", "t2", "t3"]
    assert len(written["gemm"][0]["lease_times_s"]) == 3
    assert written["provenance"]["power_pooled_from"] == ["t1", "t2"]
    assert written["gemm"][0]["time_s"] == pytest.approx(_lease("t1", 1.0)["gemm"][0]["time_s"])


def _family_run(data: dict, family: str, key: str, factor: float, when: str) -> dict:
    """A copy of `data` whose `family` was re-measured at `when`, every sample of `key` `factor` slower."""
    provenance = {**data["provenance"], "remeasured": {**data["provenance"].get("remeasured", {}),
                                                       family: {"created": when}}}
    samples = {**data["samples"], key: [dict(s, time_s=s["time_s"] * factor) for s in data["samples"][key]]}
    return {**data, "samples": samples, "provenance": provenance}


def test_kernel_samples_pool_by_median_over_their_familys_runs():
    data = read_calibration_data(bundled_path("h100"))
    others = {"a": _family_run(data, "elementwise", "elementwise", 1.1, "2030-01-01T00:00:00Z"),
              "b": _family_run(data, "elementwise", "elementwise", 1.3, "2030-01-02T00:00:00Z")}
    pooled = pooled_kernel_samples(data, others, {n: f.CLASSES for n, f in FAMILIES.items()})
    for old, new in zip(data["samples"]["elementwise"], pooled["samples"]["elementwise"]):
        assert new["time_s"] == pytest.approx(old["time_s"] * 1.1)
        assert len(new["run_times_s"]) == 3
    assert len(pooled["provenance"]["elementwise_pooled_from"]) == 3


def test_a_family_no_copy_remeasured_is_counted_once():
    data = read_calibration_data(bundled_path("h100"))
    others = {"a": _family_run(data, "elementwise", "elementwise", 1.1, "2030-01-01T00:00:00Z")}
    pooled = pooled_kernel_samples(data, others, {n: f.CLASSES for n, f in FAMILIES.items()})
    assert all(len(s["run_times_s"]) == 1 for s in pooled["samples"]["rope"])
    assert [s["time_s"] for s in pooled["samples"]["rope"]] == [s["time_s"] for s in data["samples"]["rope"]]


def test_pooling_kernel_samples_refuses_another_gpus_file():
    data = read_calibration_data(bundled_path("h100"))
    with pytest.raises(PerfbenchError, match="not 'h100'"):
        pooled_kernel_samples(data, {"h200": read_calibration_data(bundled_path("h200"))},
                              {n: f.CLASSES for n, f in FAMILIES.items()})
