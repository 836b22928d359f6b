"""The --torch-profiler path: a real CPU torch.profiler capture, and GPU-shaped Chrome traces."""

from __future__ import annotations

import contextlib
import json
import types
from pathlib import Path

import pytest

from perfbench.errors import PerfbenchError
from perfbench.traces.schema import BREAKDOWN_COLUMNS
from perfbench.traces.torch_profiler import parse_torch_trace, range_names
from perfbench.traces.trim import trim_torch_trace

torch = pytest.importorskip("torch")
DATA = Path(__file__).parent / "data"
RANGE = "mlp/prefill/B=2/L=8"


def _harness_module(calls: list):
    """A stand-in for perfbench.measure.nvtx_ranges whose measured_range records that it ran."""

    @contextlib.contextmanager
    def measured_range(name, enabled=True):
        calls.append((name, enabled))
        yield

    return types.SimpleNamespace(measured_range=measured_range)


@pytest.fixture(scope="module")
def cpu_trace(tmp_path_factory):
    """A real torch.profiler capture on CPU of three timed calls of a tiny MLP."""
    from perfbench.traces.child import patch_measured_range, profile_call

    calls: list = []
    module = _harness_module(calls)
    patch_measured_range(module)
    fc1, fc2 = torch.nn.Linear(16, 64), torch.nn.Linear(64, 16)
    x = torch.randn(2 * 8, 16)

    def run():
        fc2(torch.relu(fc1(x)))  # warm-up: no range
        for _ in range(3):
            with module.measured_range(RANGE):
                fc2(torch.relu(fc1(x)))
        return 0

    path = tmp_path_factory.mktemp("torch") / "t.json"
    assert profile_call(run, path) == 0
    return path, calls


def test_patched_ranges_still_enter_the_harness_range(cpu_trace):
    _, calls = cpu_trace
    assert calls == [(RANGE, True)] * 3


def test_cpu_capture_carries_the_range_names(cpu_trace):
    path, _ = cpu_trace
    assert range_names(path) == [RANGE]


def test_cpu_capture_becomes_a_breakdown_of_top_level_ops(cpu_trace):
    frame = parse_torch_trace(cpu_trace[0], trace_id="t")
    assert list(frame.columns) == list(BREAKDOWN_COLUMNS)
    assert set(frame["device"]) == {"cpu"} and set(frame["source"]) == {"torch_profiler"}
    linear = frame[frame["kernel"] == "linear"].iloc[0]
    assert (linear["op_class"], linear["count"], linear["steps"], linear["count_per_step"]) == ("gemm", 6, 3, 2.0)
    assert "addmm" not in set(frame["kernel"])  # nested inside aten::linear: not counted twice
    assert frame["share"].sum() == pytest.approx(1.0)


def test_warm_up_calls_outside_ranges_are_left_out(cpu_trace):
    frame = parse_torch_trace(cpu_trace[0])
    assert frame.loc[frame["kernel"] == "relu", "count"].item() == 3


def _gpu_trace(path: Path) -> Path:
    """Kineto's shape for a CUDA run: the range on the CPU thread, launches, kernels later."""
    events = [
        {"ph": "X", "cat": "user_annotation", "name": "mamba2/decode/B=64/L=4096", "pid": 1, "tid": 7,
         "ts": 100.0, "dur": 20.0},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 7, "ts": 105.0,
         "dur": 2.0, "args": {"correlation": 11}},
        {"ph": "X", "cat": "cuda_driver", "name": "cuLaunchKernel", "pid": 1, "tid": 7, "ts": 110.0,
         "dur": 2.0, "args": {"correlation": 12}},
        {"ph": "X", "cat": "kernel", "name": "void at::native::vectorized_elementwise_kernel<4, F>(int, F)",
         "pid": 0, "tid": "stream 7", "ts": 150.0, "dur": 4.0, "args": {"correlation": 11}},
        {"ph": "X", "cat": "kernel", "name": "_selective_scan_update_kernel", "pid": 0, "tid": "stream 7",
         "ts": 160.0, "dur": 6.0, "args": {"correlation": 12}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 1, "tid": 7, "ts": 104.0, "dur": 4.0},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 7, "ts": 300.0,
         "dur": 2.0, "args": {"correlation": 13}},
        {"ph": "X", "cat": "kernel", "name": "outside_kernel", "pid": 0, "tid": "stream 7", "ts": 310.0,
         "dur": 1.0, "args": {"correlation": 13}},
    ]
    path.write_text(json.dumps({"traceEvents": events}))
    return path


def test_gpu_kernels_follow_their_launch_into_the_range(tmp_path):
    frame = parse_torch_trace(_gpu_trace(tmp_path / "g.json"))
    assert set(frame["device"]) == {"cuda"}
    assert sorted(frame["kernel"]) == ["_selective_scan_update_kernel", "vectorized_elementwise_kernel"]
    update = frame[frame["kernel"] == "_selective_scan_update_kernel"].iloc[0]
    assert update["op_class"] == "state_update"
    assert update["gpu_time_ms"] == pytest.approx(0.006)


def test_a_trace_that_is_not_json_is_one_error(tmp_path):
    (tmp_path / "t.json").write_text("{")
    with pytest.raises(PerfbenchError, match="not a Chrome trace"):
        parse_torch_trace(tmp_path / "t.json")


def test_trimming_a_torch_trace_keeps_the_per_step_numbers(cpu_trace, tmp_path):
    small = trim_torch_trace(cpu_trace[0], tmp_path / "small.json", max_kernels=3)
    columns = ["nvtx_range", "kernel", "count_per_step", "share"]
    before, after = parse_torch_trace(cpu_trace[0]), parse_torch_trace(small)
    assert after[columns].to_dict("records") == [
        {key: (pytest.approx(value) if isinstance(value, float) else value) for key, value in row.items()}
        for row in before[columns].to_dict("records")]
    assert small.stat().st_size < cpu_trace[0].stat().st_size


REAL = sorted(DATA.glob("*.torch.json.gz"))


@pytest.mark.skipif(not REAL, reason="no real torch.profiler capture in tests/data yet")
@pytest.mark.parametrize("packed", REAL, ids=[p.name for p in REAL])
def test_real_torch_capture_parses(packed, unpack):
    path = unpack(packed)
    frame = parse_torch_trace(path)
    assert not frame.empty and (frame["gpu_time_ms"] > 0).all()
    assert path.stat().st_size < 1 << 20
