"""The harness end to end on the CPU reference layers at tiny sizes: rows, NVTX, OOM, resume."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from perfbench.measure import nvtx_ranges  # noqa: E402
from perfbench.measure.harness import SweepOptions, Target, TorchWorkload, make_points, run_sweep  # noqa: E402
from perfbench.measure.results import COLUMNS, RunWriter, done_keys, load_results  # noqa: E402
from perfbench.measure.timing import TimingOptions  # noqa: E402

FAST = TimingOptions(warmup=1, min_repeats=3, max_repeats=3, target_s=0.001)


def _options(**kw):
    return SweepOptions(device="cpu", dtype="float32", graphs=True, timing=FAST, reference=True, **kw)


def _targets(tiny_specs, names=("mamba2", "attention")):
    return [Target("layer", n, tiny_specs[n]) for n in names]


def _sweep(tmp_path, targets, points, options, **kw):
    return run_sweep(targets, points, options, RunWriter(tmp_path, {"command": "test"}), **kw)


def test_cpu_sweep_writes_one_ok_row_per_point_with_every_column(tmp_path, tiny_specs):
    targets = _targets(tiny_specs)
    options = _options()
    points = make_points(targets, ["prefill", "decode"], [1, 2], [4, 8], options)
    report = _sweep(tmp_path, targets, points, options)
    frame = load_results(tmp_path)
    assert report.status == "complete"
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == len(points) == 16
    assert set(frame["status"]) == {"ok"}
    assert (frame["n_repeats"] == 3).all()
    assert (frame["time_ms"] > 0).all()
    assert set(frame.loc[frame["phase"] == "decode", "mode"]) == {"eager"}  # no graphs on CPU
    assert set(frame["attn_backend"][frame["name"] == "attention"]) == {"math"}
    assert set(frame["conv_backend"][frame["name"] == "mamba2"]) == {"torch"}
    row = frame[(frame["phase"] == "prefill") & (frame["batch"] == 2) & (frame["seqlen"] == 8)].iloc[0]
    assert row["tokens_per_s"] == pytest.approx(16 / (row["time_ms"] / 1e3))
    assert row["nvtx_range"] == f"{row['name']}/prefill/B=2/L=8"
    assert "first_call_ms" in json.loads(row["extra"])


def test_model_points_use_target_kind_model(tmp_path, tiny_model):
    targets = [Target("model", tiny_model.name, tiny_model)]
    options = _options()
    _sweep(tmp_path, targets, make_points(targets, ["prefill", "decode"], [2], [6], options), options)
    frame = load_results(tmp_path)
    assert set(frame["target_kind"]) == {"model"}
    assert set(frame["status"]) == {"ok"}
    assert frame["attn_backend"].iloc[0] == "math" and frame["conv_backend"].iloc[0] == "torch"


class _Recorder:
    def __init__(self):
        self.pushed, self.popped = [], 0

    def push_range(self, message=None, domain=None, **_):
        assert domain == "perfbench"
        self.pushed.append(message)

    def pop_range(self, domain=None):
        self.popped += 1


def test_every_timed_call_sits_in_one_named_nvtx_range(tmp_path, tiny_specs, monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(nvtx_ranges, "nvtx_module", lambda: recorder)
    targets = _targets(tiny_specs, ("mlp",))
    options = _options()
    _sweep(tmp_path, targets, make_points(targets, ["decode"], [1, 2], [4], options), options)
    assert recorder.pushed == ["mlp/decode/B=1/L=4"] * 3 + ["mlp/decode/B=2/L=4"] * 3
    assert recorder.popped == len(recorder.pushed)


def test_nvtx_off_pushes_no_range(tmp_path, tiny_specs, monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(nvtx_ranges, "nvtx_module", lambda: recorder)
    targets = _targets(tiny_specs, ("mlp",))
    options = SweepOptions(device="cpu", dtype="float32", reference=True,
                           timing=TimingOptions(warmup=1, min_repeats=2, max_repeats=2, nvtx=False))
    _sweep(tmp_path, targets, make_points(targets, ["decode"], [1], [4], options), options)
    assert recorder.pushed == [] and not load_results(tmp_path)["nvtx"].any()


class _Failing(TorchWorkload):
    """Raises `error` when preparing the point with batch == `at_batch`."""

    error: BaseException = RuntimeError("boom")
    at_batch = 2

    def prepare(self, point):
        if point.batch == self.at_batch:
            raise self.error
        return super().prepare(point)


def test_out_of_memory_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_specs):
    class Oom(_Failing):
        error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    targets = _targets(tiny_specs, ("mlp",))
    options = _options()
    points = make_points(targets, ["prefill"], [1, 2, 4], [4], options)
    _sweep(tmp_path, targets, points, options, workload_factory=Oom)
    frame = load_results(tmp_path).set_index("batch")
    assert list(frame["status"]) == ["ok", "oom", "ok"]
    assert "out of memory" in frame.loc[2, "reason"]
    assert frame.loc[2, "n_repeats"] == 0 and frame["time_ms"].isna().sum() == 1


def test_a_failing_point_is_an_error_row(tmp_path, tiny_specs):
    targets = _targets(tiny_specs, ("mlp",))
    options = _options()
    _sweep(tmp_path, targets, make_points(targets, ["decode"], [1, 2], [4], options), options,
           workload_factory=_Failing)
    frame = load_results(tmp_path)
    assert list(frame["status"]) == ["ok", "error"]
    assert frame["reason"].iloc[1] == "RuntimeError: boom"


def test_point_over_the_memory_budget_is_skipped_before_it_runs(tmp_path, tiny_specs):
    class Never(TorchWorkload):
        def prepare(self, point):
            if point.seqlen > 4:
                raise AssertionError("should have been skipped")
            return super().prepare(point)

    targets = _targets(tiny_specs, ("attention",))
    spec = tiny_specs["attention"]
    options = _options(memory_budget_bytes=spec.params * 4 + 4 * 4096)
    _sweep(tmp_path, targets, make_points(targets, ["prefill"], [1], [4, 4096], options), options,
           workload_factory=Never)
    frame = load_results(tmp_path)
    assert list(frame["status"]) == ["ok", "skipped"]
    assert frame["reason"].iloc[1].startswith("does not fit")


def test_unbuildable_target_is_recorded_for_each_point(tmp_path, tiny_specs):
    def factory(target, options):
        from models.torch_layers import KernelUnavailable

        raise KernelUnavailable("mamba_ssm is not importable here")

    targets = _targets(tiny_specs, ("mamba",))
    options = _options()
    _sweep(tmp_path, targets, make_points(targets, ["prefill", "decode"], [1], [4], options), options,
           workload_factory=factory)
    frame = load_results(tmp_path)
    assert list(frame["status"]) == ["skipped", "skipped"]
    assert "mamba_ssm" in frame["reason"].iloc[0]


def test_killed_sweep_resumes_without_remeasuring(tmp_path, tiny_specs):
    class Killed(_Failing):
        error = KeyboardInterrupt()
        at_batch = 4

    targets = _targets(tiny_specs, ("mlp",))
    options = _options()
    points = make_points(targets, ["prefill", "decode"], [1, 2, 4], [4], options)
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path, targets, points, options, workload_factory=Killed)
    first = load_results(tmp_path)
    assert len(first) == 2  # prefill B=1, B=2 finished before the kill
    manifest = json.loads(next(tmp_path.glob("run-*.json")).read_text())
    assert manifest["status"] == "interrupted" and manifest["n_points"] == 2

    prepared = []

    class Counting(TorchWorkload):
        def prepare(self, point):
            prepared.append((point.phase, point.batch))
            return super().prepare(point)

    report = _sweep(tmp_path, targets, points, options, workload_factory=Counting,
                    done=done_keys(tmp_path))
    assert report.skipped_done == 2
    assert ("prefill", 1) not in prepared and ("prefill", 2) not in prepared
    frame = load_results(tmp_path)
    assert len(frame) == len(points)
    assert not frame.duplicated(["phase", "batch", "seqlen"]).any()
    assert frame["run_id"].nunique() == 2


def test_make_points_rejects_unknown_phase(tiny_specs):
    from perfbench.errors import PerfbenchError

    with pytest.raises(PerfbenchError):
        make_points(_targets(tiny_specs), ["generate"], [1], [4], _options())


def test_decode_points_are_graph_mode_on_cuda_by_default(tiny_specs):
    options = SweepOptions(device="cuda")
    points = make_points(_targets(tiny_specs, ("mlp",)), ["prefill", "decode"], [1], [4], options)
    assert [p.mode for p in points] == ["eager", "graph"]
    eager = make_points(_targets(tiny_specs, ("mlp",)), ["decode"], [1], [4], SweepOptions(graphs=False))
    assert eager[0].mode == "eager"


def test_known_kernel_limit_is_a_recorded_skip_before_the_point_runs(tmp_path, tiny_specs):
    class Limited(TorchWorkload):
        def unsupported(self, point):
            return "beyond the kernel's 32-bit offsets" if point.batch == 2 else ""

        def prepare(self, point):
            assert point.batch != 2, "should have been skipped"
            return super().prepare(point)

    targets = _targets(tiny_specs, ("mlp",))
    options = _options()
    _sweep(tmp_path, targets, make_points(targets, ["prefill"], [1, 2], [4], options), options,
           workload_factory=Limited)
    frame = load_results(tmp_path)
    assert list(frame["status"]) == ["ok", "skipped"]
    assert "32-bit" in frame["reason"].iloc[1]


def test_mamba2_ssd_index_limit_follows_elements_of_x():
    from models.registry import BUILTIN_LAYERS, get_model
    from perfbench.measure.harness import kernel_limit

    mamba2 = BUILTIN_LAYERS["mamba2"]  # 128 heads x 64: 8192 elements of x per token
    assert kernel_limit("layer", mamba2, 64, 4096) == ""  # 2**31 exactly ran on the H100
    assert "2**31" in kernel_limit("layer", mamba2, 40, 12288)
    assert kernel_limit("layer", BUILTIN_LAYERS["attention"], 4096, 4096) == ""
    assert "Mamba-2" in kernel_limit("model", get_model("mamba2-hybrid-8b"), 8, 65536)  # 524,288 tokens
    assert kernel_limit("model", get_model("mamba-8b"), 8, 65536) == ""
    assert "131,072" in kernel_limit("model", get_model("mamba2-8b"), 8, 16384)
    assert kernel_limit("model", get_model("mamba2-8b"), 64, 1024) == ""
    assert kernel_limit("layer", mamba2, 8, 16384) == ""
    assert "one sequence" in kernel_limit("layer", mamba2, 1, 131072)


def test_a_device_fault_keeps_the_rows_and_stops_with_one_line(tmp_path, tiny_specs, monkeypatch):
    from perfbench.measure import harness
    from perfbench.errors import PerfbenchError

    calls = {"n": 0}
    original = harness._Device.release

    def release(self, collect=False):
        calls["n"] += 1
        if calls["n"] == 3:  # after the second point: as an illegal address surfaces at a sync
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return original(self, collect)

    monkeypatch.setattr(harness._Device, "release", release)
    targets = _targets(tiny_specs, ("mlp",))
    options = _options()
    points = make_points(targets, ["prefill"], [1, 2, 4], [4], options)
    with pytest.raises(PerfbenchError, match="faulted .*illegal memory access.*--resume"):
        _sweep(tmp_path, targets, points, options)
    frame = load_results(tmp_path)
    assert list(frame["status"]) == ["ok", "error"]
    assert "illegal memory access" in frame["reason"].iloc[1]
    manifest = json.loads(next(tmp_path.glob("run-*.json")).read_text())
    assert manifest["status"] == "interrupted"
    # --resume goes on past the faulted point (it would fault again) but retries an ordinary error
    from perfbench.measure.results import done_keys, point_key
    done = done_keys(tmp_path)
    assert point_key(frame.iloc[1].to_dict()) in done and len(done) == 2
    frame.loc[1, "reason"] = "RuntimeError: something transient"
    frame.to_parquet(next(tmp_path.glob("run-*.parquet")))
    assert len(done_keys(tmp_path)) == 1


def test_each_point_rests_first_and_records_it(tmp_path, tiny_specs, monkeypatch):
    """With a rest set, every point sleeps once before its first call and its row says how long."""
    import dataclasses

    import perfbench.measure.timing as timing_module

    slept = []
    monkeypatch.setattr(timing_module.time, "sleep", lambda s: slept.append(s))
    targets = _targets(tiny_specs, ("mlp",))
    options = SweepOptions(device="cpu", dtype="float32", graphs=True, timing=dataclasses.replace(FAST, rest_s=0.25),
                           reference=True)
    points = make_points(targets, ["prefill", "decode"], [1], [4, 8], options)
    _sweep(tmp_path, targets, points, options)
    frame = load_results(tmp_path)
    assert slept == [0.25] * len(points)
    assert [json.loads(e)["rest_ms"] for e in frame["extra"]] == [250.0] * len(points)


def test_mamba3_prefill_past_its_state_store_offsets_is_skipped_but_decode_is_not():
    from models.registry import BUILTIN_LAYERS, get_model
    from perfbench.measure.harness import kernel_limit

    mamba3 = BUILTIN_LAYERS["mamba3"]
    assert kernel_limit("layer", mamba3, 16, 8192) == ""  # 2**31 state elements ran on the H100
    assert "Mamba-3" in kernel_limit("layer", mamba3, 16, 16384)  # faulted there
    assert kernel_limit("layer", mamba3, 16, 16384, phase="decode") == ""
    assert "Mamba-3" in kernel_limit("model", get_model("mamba3-hybrid-8b"), 16, 16384)
