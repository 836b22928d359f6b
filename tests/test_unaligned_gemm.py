"""GEMMs that lay the tokens out as a leading dimension (Mamba-1's in_proj, dt_proj and out_proj at B*L):
which ops carry it, how the model scales them where it is not 16-byte aligned, and the file entry."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analytic.calibration import CalibrationError, bundled_path, from_dict, load_calibration
from analytic.costs import layer_ops
from analytic.efficiency import ceilings, op_time, unaligned_ratio
from analytic.hardware import get_gpu
from analytic.ops import GEMM, LD_A_T, LD_OUT, gemm, ld_alignment_bytes
from analytic.predict import predict
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.run import check_kernel_families
from perfbench.calibration.gemm_unaligned import unaligned_gemm_shapes


@pytest.fixture(scope="module")
def h100():
    return load_calibration(bundled_path("h100"), "h100")


def _samples(ratio_2b=3.0, ratio_8b=2.0):
    """Synthetic samples of the in_proj shape: aligned baseline 1 ms per 4K tokens, slower unaligned."""
    out = []
    for m in (1024, 4096, 16384, 65536):
        base = 1e-3 * m / 4096
        out += [(float(m), 16384, 4096, LD_OUT, 16, base), (m + 4.0, 16384, 4096, LD_OUT, 8, ratio_8b * base),
                (m + 1.0, 16384, 4096, LD_OUT, 2, ratio_2b * base)]
    return tuple(out)


def test_alignment_is_the_largest_power_of_two_of_the_bytes_up_to_16():
    assert ld_alignment_bytes(np.array([7500, 9000, 12500, 2501, 2502, 4, 8])).tolist() == [8, 16, 8, 2, 4, 8, 16]


def test_only_mamba1_prefill_lays_the_tokens_out_as_a_leading_dimension():
    b, L = np.array([3.0]), np.array([2500.0])
    for name, spec in BUILTIN_LAYERS.items():
        for phase in ("prefill", "decode"):
            marked = {op.name: op.shape["ld_layout"] for op in layer_ops(spec, phase, b, L)
                      if op.op_class == GEMM and "ld_alignment" in op.shape}
            expected = {"in_proj": LD_OUT, "dt_proj": LD_OUT, "out_proj": LD_A_T} if (name, phase) == ("mamba", "prefill") else {}
            assert marked == expected, (name, phase)
    ops = {op.name: op for op in layer_ops(BUILTIN_LAYERS["mamba"], "prefill", np.array([3.0, 10.0]), np.array([2500.0, 2500.0]))}
    assert ops["out_proj"].shape["ld_alignment"].tolist() == [8, 16]  # B*L, not L: 7500 vs 25000
    assert unaligned_gemm_shapes() == [(4096, 8192, LD_A_T), (8192, 256, LD_OUT), (16384, 4096, LD_OUT)]


def test_an_unaligned_gemm_takes_the_measured_ratio_to_the_same_call_aligned(h100):
    ceil = ceilings(get_gpu("h100"), dataclasses.replace(h100, gemm_unaligned=_samples()))
    m = np.array([8192.0, 8193.0, 8196.0, 8200.0])
    op = gemm("in_proj", m, 16384, 4096, ld=m)
    plain = gemm("in_proj", m, 16384, 4096)
    t, _ = op_time(op, ceil)
    t0, _ = op_time(plain, ceil)
    assert t[0] == pytest.approx(t0[0]) and t[3] == pytest.approx(t0[3])  # aligned: untouched
    assert t[1] / t0[1] == pytest.approx(3.0, rel=1e-3) and t[2] / t0[2] == pytest.approx(2.0, rel=1e-3)


def test_ratios_hold_at_the_ends_and_fall_back_to_the_nearest_shape(h100):
    ceil = ceilings(get_gpu("h100"), dataclasses.replace(h100, gemm_unaligned=_samples()))
    far = unaligned_ratio(np.array([9.0, 1e7 + 1]), 16384, 4096, LD_OUT, np.array([2, 2]), ceil)
    assert far.tolist() == pytest.approx([3.0, 3.0], rel=1e-3)
    other_shape = unaligned_ratio(np.array([4097.0]), 8192, 256, LD_OUT, np.array([2]), ceil)
    assert other_shape[0] == pytest.approx(3.0, rel=1e-3)
    unmeasured_layout = unaligned_ratio(np.array([4097.0]), 4096, 8192, LD_A_T, np.array([2]), ceil)
    assert unmeasured_layout[0] == 1.0


def test_bundled_files_measure_every_shape_and_alignment_and_slow_the_odd_ones():
    for gpu in ("h100", "h200"):
        cal = load_calibration(bundled_path(gpu), gpu)
        keys = {(n, k, lay, a) for _m, n, k, lay, a, _t in cal.gemm_unaligned}
        assert keys == {(n, k, lay, a) for n, k, lay in unaligned_gemm_shapes() for a in (2, 4, 8, 16)}
        ceil = ceilings(get_gpu(gpu), cal)
        for key, (_log_m, log_r) in ceil.gemm_unaligned.items():
            assert (log_r > 0).all(), key  # every unaligned sample ran slower than the same call aligned
        t = predict("mamba", "prefill", [3], [2500, 2504], gpu=gpu, calibration=cal)["time_ms"].to_numpy()
        assert t[0] > t[1]  # 4 tokens fewer, but B*L = 7500 is not a multiple of 8


def test_the_file_round_trips_the_samples_and_rejects_a_bad_one(h100):
    data = json.loads(json.dumps(dataclasses.replace(h100, gemm_unaligned=_samples()).to_dict()))
    assert from_dict(data).gemm_unaligned == _samples()
    for bad in ({"m": 5.0, "n": 1, "k": 1, "layout": "diag", "align_bytes": 2, "time_s": 1e-3},
                {"m": 5.0, "n": 1, "k": 1, "layout": LD_OUT, "align_bytes": 3, "time_s": 1e-3},
                {"m": 5.0, "n": 1, "k": 1, "layout": LD_OUT, "align_bytes": 2, "time_s": 0.0}):
        with pytest.raises(CalibrationError):
            from_dict({**data, "gemm_unaligned": [bad]}, "f.json")


def test_gemm_unaligned_is_a_remeasurable_name():
    check_kernel_families(["gemm_unaligned", "step"])
