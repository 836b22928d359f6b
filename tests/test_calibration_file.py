"""Calibration files: round trip, validation (one-line CalibrationError), and use by predict."""

from __future__ import annotations

import dataclasses
import json

import pytest

from analytic.calibration import (FORMAT, REQUIRED, VERSION, Calibration, CalibrationError,
                                  bundled_path, default_calibration, from_dict, load_calibration,
                                  resolve)
from analytic.hardware import GPUS
from analytic.predict import predict


def make_calibration(gpu: str = "h100") -> Calibration:
    return Calibration(
        gpu=gpu, gpu_name="NVIDIA H100 80GB HBM3", created="2026-11-23T21:15:00Z",
        copy_bandwidth_bytes_s=2.9e12, gemm_peak_flops=7.5e14,
        gemm=((1.0, 4096, 4096, 2.0e-5), (4096.0, 4096, 4096, 2.0e-4), (16.0, 16384, 4096, 4.4e-5)),
        launch={"graph_kernel_s": 2.2e-6, "eager_kernel_s": 9.0e-6},
        op_classes={"ssd": {"t0_s": 4e-6, "bw_bytes_s": 2.0e12, "flops_s": 2.5e14},
                    "attention_decode": {"bw_per_cta_bytes_s": 2.5e10}},
        provenance={"torch": "2.11.0", "command": "perfbench calibrate"},
        samples={"ssd": [{"batch": 1, "seqlen": 1000, "time_s": 1e-4}]},
    )


def write(tmp_path, data, name="cal.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def assert_one_line(exc_info):
    message = str(exc_info.value)
    assert message and "\n" not in message


# ---------------------------------------------------------------------------------------------
# Round trip


def test_save_then_load_gives_the_same_calibration(tmp_path):
    cal = make_calibration()
    path = cal.save(tmp_path / "sub" / "h100.json")
    loaded = load_calibration(path)
    assert loaded == dataclasses.replace(cal, source=str(path))


def test_file_declares_format_and_version(tmp_path):
    data = json.loads(make_calibration().save(tmp_path / "c.json").read_text())
    assert data["format"] == FORMAT and data["version"] == VERSION
    assert all(key in data for key in REQUIRED)


def test_dict_round_trip():
    cal = make_calibration()
    assert from_dict(cal.to_dict()) == cal


def test_a_saved_file_round_trips_and_is_compact(tmp_path):
    cal = make_calibration()
    path = cal.save(tmp_path / "sub" / "cal.json")
    assert load_calibration(path) == dataclasses.replace(cal, source=str(path))
    text = path.read_text()
    assert text.count("\n") == 1 and ", " not in text and '": ' not in text  # one line, no padding


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("field", REQUIRED)
def test_missing_required_field_is_named(tmp_path, field):
    data = make_calibration().to_dict()
    del data[field]
    with pytest.raises(CalibrationError, match=field) as info:
        load_calibration(write(tmp_path, data))
    assert_one_line(info)


@pytest.mark.parametrize("key", ["graph_kernel_s", "eager_kernel_s"])
def test_missing_launch_cost_is_named(tmp_path, key):
    data = make_calibration().to_dict()
    del data["launch"][key]
    with pytest.raises(CalibrationError, match=key) as info:
        load_calibration(write(tmp_path, data))
    assert_one_line(info)


def test_calibration_for_another_gpu_is_refused(tmp_path):
    path = make_calibration("h100").save(tmp_path / "h100.json")
    with pytest.raises(CalibrationError, match="a100") as info:
        load_calibration(path, gpu="a100")
    assert_one_line(info)
    with pytest.raises(CalibrationError):
        resolve(str(path), "a100")
    with pytest.raises(CalibrationError):
        resolve(make_calibration("h100"), "a100")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2", '{"format": "perfbench-calibration",'])
def test_corrupt_json_is_one_line_error(tmp_path, text):
    with pytest.raises(CalibrationError) as info:
        load_calibration(write(tmp_path, text))
    assert_one_line(info)


def test_binary_garbage_is_one_line_error(tmp_path):
    path = tmp_path / "cal.json"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    assert_one_line(info)


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(CalibrationError, match="not found") as info:
        load_calibration(tmp_path / "absent.json")
    assert_one_line(info)


@pytest.mark.parametrize("change", [
    {"format": "something-else"},
    {"version": 99},
    {"copy_bandwidth_bytes_s": 0},
    {"gemm_peak_flops": -1.0},
    {"gemm": [{"m": 1, "n": 4096, "k": 4096, "time_s": 0.0}]},
    {"gemm": [{"m": 1, "n": 4096}]},
    {"copy_bandwidth_bytes_s": "fast"},
], ids=["format", "version", "zero-bandwidth", "negative-peak", "zero-time", "gemm-missing-keys",
        "bandwidth-not-a-number"])
def test_invalid_contents_are_one_line_errors(tmp_path, change):
    data = {**make_calibration().to_dict(), **change}
    with pytest.raises(CalibrationError) as info:
        load_calibration(write(tmp_path, data))
    assert_one_line(info)


@pytest.mark.parametrize("change", [
    {"launch": 5},
    {"op_classes": 3},
    {"provenance": "x"},
    {"op_classes": {"ssd": 5}},
], ids=["launch-number", "op-classes-number", "provenance-string", "op-class-entry-number"])
def test_fields_of_the_wrong_json_type_are_one_line_errors(tmp_path, change):
    data = {**make_calibration().to_dict(), **change}
    with pytest.raises(CalibrationError) as info:
        load_calibration(write(tmp_path, data))
    assert_one_line(info)


def test_json_that_is_not_an_object_is_refused(tmp_path):
    with pytest.raises(CalibrationError) as info:
        load_calibration(write(tmp_path, [1, 2, 3]))
    assert_one_line(info)


# ---------------------------------------------------------------------------------------------
# Resolution and use


def test_none_means_datasheet():
    assert resolve("none", "h100") is None
    assert resolve(None, "h100") is None


@pytest.mark.parametrize("gpu", sorted(GPUS))
def test_default_is_the_bundled_file_or_datasheet(gpu):
    cal = default_calibration(gpu)
    if bundled_path(gpu).exists():
        assert cal is not None and cal.gpu == gpu
    else:
        assert cal is None


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("target", ["mamba2", "attention", "mamba2-hybrid-8b"])
def test_calibrated_and_datasheet_predictions_are_both_positive(tmp_path, target, phase):
    path = make_calibration().save(tmp_path / "h100.json")
    calibrated = predict(target, phase, [1, 64], [1024, 32768], calibration=str(path))
    datasheet = predict(target, phase, [1, 64], [1024, 32768], calibration="none")
    assert calibrated["calibrated"].all() and not datasheet["calibrated"].any()
    assert (calibrated["time_ms"] > 0).all() and (datasheet["time_ms"] > 0).all()
    assert (calibrated["flops"] == datasheet["flops"]).all()  # calibration changes time, not work


def test_calibrated_gemm_time_follows_the_measured_table():
    cal = make_calibration()
    # mlp fc1/fc2 at 8B are (N, K) = (16384, 4096) and (4096, 16384); make both measured,
    # slow and flat so the prediction is dominated by them.
    slow = tuple((m, n, k, 1e-3) for m in (1.0, 1024.0) for n, k in ((16384, 4096), (4096, 16384)))
    cal = dataclasses.replace(cal, gemm=slow)
    row = predict("mlp", "decode", [1], [4096], calibration=cal).iloc[0]
    assert row["time_ms"] >= 2 * 1e-3 * 1e3


@pytest.mark.parametrize("args, message", [
    (["calibrate", "--remeasure", "attention_decode"], "--remeasure needs --refit"),
    (["calibrate", "--refit", "{bundled}", "--remeasure", "attention_decode,bogus"], "unknown kernel family bogus"),
])
def test_remeasure_refuses_bad_requests_in_one_line(args, message):
    from typer.testing import CliRunner

    from analytic.calibration import bundled_path
    from perfbench.cli import app
    from perfbench.errors import PerfbenchError

    result = CliRunner().invoke(app, [a.replace("{bundled}", str(bundled_path("h100"))) for a in args])
    # perfbench.cli.main prints a PerfbenchError as one "error:" line and exits 2
    assert isinstance(result.exception, PerfbenchError) and message in str(result.exception)
    assert "\n" not in str(result.exception)


def test_remeasure_without_a_gpu_says_so_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from analytic.calibration import bundled_path
    from perfbench.cli import app
    from perfbench.errors import PerfbenchError

    torch = pytest.importorskip("torch")

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this checks the message without one")
    out = tmp_path / "h100.json"
    result = CliRunner().invoke(app, ["calibrate", "--refit", str(bundled_path("h100")), "--remeasure",
                                      "attention_decode", "--out", str(out)])
    assert isinstance(result.exception, PerfbenchError) and "CUDA GPU" in str(result.exception)
    assert not out.exists()


class _FakeProps:
    name = "NVIDIA H100 80GB HBM3"
    total_memory = 80 << 30


class _FakeCuda:
    @staticmethod
    def get_device_properties(_index):
        return _FakeProps()

    @staticmethod
    def synchronize():
        return None


class _FakeTorch:
    """Just enough of torch for perfbench.calibration.run.remeasure without a GPU."""
    cuda = _FakeCuda()
    __version__ = "fake"

    class version:  # noqa: N801 (mirrors torch.version)
        cuda = ""

    @staticmethod
    def manual_seed(_seed):
        return None


def _remeasure_with(monkeypatch, measured: dict):
    import perfbench.calibration.run as calibrate
    from analytic.calibration import bundled_path, read_calibration_data

    monkeypatch.setattr(calibrate, "cuda_torch", lambda: _FakeTorch())
    monkeypatch.setattr(calibrate, "measure_kernels", lambda torch, timer, log, only=None: measured)
    data = read_calibration_data(bundled_path("h100"))
    return data, calibrate.remeasure(data, ["attention_decode"], log=lambda *_: None)


def test_remeasure_replaces_only_that_family_and_records_when(monkeypatch):
    """The re-measured class's samples replace the old ones, the others stay, the fit reruns on them
    and the provenance says when: here every decode sample is timed 10 % slower."""
    from analytic.calibration import bundled_path, read_calibration_data

    old = read_calibration_data(bundled_path("h100"))
    slower = [dict(s, time_s=s["time_s"] * 1.1) for s in old["samples"]["attention_decode"]]
    before, after = _remeasure_with(monkeypatch, {"samples": {"attention_decode": slower}, "failures": {}})
    assert after["samples"]["attention_decode"] == slower
    assert after["samples"]["ssd"] == before["samples"]["ssd"]
    assert "attention_decode" in after["provenance"]["remeasured"]
    assert after["op_classes"]["ssd"] == before["op_classes"]["ssd"]
    assert after["op_classes"]["attention_decode"] != before["op_classes"]["attention_decode"]


def test_remeasure_failure_leaves_the_file_as_it_was(monkeypatch):
    from perfbench.errors import PerfbenchError

    with pytest.raises(PerfbenchError, match="left as it was"):
        _remeasure_with(monkeypatch, {"samples": {}, "failures": {"attention_decode": "RuntimeError: boom"}})


def test_remeasure_on_another_gpu_is_refused(monkeypatch):
    import perfbench.calibration.run as calibrate
    from analytic.calibration import bundled_path, read_calibration_data
    from perfbench.errors import PerfbenchError

    monkeypatch.setattr(calibrate, "cuda_torch", lambda: _FakeTorch())
    with pytest.raises(PerfbenchError, match="this GPU is NVIDIA H100"):
        calibrate.remeasure(read_calibration_data(bundled_path("h200")), ["attention_decode"])


def test_remeasuring_the_gemm_grid_replaces_it_and_its_peak(monkeypatch):
    """--remeasure gemm swaps in the new grid (here every compute-bound shape 5 % faster), moves the
    peak with it, and leaves the kernel samples alone."""
    import perfbench.calibration.gemm as gemm
    import perfbench.calibration.run as calibrate
    from analytic.calibration import bundled_path, read_calibration_data

    old = read_calibration_data(bundled_path("h100"))
    faster = [dict(g, time_s=g["time_s"] / 1.05) if g["m"] >= 1024 else g for g in old["gemm"]]
    monkeypatch.setattr(calibrate, "cuda_torch", lambda: _FakeTorch())
    monkeypatch.setattr(gemm, "measure_section", lambda torch, timer, log: faster)
    new = calibrate.remeasure(old, ["gemm"], log=lambda *_: None)
    assert new["gemm"] == faster
    assert new["gemm_peak_flops"] == pytest.approx(old["gemm_peak_flops"] * 1.05)
    assert new["samples"] == old["samples"]
    assert "gemm" in new["provenance"]["remeasured"]


def test_only_power_limited_kernels_rest_before_they_are_timed(monkeypatch):
    """Decode's weight-streaming GEMVs are timed back to back; prefill-sized GEMMs after a rest, so the
    grid's earlier shapes do not heat the board for them."""
    from perfbench.calibration.bench import gemm_compute_bound, time_gemm, time_power_limited

    ridge = 295.0  # H100 datasheet: 989 TFLOP/s over 3.35 TB/s
    assert not gemm_compute_bound(16, 16384, 4096, ridge)
    assert gemm_compute_bound(9216, 16384, 4096, ridge)
    bound = [gemm_compute_bound(m, 16384, 4096, ridge) for m in (1, 64, 256, 512, 1024, 65536)]
    assert bound == sorted(bound)  # once compute-bound, a larger M stays so

    calls = []

    class Timer:
        torch = _FakeTorch()

        def __call__(self, fn, graph=True):
            calls.append("timed" if graph else "timed eagerly")
            return 1.0
    monkeypatch.setattr("perfbench.calibration.bench.time.sleep", lambda s: calls.append(f"rest {s}"))
    monkeypatch.setattr("perfbench.calibration.bench.CAP_S", 0.0)
    time_gemm(Timer(), lambda: calls.append("run"), False)
    assert calls == ["timed"]  # a GEMV: replays back to back, no rest
    calls.clear()
    time_gemm(Timer(), lambda: calls.append("run"), True)
    assert calls[0] == "rest 0.3" and calls[-1] == "timed"  # rested, then timed
    calls.clear()
    time_power_limited(Timer(), lambda: calls.append("run"), graph=False)  # FlashAttention's prefill
    assert calls[0] == "rest 0.3" and calls[-1] == "timed eagerly"


def test_a_gzipped_calibration_round_trips_and_a_damaged_one_is_one_line(tmp_path):
    """The bundled files are gzipped JSON: written deterministically (same content, same bytes), read back
    equal, and a truncated one is a one-line CalibrationError."""
    from analytic.calibration import (CalibrationError, bundled_path, read_calibration_data,
                                      write_calibration_data)

    data = read_calibration_data(bundled_path("h100"))
    first = write_calibration_data(tmp_path / "a.json.gz", data).read_bytes()
    second = write_calibration_data(tmp_path / "b.json.gz", data).read_bytes()
    assert first == second and first[:2] == b"\x1f\x8b"
    assert read_calibration_data(tmp_path / "a.json.gz") == data
    (tmp_path / "bad.json.gz").write_bytes(first[: len(first) // 2])
    with pytest.raises(CalibrationError, match="bad.json.gz") as err:
        read_calibration_data(tmp_path / "bad.json.gz")
    assert "\n" not in str(err.value)
