"""The host's speed: probed with every run and calibration, and a factor the host chains scale by."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

torch = pytest.importorskip("torch")

from analytic.calibration import CalibrationError, default_calibration, from_dict, read_calibration_data, bundled_path  # noqa: E402
from analytic.host_chain import host_speed, host_spread, with_host_speed  # noqa: E402
from analytic.pipeline import step_time  # noqa: E402
from analytic.uncertainty import class_quantiles  # noqa: E402
from perfbench.calibration.host import pooled_host_figures, with_host_samples  # noqa: E402
from perfbench.cli import main  # noqa: E402
from perfbench.measure.harness import SweepOptions, Target, make_points, run_sweep  # noqa: E402
from perfbench.measure.host_probe import cpu_model, host_probe, median_probe  # noqa: E402
from perfbench.measure.results import RunWriter, run_manifests  # noqa: E402
from perfbench.measure.timing import TimingOptions  # noqa: E402
from perfbench.report.compare import host_speed_resolver  # noqa: E402


@pytest.fixture(scope="module")
def h100():
    return default_calibration("h100")


def _probed(cal, launch_s: float):
    return dataclasses.replace(cal, host_probes=({"launch_s": launch_s, "python_loop_s": 1e-3},))


def test_cpu_model_reads_the_first_model_name_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nprocessor\t: 1\n"
                    "model name\t: other\n")
    assert cpu_model(str(info)) == "Intel(R) Xeon(R) Platinum 8480+"


def test_a_cpu_probe_times_the_python_loop_and_the_launch_chain():
    probe = host_probe(torch, "cpu", when="2026-12-07T12:00:00Z")
    assert probe["python_loop_s"] > 0 and probe["launch_s"] > 0
    assert probe["launch_device"] == "cpu" and probe["cpus"] >= 1 and probe["created"].startswith("2026")


def test_a_run_manifest_records_its_host(tmp_path, tiny_specs):
    targets = [Target("layer", "mlp", tiny_specs["mlp"])]
    options = SweepOptions(device="cpu", dtype="float32", reference=True,
                           timing=TimingOptions(warmup=1, min_repeats=3, max_repeats=3, target_s=0.001))
    run_sweep(targets, make_points(targets, ["prefill"], [1], [4], options), options,
              RunWriter(tmp_path, {"command": "test"}))
    (manifest,) = run_manifests(tmp_path)
    assert manifest["host"]["python_loop_s"] > 0 and manifest["host"]["cpu_model"]


def test_a_faster_host_divides_every_host_figure_and_no_gpu_figure(h100):
    fast = with_host_speed(h100, 2.0)
    for key, value in h100.launch.items():
        if key.startswith(("host/", "host_wall/")) or key in ("eager_kernel_s", "graph_launch_period_s"):
            assert fast.launch[key] == pytest.approx(value / 2), key
    assert fast.launch["graph_kernel_s"] == h100.launch["graph_kernel_s"]  # a kernel inside a graph: the GPU's
    assert fast.launch["graph_replay_gap_s"] == h100.launch["graph_replay_gap_s"]
    assert fast.gemm == h100.gemm and fast.op_classes == h100.op_classes


def test_a_host_bound_prefill_takes_the_scaled_chain_and_a_gpu_bound_one_does_not_move(h100):
    slow = step_time("mamba2", "prefill", [1, 64], [512, 8192], calibration=h100)
    fast = step_time("mamba2", "prefill", [1, 64], [512, 8192], calibration=with_host_speed(h100, 1.8))
    assert slow.host_bound[0] and fast.total_s[0] == pytest.approx(slow.total_s[0] / 1.8)
    assert not slow.host_bound[-1] and fast.total_s[-1] == pytest.approx(slow.total_s[-1])


def test_host_speed_is_the_calibrations_probe_over_the_runs(h100):
    cal = _probed(h100, 4e-6)
    assert host_speed(cal, {"launch_s": 2e-6}) == pytest.approx(2.0)
    assert host_speed(cal, {"python_loop_s": 0.5e-3}) == pytest.approx(2.0)  # the time both sides have
    assert host_speed(h100, {"launch_s": 2e-6}) == 1.0  # no probe in the file: the calibration's own host
    assert host_speed(cal, None) == 1.0


def test_a_non_positive_host_speed_is_refused(h100):
    with pytest.raises(Exception, match="positive"):
        with_host_speed(h100, 0.0)


def test_host_probes_and_windows_round_trip_and_bad_ones_are_refused():
    data = read_calibration_data(bundled_path("h100"))
    data["host_probes"] = [{"launch_s": 3e-6, "python_loop_s": 1e-3, "cpu_model": "x"}]
    cal = from_dict(data)
    again = from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again.host_probes == cal.host_probes and again.host_samples == cal.host_samples
    with pytest.raises(CalibrationError, match="host_probes"):
        from_dict({**data, "host_probes": [{"launch_s": -1.0}]})
    with pytest.raises(CalibrationError, match="host_samples"):
        from_dict({**data, "host_samples": {"host/mlp/prefill": [0.0]}})


def test_pooled_leases_keep_every_probe_and_a_remeasure_keeps_only_its_own():
    base = {"gpu": "h100", "launch": {"eager_kernel_s": 7e-6, "host/mlp/prefill": 1e-4}, "provenance": {}}
    a = {**base, "created": "a", "host_probes": [{"launch_s": 3e-6}]}
    b = {**base, "created": "b", "host_probes": [{"launch_s": 5e-6}]}
    assert [p["launch_s"] for p in pooled_host_figures(a, {"b.json": b})["host_probes"]] == [3e-6, 5e-6]
    fresh = with_host_samples(pooled_host_figures(a, {"b.json": b}), {"host/mlp/prefill": [1e-4]}, {"launch_s": 4e-6})
    assert fresh["host_probes"] == [{"launch_s": 4e-6}]


def test_a_host_bound_interval_reaches_the_spread_of_the_calibrations_host_windows(h100):
    spread = host_spread(h100)
    assert spread is not None and spread[0] < 0 < spread[1]
    bare = dataclasses.replace(h100, uncertainty={})
    q10, q50, q90 = class_quantiles(bare, "host/prefill")
    assert q10 == pytest.approx(q50 + spread[0]) and q90 == pytest.approx(q50 + spread[1])
    assert class_quantiles(bare, "gemm/prefill")[0] > q10  # only host chains take it


def test_compare_from_the_runs_probes_scales_by_their_ratio(h100):
    cal = _probed(h100, 4e-6)
    resolve = host_speed_resolver(lambda gpu, c: (cal, "calibrated"), "run",
                                  [{"host": {"launch_s": 2e-6}}, {"host": {"launch_s": 2e-6}}, {}])
    seen, _label = resolve("h100", "default")
    assert seen.launch["host/mamba2/prefill"] == pytest.approx(h100.launch["host/mamba2/prefill"] / 2)


def test_a_chain_timed_on_its_own_lease_moves_by_that_leases_probe_alone(h100):
    cal = dataclasses.replace(h100, host_probes=({"launch_s": 6e-6, "chains": ("mamba3/prefill",)},))
    seen = host_speed_resolver(lambda gpu, c: (cal, "calibrated"), "run", [{"host": {"launch_s": 9e-6}}])("h100", "default")[0]
    assert seen.launch["host/mamba3/prefill"] == pytest.approx(h100.launch["host/mamba3/prefill"] * 1.5)
    assert seen.host_samples["host/mamba3/prefill"][0] == pytest.approx(h100.host_samples["host/mamba3/prefill"][0] * 1.5)
    # chains whose leases recorded no probe, and the shared launch costs, stay as calibrated
    assert seen.launch["host/mamba2/prefill"] == h100.launch["host/mamba2/prefill"]
    assert seen.launch["eager_kernel_s"] == h100.launch["eager_kernel_s"]


def test_a_probe_without_chains_speaks_for_every_chain_and_one_with_them_only_for_those(h100):
    cal = dataclasses.replace(h100, host_probes=({"launch_s": 4e-6}, {"launch_s": 8e-6, "chains": ("gdn/prefill",)}))
    assert host_speed(cal, {"launch_s": 2e-6}, "mamba2/prefill") == pytest.approx(2.0)
    assert host_speed(cal, {"launch_s": 2e-6}, "gdn/prefill") == pytest.approx(3.0)  # median of 4 and 8 us
    assert host_speed(cal, {"launch_s": 2e-6}) == pytest.approx(2.0)


def test_a_probes_chains_round_trip_and_a_bare_string_is_refused():
    data = read_calibration_data(bundled_path("h100"))
    probed = {**data, "host_probes": [{"launch_s": 5e-6, "chains": ["gdn/decode", "gdn/prefill"]}]}
    cal = from_dict(probed)
    assert cal.host_probes[0]["chains"] == ("gdn/decode", "gdn/prefill")
    assert from_dict(json.loads(json.dumps(cal.to_dict()))).host_probes == cal.host_probes
    with pytest.raises(CalibrationError, match="host_probes"):
        from_dict({**data, "host_probes": [{"launch_s": 5e-6, "chains": "gdn/prefill"}]})


def test_a_leases_probe_is_the_median_of_each_time_its_runs_recorded():
    probe = median_probe([{"launch_s": 5e-6, "python_loop_s": 1e-3}, {"launch_s": 9e-6}, {"launch_s": 6e-6}])
    assert probe == {"launch_s": pytest.approx(6e-6), "python_loop_s": pytest.approx(1e-3)}
    assert median_probe([{"cpu_model": "x"}]) == {}


def test_predict_refuses_a_zero_host_speed_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["perfbench", "predict", "--layer", "mamba2", "--host-speed", "0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "host-speed" in err and len(err.splitlines()) == 1
