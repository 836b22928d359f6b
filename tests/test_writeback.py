"""L2 write-back in the cost model: a weight-streaming GEMM pays for the state a decode step stored
before it (analytic.efficiency.step_op_times), and its calibration (fit, file, re-measure names)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analytic.calibration import CalibrationError, bundled_path, from_dict, load_calibration
from analytic.composition import CountedOp
from analytic.costs import layer_ops
from analytic.efficiency import ceilings, op_time, step_op_times
from analytic.hardware import get_gpu
from analytic.ops import GEMM, STATE_UPDATE, Op, written_bytes
from analytic.predict import breakdown, predict
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.run import check_kernel_families
from perfbench.calibration.writeback import fit_writeback
from perfbench.errors import PerfbenchError

MB = 1 << 20


@pytest.fixture(scope="module")
def h100():
    return load_calibration(bundled_path("h100"), "h100")


def _ceil(cal, dirty_bytes=16 * MB, bw=2e12):
    return ceilings(get_gpu("h100"), dataclasses.replace(cal, writeback={"dirty_bytes": dirty_bytes, "bw_bytes_s": bw}))


def _decode_ops(layer, batch):
    b, L = np.array([float(batch)]), np.array([4096.0])
    return [CountedOp(layer, op, 1) for op in layer_ops(BUILTIN_LAYERS[layer], "decode", b, L)]


def _extra_s(ops, ceil):
    """Seconds each op gained over op_time alone."""
    return [float(t[0] - op_time(c.op, ceil)[0][0]) for c, (t, _code) in zip(ops, step_op_times(ops, ceil))]


def test_out_proj_pays_the_state_stored_before_it_capped_by_what_l2_holds(h100):
    ceil = _ceil(h100)
    for layer in ("mamba", "mamba2"):
        small, big = _extra_s(_decode_ops(layer, 1), ceil), _extra_s(_decode_ops(layer, 64), ceil)
        names = [c.op.name for c in _decode_ops(layer, 1)]
        out = names.index("out_proj")
        state = next(c.op for c in _decode_ops(layer, 1) if c.op.op_class == STATE_UPDATE)
        stored = float(written_bytes(state)[0])  # one sequence's state (plus y) is under the cap
        assert 0 < stored < 16 * MB
        assert small[out] == pytest.approx(stored / 2e12, rel=0.05)
        assert big[out] == pytest.approx(16 * MB / 2e12, rel=1e-6)  # B=64 stores far more than L2 keeps dirty
        assert big[out] > small[out]
        # in_proj opens the step (clean L2); nothing but GEMMs gains
        assert small[names.index("in_proj")] == 0.0
        assert all(x == 0.0 for c, x in zip(_decode_ops(layer, 64), big) if c.op.op_class != GEMM)


def test_activations_and_compute_bound_gemms_pay_nothing(h100):
    ceil = _ceil(h100)
    for batch in (1, 64):
        assert not any(_extra_s(_decode_ops("mlp", batch), ceil))  # fc1's output and the activation are read next
    b, L = np.array([8.0]), np.array([4096.0])
    prefill = [CountedOp("mamba2", op, 1) for op in layer_ops(BUILTIN_LAYERS["mamba2"], "prefill", b, L)]
    assert not any(_extra_s(prefill, ceil))  # prefill GEMMs are compute-bound: spare bandwidth hides stores


def test_each_group_starts_clean_and_a_gemm_stream_cleans(h100):
    ceil = _ceil(h100)
    state = Op("state", STATE_UPDATE, np.array([1.0]), np.array([8.0 * MB]), 1,
               {"state_elements": np.array([1.0]), "written_bytes": np.array([4.0 * MB])})
    gemv = next(c.op for c in _decode_ops("mlp", 1) if c.op.op_class == GEMM)
    seq = [CountedOp("a", state, 1), CountedOp("a", gemv, 1), CountedOp("a", gemv, 1), CountedOp("b", gemv, 1)]
    extra = _extra_s(seq, ceil)
    assert extra[1] == pytest.approx(4 * MB / 2e12)
    assert extra[2] == 0.0 and extra[3] == 0.0


def test_without_writeback_figures_times_are_op_times(h100):
    ops = _decode_ops("mamba", 16)
    for ceil in (ceilings(get_gpu("h100"), dataclasses.replace(h100, writeback={})), ceilings(get_gpu("h100"), None)):
        assert not any(_extra_s(ops, ceil))


def test_predictions_and_breakdowns_include_it(h100):
    without = dataclasses.replace(h100, writeback={})
    with_ = dataclasses.replace(h100, writeback={"dirty_bytes": 16 * MB, "bw_bytes_s": 2e12})
    t0 = predict("mamba", "decode", [16], [4096], "h100", calibration=without).time_ms[0]
    t1 = predict("mamba", "decode", [16], [4096], "h100", calibration=with_).time_ms[0]
    extra = _extra_s(_decode_ops("mamba", 16), ceilings(get_gpu("h100"), with_))
    assert t1 - t0 == pytest.approx(sum(extra) * 1e3, rel=1e-6)
    assert sum(extra) > 16 * MB / 2e12  # the state's capped write-back, plus the conv state before x_proj
    rows = breakdown("mamba", "decode", 16, 4096, "h100", calibration=with_).set_index("op")
    base = breakdown("mamba", "decode", 16, 4096, "h100", calibration=without).set_index("op")
    assert rows.time_ms["out_proj"] - base.time_ms["out_proj"] == pytest.approx(16 * MB / 2e12 * 1e3, rel=1e-6)
    assert rows.time_ms.sum() - base.time_ms.sum() == pytest.approx(t1 - t0, rel=1e-6)
    tp = predict("mamba2-hybrid-8b", "decode", [16], [4096], "h100", calibration=with_, tp=2).time_ms[0]
    tp0 = predict("mamba2-hybrid-8b", "decode", [16], [4096], "h100", calibration=without, tp=2).time_ms[0]
    assert tp > tp0


def test_fit_recovers_a_known_cap_and_rate():
    sizes = [0.5, 1, 2, 4, 8, 16, 24, 32, 48, 64, 128]
    samples = [{"written_bytes": s * MB, "excess_s": min(s * MB, 20 * MB) / 3e12} for s in sizes]
    fit = fit_writeback(samples)
    assert fit["dirty_bytes"] == pytest.approx(20 * MB, rel=0.05)
    assert fit["bw_bytes_s"] == pytest.approx(3e12, rel=0.05)
    flat = fit_writeback([{"written_bytes": s * MB, "excess_s": -1e-7} for s in sizes])
    assert flat["dirty_bytes"] == 0.0  # nothing measurable: the term is off


def test_bundled_files_carry_measured_writeback_and_round_trip():
    for gpu in ("h100", "h200"):
        cal = load_calibration(bundled_path(gpu), gpu)
        wb = cal.writeback
        assert 4 * MB < wb["dirty_bytes"] < 64 * MB and 0.5e12 < wb["bw_bytes_s"] < 10e12
        assert len(wb["samples"]) >= 5
        again = from_dict(json.loads(json.dumps(cal.to_dict())))
        assert again.writeback == wb


def test_bad_writeback_figures_are_one_line_errors(h100):
    data = h100.to_dict()
    for bad in ({"dirty_bytes": 1e6, "bw_bytes_s": 0.0}, {"dirty_bytes": -1.0, "bw_bytes_s": 1e12},
                {"dirty_bytes": "lots", "bw_bytes_s": 1e12}):
        with pytest.raises(CalibrationError) as err:
            from_dict({**data, "writeback": bad}, "x.json")
        assert "\n" not in str(err.value) and "x.json" in str(err.value)


def test_writeback_can_be_remeasured_by_name():
    check_kernel_families(["writeback", "attention_decode"])
    with pytest.raises(PerfbenchError, match="writeback"):
        check_kernel_families(["write_back"])
