"""`perfbench calibrate --remeasure` on a real GPU: one cheap kernel family measured into a copy of
the bundled calibration of this GPU kind (skipped without CUDA)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture
def torch():
    """torch with a CUDA GPU, else the test is skipped."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch


def test_remeasure_replaces_one_family_on_this_gpu(torch):
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.run import remeasure

    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu not in ("h100", "h200"):
        pytest.skip(f"no bundled calibration for {gpu}")
    before = read_calibration_data(bundled_path(gpu))
    after = remeasure(before, ["elementwise"], log=lambda *_: None)
    from_dict(after)  # still a valid calibration
    new, old = after["samples"]["elementwise"], before["samples"]["elementwise"]
    assert len(new) == len(old) and all(s["time_s"] > 0 for s in new)
    assert [s["time_s"] for s in new] != [s["time_s"] for s in old]  # measured now, not copied
    assert after["samples"]["attention_decode"] == before["samples"]["attention_decode"]
    assert "elementwise" in after["provenance"]["remeasured"]


def test_point_timing_counts_each_call_once(torch):
    """Timer.point (attention decode's protocol: rest, then the harness's window) times per call:
    a callable doing the same copy twice takes about twice as long, whatever the replay batching."""
    from perfbench.calibration.bench import Timer
    from perfbench.measure.timing import TimingOptions

    src = torch.randn(64 << 20, device="cuda", dtype=torch.bfloat16)  # 128 MiB: HBM-bound copies
    dst = torch.empty_like(src)
    timer = Timer(torch)
    fast = TimingOptions(warmup=1, min_repeats=5, max_repeats=20, target_s=0.02, nvtx=False)
    once = timer.point(lambda: dst.copy_(src), options=fast, windows=1)  # no rest: fast.rest_s is 0
    twice = timer.point(lambda: (dst.copy_(src), dst.copy_(src)), options=fast, windows=1)
    assert timer.last_mode == "graph"
    assert 2 * 128 * 2**20 / once < 6e12  # read + write: not faster than any HBM (H200: 4.8 TB/s)
    assert 1.7 < twice / once < 2.3


def test_writeback_pairs_grow_with_the_stores_then_flatten(torch):
    """The L2 write-back microbenchmark on this GPU: a GEMV pays more after 16 MB of stores than
    after 1 MB, no more after 128 MB than L2 can hold dirty, and the fit is a valid file entry."""
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.bench import Timer
    from perfbench.calibration.writeback import measure_writeback

    wb = measure_writeback(torch, Timer(torch), log=lambda *_: None)
    excess = {s["written_bytes"] / 2**20: s["excess_s"] for s in wb["samples"]}
    assert excess[16] > excess[1] + 1e-6
    assert excess[128] < excess[16] + 4e-6  # flat once L2's dirty capacity is spent
    assert 4 * 2**20 < wb["dirty_bytes"] < 64 * 2**20 and wb["bw_bytes_s"] > 0
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        from_dict({**read_calibration_data(bundled_path(gpu)), "writeback": wb})


def test_step_chains_cost_more_per_cold_kernel_than_per_warm_one(torch):
    """The decode-step microbenchmark on this GPU: the two-GEMV graph costs more than its GEMVs alone,
    sixteen cold small kernels add more than sixteen warm ones, and the fit is a valid file entry."""
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.bench import Timer
    from perfbench.calibration.step import measure_step_overhead

    step = measure_step_overhead(torch, Timer(torch), log=lambda *_: None)
    over = {s["chain"]: s["step_s"] - s["sum_s"] for s in step["samples"]}
    assert over["gemv2"] > 0.5e-6 and step["base_s"] > 0.5e-6
    assert over["cold16"] > over["warm16"] + 2e-6
    assert step["cold_kernel_s"] > step["kernel_s"] >= 0
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        from_dict({**read_calibration_data(bundled_path(gpu)), "step": step})


def test_an_unaligned_leading_dimension_slows_mamba_in_proj(torch):
    """W @ x^T with M = B*L as the output's leading dimension: at M = 16388 (8-byte aligned) cuBLAS
    runs slower kernels than at M = 16384, and the microbenchmark's samples form a valid file entry."""
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.bench import Timer, randn
    from perfbench.calibration.gemm_unaligned import measure_unaligned_gemms

    timer = Timer(torch)
    w = randn(torch, 16384, 4096, scale=0.02)
    times = {m: timer(lambda x=randn(torch, m, 4096): w @ x.t()) for m in (16384, 16388)}
    assert times[16388] > 1.1 * times[16384]
    samples = measure_unaligned_gemms(torch, timer, log=lambda *_: None)
    assert {s["align_bytes"] for s in samples} == {2, 4, 8, 16} and all(s["time_s"] > 0 for s in samples)
    assert {s["layout"] for s in samples} == {"out", "a_t"}
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        from_dict({**read_calibration_data(bundled_path(gpu)), "gemm_unaligned": samples})


def test_relu_input_gemms_time_both_inputs_into_a_valid_section(torch, monkeypatch):
    """The MLP's fc2 on dense and on a squared-ReLU input, one compute-bound M, one round: both timed,
    the input half zeros as the layer's, and the samples a valid calibration section."""
    import perfbench.calibration.gemm_relu_input as relu_gemm
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.bench import Timer

    a = relu_gemm.relu_input(torch, 4096, 4096, 16384)
    assert 0.45 < (a == 0).float().mean().item() < 0.55
    monkeypatch.setattr(relu_gemm, "RELU_INPUT_M", (8192,))
    monkeypatch.setattr(relu_gemm, "RELU_INPUT_ROUNDS", 1)
    samples = relu_gemm.measure_relu_input_gemms(torch, Timer(torch), log=lambda *_: None)
    assert [(s["m"], s["n"], s["k"]) for s in samples] == [(8192, 4096, 16384)]
    assert samples[0]["dense_s"] > 0 and samples[0]["relu_s"] > 0
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        assert from_dict({**read_calibration_data(bundled_path(gpu)), "gemm_relu_input": samples}).gemm_relu_input


def test_a_gemm_held_at_the_limit_fits_a_valid_sustained_curve(torch):
    """The sustained-clock benchmark on this GPU: 8 s of one GEMM after a rest gives a curve that starts
    at 1, never falls, stays within a plausible clock loss, and is a valid calibration section."""
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.bench import Timer
    from perfbench.calibration.sustained import measure_sustained

    sustained = measure_sustained(torch, Timer(torch), log=lambda *_: None)
    slowdown = sustained["slowdown"]
    assert slowdown[0] == 1.0 and all(a <= b for a, b in zip(slowdown, slowdown[1:])) and slowdown[-1] < 1.5
    assert 1e-3 < sustained["call_s"] < 0.1  # fc1 at 32K tokens: ~6 ms on an H100 or H200
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        assert from_dict({**read_calibration_data(bundled_path(gpu)), "sustained": sustained}).sustained


def test_host_chains_are_sampled_per_layer_path_and_the_median_is_kept(torch):
    """measure_layer_host: every built-in layer path and the models' add + norm get their windows, each
    a plausible chain (under 100 ms), and the model's figure is their median."""
    import statistics

    from analytic.host_chain import ADD_NORM_CHAIN
    from models.registry import BUILTIN_LAYERS
    from perfbench.calibration.host import host_figures, measure_layer_host

    samples = measure_layer_host(torch, log=lambda *_: None, samples=3)
    assert set(samples) == {f"{kind}/{name}/{phase}" for kind in ("host", "host_wall")
                            for name in (*BUILTIN_LAYERS, ADD_NORM_CHAIN) for phase in ("prefill", "decode")}
    assert all(len(v) == 3 and all(0 < s < 0.1 for s in v) for v in samples.values())
    figures = host_figures(samples)
    assert figures["host/mamba2/prefill"] == statistics.median(samples["host/mamba2/prefill"])
    # Mamba-2's Python path (Triton launchers, mamba_ssm's split conv/scan) outlasts the MLP's two GEMMs
    assert figures["host/mamba2/prefill"] > figures["host/mlp/prefill"]


def test_built_in_models_host_chains_are_timed_whole(torch):
    """measure_model_host: each paper model's prefill and eager decode chain, a plausible whole-model
    chain (56-64 blocks: over 2 ms and under a second)."""
    from models.registry import PAPER_MODELS
    from perfbench.calibration.host import measure_model_host

    samples = measure_model_host(torch, log=lambda *_: None, samples=1)
    assert set(samples) == {f"{kind}/{name}/{phase}" for kind in ("host", "host_wall")
                            for name in PAPER_MODELS for phase in ("prefill", "decode")}
    assert all(len(v) == 1 and 2e-3 < v[0] < 1.0 for v in samples.values())


def test_power_figures_carry_the_clock_each_family_gets_at_the_limit(torch):
    """measure_power on this GPU: a GEMM back to back holds the board at its limit at a lower SM clock
    than FlashAttention's prefill (which draws less per cycle), the memory-bound families run at the
    top clock, and the section (with the GEMM's power while bursting) is a valid calibration's."""
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.bench import PowerMeter, Timer
    from perfbench.calibration.power import measure_power

    power = measure_power(torch, Timer(torch), PowerMeter(), log=lambda *_: None)
    if not power:
        pytest.skip("no NVML energy counter on this GPU")
    assert power["gemm_clock_hz"] < power["attention_prefill_clock_hz"] <= power["elementwise_clock_hz"]
    assert power["gemm_burst_w"] > power["gemm_w"] > power["idle_w"]
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        from_dict({**read_calibration_data(bundled_path(gpu)), "power": power})


def test_add_norm_is_timed_cold_at_decode_rows_and_fits_its_family(torch):
    """The models' fused add+RMSNorm on this GPU: one sample per ADD_NORM_ROWS entry, the decode-size
    ones timed after an L2 flush (a few us, HBM latency), the largest memory-bound, and a valid file."""
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import gpu_key_from_name
    from perfbench.calibration.bench import Timer
    from perfbench.calibration.kernels.add_norm import ADD_NORM_COLD_ROWS, ADD_NORM_ROWS
    from perfbench.calibration.run import measure_kernels

    pytest.importorskip("mamba_ssm")
    kernels = measure_kernels(torch, Timer(torch), log=lambda *_: None, only={"add_norm"})
    assert not kernels["failures"]
    samples = kernels["samples"]["add_norm"]
    assert [s["rows"] for s in samples] == list(ADD_NORM_ROWS)
    assert all(s["cold"] == (s["rows"] <= ADD_NORM_COLD_ROWS) for s in samples)
    assert 0.5e-6 < samples[0]["time_s"] < 20e-6
    assert samples[-1]["time_s"] > 20 * samples[0]["time_s"]  # 65536 rows stream 2 GB
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        data = read_calibration_data(bundled_path(gpu))
        from_dict({**data, "samples": {**data["samples"], **kernels["samples"]}})


SHAPE_FAMILY_TRIMS = {  # one or two specs and sizes each, so the test runs in seconds
    "selective_scan_shapes": {"SPECS": slice(0, 5, 4), "SIZES": slice(0, 1)},
    "ssd_shapes": {"SPECS": slice(0, 1), "SIZES": slice(0, 1)},
    "state_update_shapes": {"MAMBA2_SPECS": slice(0, 1), "MAMBA1_SPECS": slice(0, 1), "BATCHES": slice(0, 2)},
    "conv1d_shapes": {"SPECS": slice(0, 2), "PREFILL": slice(0, 1), "BATCHES": slice(0, 1)},
    "attention_prefill_shapes": {"SPECS": slice(0, 4, 3), "SIZES": slice(0, 1)},
    "attention_decode_shapes": {"SPECS": slice(0, 4, 3), "POINTS": slice(0, 1)},
}


@pytest.mark.parametrize("name", sorted(SHAPE_FAMILY_TRIMS))
def test_a_shape_family_records_the_spec_it_ran_and_its_kernels_time(torch, monkeypatch, name):
    """Each `*_shapes` benchmark on this GPU, trimmed: a sample per planned point, each with its exact
    spec (the ops it names rebuild from it), a positive time, and the bundled model's time for it
    within a factor of 5 either way (the model has not seen these shapes: a sanity bound, not accuracy)."""
    from analytic.calibration import bundled_path, load_calibration
    from analytic.efficiency import ceilings, op_time
    from analytic.fit import sample_ops
    from analytic.hardware import get_gpu, gpu_key_from_name
    from perfbench.calibration.bench import Timer
    from perfbench.calibration.kernels import FAMILIES
    from perfbench.calibration.run import measure_kernels
    from analytic.fit import spec_fields

    pytest.importorskip("mamba_ssm")
    family = FAMILIES[name]
    for constant, part in SHAPE_FAMILY_TRIMS[name].items():
        monkeypatch.setattr(family, constant, getattr(family, constant)[part])
    kernels = measure_kernels(torch, Timer(torch), log=lambda *_: None, only={name})
    assert not kernels["failures"]
    samples = kernels["samples"][name]
    assert len(samples) == len(family.plan())
    assert [s["spec"] for s in samples] == [spec_fields(stub["spec"]) for stub in family.plan()]
    assert all(s["time_s"] > 0 and sample_ops(s) for s in samples)
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu in ("h100", "h200"):
        ceil = ceilings(get_gpu(gpu), load_calibration(bundled_path(gpu), gpu))
        for s in samples:
            predicted = sum(float(op_time(op, ceil)[0][0]) for op in sample_ops(s))
            assert 0.2 < predicted / s["time_s"] < 5.0, s


def test_design_grid_samples_measure_into_a_valid_gemm_section(torch):
    """A tiny subset of the design-space GEMM grid (a dt_proj-like short K, an x_proj-like narrow N, a
    gated-FFN width; decode and prefill M) measured on this GPU: positive times, never faster than the
    datasheet peak, more rows never much faster, and the section a valid calibration's."""
    from analytic.calibration import bundled_path, from_dict, read_calibration_data
    from analytic.hardware import get_gpu, gpu_key_from_name
    from perfbench.calibration import gemm as gemm_grid
    from perfbench.calibration.bench import Timer

    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    if gpu not in ("h100", "h200"):
        pytest.skip(f"no bundled calibration for {gpu}")
    points = [(m, n, k) for n, k in ((8192, 64), (256, 8192), (32768, 4096)) for m in (1, 1024, 16384)]
    assert set(points) <= set(gemm_grid.design_grid())
    samples = gemm_grid.measure_gemms(torch, Timer(torch), lambda *_: None, mem_budget_bytes=8e9, points=points)
    assert sorted((g["m"], g["n"], g["k"]) for g in samples) == sorted(points)
    peak = get_gpu(gpu).peak_bf16_flops
    for g in samples:
        assert 0 < g["time_s"] and 2 * g["m"] * g["n"] * g["k"] / g["time_s"] < peak
    by_shape = {}
    for g in samples:
        by_shape.setdefault((g["n"], g["k"]), []).append((g["m"], g["time_s"]))
    for rows in by_shape.values():
        times = [t for _m, t in sorted(rows)]
        assert times[-1] > 0.9 * times[0]
    data = read_calibration_data(bundled_path(gpu))
    from_dict({**data, "gemm": data["gemm"] + samples, "gemm_peak_flops": gemm_grid.gemm_peak(data["gemm"] + samples)})


def test_targeted_calibration_measures_a_models_gemms_into_the_bundled_file(torch):
    """`perfbench calibrate --layer mlp`'s GPU part: the layer's two GEMMs over decode and prefill M,
    added to the bundled calibration of this GPU kind, a valid file."""
    from analytic.calibration import from_dict
    from perfbench.calibration.targeted import calibrate_targets, targeted_points
    from perfbench.commands.selection import resolve_targets

    targets = resolve_targets(layer="mlp")
    data = calibrate_targets(targets, log=lambda *_: None)
    cal = from_dict(data)
    measured = {(int(m), n, k) for m, n, k, _t in cal.gemm}
    assert set(targeted_points(targets)) <= measured
    assert data["provenance"]["targeted"]["targets"] == ["mlp"]
    assert data["provenance"]["targeted"]["gemm_samples"] == len(targeted_points(targets))
