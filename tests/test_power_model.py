"""Board power limit in the cost model, GEMM shapes off the measured table, and the prefill op lists
that H100 kernel traces corrected (no transpose copy before out_proj)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analytic.calibration import CalibrationError, bundled_path, from_dict, load_calibration
from analytic.composition import CountedOp
from analytic.costs import layer_ops
from analytic.efficiency import (COMPUTE, DYNAMIC_POWER_EXPONENT, MEMORY, ceilings, clock_scales,
                                 op_time, power_capped_s)
from analytic.hardware import get_gpu
from analytic.ops import ATTN_PREFILL, GEMM, elementwise, gemm
from analytic.predict import breakdown, predict
from models.registry import BUILTIN_LAYERS


@pytest.fixture(scope="module")
def h100():
    return load_calibration(bundled_path("h100"), "h100")


def _power_ceil(cal, **power):
    base = {"idle_w": 150.0, "limit_w": 700.0, "gemm_w": 700.0, "gemm_burst_speedup": 1.2, "elementwise_w": 450.0}
    return ceilings(get_gpu("h100"), dataclasses.replace(cal, power={**base, **power}))


def test_bundled_calibrations_carry_power_figures():
    for gpu in ("h100", "h200"):
        power = load_calibration(bundled_path(gpu), gpu).power
        assert 0 < power["idle_w"] < power["gemm_w"] <= 1.1 * power["limit_w"]
        assert 1.0 <= power["gemm_burst_speedup"] < 1.5


def test_power_figures_round_trip_and_are_validated(h100):
    again = from_dict(json.loads(json.dumps(h100.to_dict())))
    assert again.power == h100.power
    bad = h100.to_dict()
    bad["power"] = {**h100.power, "idle_w": 800.0}
    with pytest.raises(CalibrationError, match="idle_w must be below"):
        from_dict(bad)
    bad["power"] = {**h100.power, "gemm_w": -1.0}
    with pytest.raises(CalibrationError, match="positive"):
        from_dict(bad)


def _timed(ceil, ops):
    counted = [CountedOp("layer", op, 1) for op in ops]
    return counted, [op_time(op, ceil) for op in ops]


def test_gemms_alone_get_no_power_headroom(h100):
    ceil = _power_ceil(h100)
    ops = [gemm("fc", np.array([8192.0]), 16384, 4096)]
    seconds, speedup = power_capped_s(*_timed(ceil, ops), ceil)
    assert seconds == pytest.approx(op_time(ops[0], ceil)[0])
    assert speedup[0] == pytest.approx(1.0)


def test_low_power_work_beside_gemms_speeds_them_up_within_the_burst_rate(h100):
    ceil = _power_ceil(h100)
    big_gemm = gemm("fc", np.array([8192.0]), 16384, 4096)
    speedups = []
    for elements in (1e6, 1e8, 1e9, 4e9):  # more memory-bound work at 450 W beside the same GEMM
        ops = [big_gemm, elementwise("act", elements, elements, 1.0, 2)]
        counted, times = _timed(ceil, ops)
        seconds, speedup = power_capped_s(counted, times, ceil)
        assert seconds <= sum(t for t, _code in times) + 1e-15  # never slower than the plain sum
        speedups.append(float(speedup[0]))
    assert np.all(np.diff(speedups) >= -1e-12) and speedups[0] < speedups[-1]  # rounding at the cap
    assert 1.0 <= speedups[0] and speedups[-1] <= ceil.gemm_burst_speedup + 1e-12


def test_power_model_leaves_memory_bound_decode_alone(h100):
    with_power = predict("mlp", "decode", [1, 16, 128], [4096], gpu="h100", calibration=h100)
    without = predict("mlp", "decode", [1, 16, 128], [4096], gpu="h100",
                      calibration=dataclasses.replace(h100, power={}))
    assert np.allclose(with_power.time_ms, without.time_ms)


def test_prefill_without_flash_is_never_slower_with_the_power_model_and_breakdown_adds_up(h100):
    """Only a kernel that runs faster alone than a GEMM at the limit (FlashAttention) can lose from
    sharing the clock; layers without one only gain."""
    for layer in ("mamba", "mamba2", "mlp"):
        with_power = predict(layer, "prefill", [1, 8], [2048, 16384], gpu="h100", calibration=h100)
        without = predict(layer, "prefill", [1, 8], [2048, 16384], gpu="h100",
                          calibration=dataclasses.replace(h100, power={}))
        assert (with_power.time_ms.to_numpy() <= without.time_ms.to_numpy() * (1 + 1e-9)).all()
    for layer in ("mlp", "attention-mha"):
        rows = breakdown(layer, "prefill", 8, 8192, gpu="h100", calibration=h100)
        total = predict(layer, "prefill", [8], [8192], gpu="h100", calibration=h100).time_ms[0]
        assert rows.time_ms.sum() == pytest.approx(total, rel=1e-9)


CLOCKS = {"gemm_clock_hz": 1.4e9, "attention_prefill_clock_hz": 1.8e9, "elementwise_clock_hz": 1.98e9,
          "attention_prefill_w": 690.0}


def _attention_prefill(ceil, batch=16.0, seqlen=2048.0):
    ops = layer_ops(BUILTIN_LAYERS["attention"], "prefill", np.array([batch]), np.array([seqlen]))
    return _timed(ceil, ops)


def test_flash_beside_gemms_runs_slower_and_the_gemms_faster(h100):
    """FlashAttention alone at the limit gets a higher clock than a GEMM (it draws less per cycle);
    in one layer they share a clock between the two, as torch.profiler shows on the H100."""
    ceil = _power_ceil(h100, **CLOCKS)
    counted, times = _attention_prefill(ceil)
    scales = clock_scales(counted, times, ceil)
    by_class = {c.op.op_class: float(s[0]) for c, s in zip(counted, scales)}
    assert by_class[GEMM] < 1.0 < by_class[ATTN_PREFILL] < 1.8 / 1.4
    # The shared clock x balances the energy: power-limited ops draw idle + (limit - idle) (x / r)^2.
    x = 1.0 / by_class[GEMM]
    energy = sum(float(t[0]) * s * (x / r) ** DYNAMIC_POWER_EXPONENT
                 for (t, _c), s, r in zip(times, (by_class[c.op.op_class] for c in counted),
                                          (1.0 if c.op.op_class == GEMM else 1.8 / 1.4 for c in counted)))
    seconds = sum(float(t[0]) * s for (t, _c), s in zip(times, (by_class[c.op.op_class] for c in counted)))
    assert energy == pytest.approx(seconds, rel=1e-6)  # average dynamic power = the limit's
    # Without clock figures FlashAttention counts as a GEMM: all at the limit, each runs as alone.
    no_clocks = _power_ceil(h100, attention_prefill_w=690.0)
    plain = clock_scales(*_attention_prefill(no_clocks), no_clocks)
    assert [float(s[0]) for s in plain] == pytest.approx([1.0, 1.0, 1.0], rel=1e-9)


def test_more_low_power_work_raises_the_shared_clock_up_to_the_top(h100):
    ceil = _power_ceil(h100, **CLOCKS)
    big_gemm = gemm("fc", np.array([8192.0]), 16384, 4096)
    speeds = []
    for elements in (1e6, 1e8, 1e9, 4e10):
        counted, times = _timed(ceil, [big_gemm, elementwise("act", elements, elements, 1.0, 2)])
        speeds.append(1.0 / float(clock_scales(counted, times, ceil)[0][0]))
    assert speeds == sorted(speeds) and speeds[0] > 1.0
    assert speeds[-1] == pytest.approx(ceil.gemm_burst_speedup)  # a GEMM's rate between idle gaps caps it


def test_clock_figures_come_from_the_power_section(h100):
    ceil = _power_ceil(h100, **CLOCKS)
    assert ceil.class_clock_ratio[ATTN_PREFILL] == pytest.approx(1.8 / 1.4)
    assert ceil.max_clock_ratio == pytest.approx(1.98 / 1.4)
    for gpu in ("h100", "h200"):  # the bundled files carry them
        bundled = ceilings(get_gpu(gpu), load_calibration(bundled_path(gpu), gpu))
        assert 1.0 < bundled.class_clock_ratio[ATTN_PREFILL] < bundled.max_clock_ratio < 1.6


def test_gemm_table_time_never_falls_as_m_grows(h100):
    ceil = ceilings(get_gpu("h100"), h100)
    for log_m, log_t in ceil.gemm_table.values():
        assert (np.diff(log_t) >= 0).all()


def test_off_table_gemm_shapes_lie_between_their_measured_neighbours(h100):
    ceil = ceilings(get_gpu("h100"), h100)
    m = np.geomspace(1, 65536, 17)
    assert (9216, 4096) not in ceil.gemm_table  # e.g. a 9216-wide projection of another model
    t_off, bound = op_time(gemm("g", m, 9216, 4096), ceil)
    t_below, _ = op_time(gemm("g", m, 6144, 4096), ceil)
    t_above, _ = op_time(gemm("g", m, 12288, 4096), ceil)
    assert (t_below <= t_off).all() and (t_off <= t_above).all()
    assert (np.diff(t_off) >= 0).all()
    assert (t_off >= 2 * m * 9216 * 4096 / ceil.gemm_peak_flops).all()  # never above the measured peak
    assert bound[0] == MEMORY and bound[-1] == COMPUTE
    # A tiny shape still pays at least its kernel floor.
    t_tiny, _ = op_time(gemm("g", np.array([1.0]), 64, 64), ceil)
    assert t_tiny[0] >= ceil.classes[GEMM].t0_s


def test_prefill_has_no_transpose_copy_before_out_proj():
    b, L = np.array([2.0]), np.array([1024.0])
    for layer in ("attention", "attention-mha", "mamba"):
        names = [op.name for op in layer_ops(BUILTIN_LAYERS[layer], "prefill", b, L)]
        assert "out_transpose" not in names and names[-1] == "out_proj"


def test_without_an_energy_counter_calibration_skips_the_power_model():
    from perfbench.calibration.bench import PowerMeter
    from perfbench.calibration.power import measure_power

    meter = PowerMeter()
    meter.handle = None  # as on a board or driver without NVML's energy counter
    assert meter.energy_j() is None and meter.limit_w() is None and meter.max_sm_clock_hz() is None
    lines: list[str] = []
    assert measure_power(None, None, meter, lines.append) == {}
    assert "without the power model" in lines[0]


def _table_time(ceil, m: int, n: int, k: int) -> float:
    return float(op_time(gemm("g", np.array([float(m)]), n, k), ceil)[0][0])


def test_saturated_gemm_shapes_share_their_median_rate_and_weight_streams_keep_their_times(h100):
    """One compute-bound M timed while the board was power-capped (10 % slow) takes the median rate
    of the other saturated shapes; decode-sized M and the 256K-wide LM head stay as measured."""
    n, k = 16384, 4096
    rate = 700e12
    shapes = [(m, n, k, 2.0 * m * n * k / rate) for m in (4096, 8192, 16384, 32768, 65536)]
    slow = [(m, nn, kk, t * (1.1 if m == 32768 else 1.0)) for m, nn, kk, t in shapes]
    small = [(m, n, k, 40e-6 + 0.1e-6 * m) for m in (1, 16, 64)]
    head = [(m, 256000, 4096, 1e-3 * (1 + m / 1024)) for m in (1, 64, 128)]
    cal = dataclasses.replace(h100, gemm=tuple(small + slow + head), power={})
    ceil = ceilings(get_gpu("h100"), cal)
    assert _table_time(ceil, 32768, n, k) == pytest.approx(2.0 * 32768 * n * k / rate, rel=1e-9)
    assert _table_time(ceil, 16, n, k) == pytest.approx(40e-6 + 1.6e-6, rel=1e-9)
    assert _table_time(ceil, 64, 256000, 4096) == pytest.approx(1e-3 * (1 + 64 / 1024), rel=1e-9)
    times = [_table_time(ceil, m, n, k) for m in (1, 16, 64, 4096, 8192, 16384, 32768, 65536)]
    assert times == sorted(times)  # more rows never take less time


def _list_scheduled_makespan(groups: int, n: int, slots: int) -> int:
    """Row-block CTAs (n, n-1, ..., 1 tiles per group) handed to the first free slot, in launch order."""
    import heapq

    free = [0] * slots
    for _ in range(groups):
        for tiles in range(n, 0, -1):
            heapq.heappush(free, heapq.heappop(free) + tiles)
    return max(free)


def test_causal_attention_makespan_follows_list_scheduling():
    from analytic.efficiency import causal_makespan_tiles

    cases = [(g, n) for g in (32, 96, 192, 384) for n in (4, 12, 24, 48)]
    ratios = [float(causal_makespan_tiles(g, n, 132)) / _list_scheduled_makespan(g, n, 132) for g, n in cases]
    assert np.median(np.abs(np.array(ratios) - 1)) < 0.03 and max(abs(r - 1) for r in ratios) < 0.15
    assert float(causal_makespan_tiles(8, 16, 132)) == 16  # fewer CTAs than slots: the longest CTA


def test_attention_prefill_fit_recovers_its_rate_slots_and_host_dispatch(h100):
    from analytic.efficiency import attention_prefill_compute_s
    from analytic.fit import fit_attention_prefill, sample_ops

    base = ceilings(get_gpu("h100"), h100)
    rate, host, slots = 340e12, 20e-6, base.gpu.sm_count
    samples = []
    for sample in h100.samples["attention_prefill"]:
        op = sample_ops(sample)[0]
        kernel = float(np.asarray(attention_prefill_compute_s(op, slots, rate)).ravel()[0])
        samples.append({**sample, "time_s": host + base.graph_kernel_s + kernel})
    fitted = fit_attention_prefill(samples, base)
    assert fitted["ctas_per_sm"] == 1.0 and fitted["host_s"] == pytest.approx(host, abs=0.6e-6)
    assert fitted["flops_s"] == pytest.approx(rate, rel=0.02) and fitted["fit_median_abs_err"] < 0.01


def test_an_unaligned_gemm_gets_no_burst_from_power_left_over(h100):
    """Mamba-1's in_proj at B*L odd runs cuBLAS's align2 kernels: its own kernel holds it, not the power
    limit, so memory-bound work beside it speeds up neither it nor (having no aligned GEMM) the point."""
    ceil = _power_ceil(h100)
    act = elementwise("act", 4e9, 4e9, 1.0, 2)
    aligned = gemm("in_proj", np.array([8192.0]), 16384, 4096, ld=np.array([8192.0]))
    unaligned = gemm("in_proj", np.array([8193.0]), 16384, 4096, ld=np.array([8193.0]))
    assert op_time(unaligned, ceil)[1][0] == COMPUTE  # still compute-bound by its FLOPs
    _s, sped = power_capped_s(*_timed(ceil, [aligned, act]), ceil)
    seconds, speedup = power_capped_s(*_timed(ceil, [unaligned, act]), ceil)
    assert sped[0] > 1.05 and speedup[0] == 1.0
    assert seconds == pytest.approx(sum(t for t, _code in _timed(ceil, [unaligned, act])[1]))
