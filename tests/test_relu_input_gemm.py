"""GEMMs fed a ReLU's output (the MLP's fc2): which ops carry it, how the model times them at the power
limit, and the calibration file entry."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analytic.calibration import CalibrationError, bundled_path, from_dict, load_calibration
from analytic.costs import layer_ops
from analytic.efficiency import ceilings, clock_ratio, op_time, relu_input_ratio
from analytic.hardware import get_gpu
from analytic.ops import GEMM, gemm
from analytic.predict import predict
from models.registry import BUILTIN_LAYERS
from models.specs import MLPSpec
from perfbench.calibration.run import check_kernel_families
from perfbench.calibration.gemm_relu_input import relu_input, relu_input_gemm_shapes


@pytest.fixture(scope="module")
def h100():
    return load_calibration(bundled_path("h100"), "h100")


def _samples(ratios=(0.95, 0.9, 0.92)):
    """fc2's shape at three M: 1 ms per 4K tokens on dense input, `ratios` of that on a ReLU's output."""
    return tuple((float(m), 4096, 16384, 1e-3 * m / 4096, r * 1e-3 * m / 4096) for m, r in zip((4096, 16384, 65536), ratios))


def test_only_the_mlp_fc2_after_a_relu_family_activation_reads_a_relu_output():
    b, L = np.array([2.0]), np.array([1024.0])
    for name, spec in BUILTIN_LAYERS.items():
        for phase in ("prefill", "decode"):
            marked = [op.name for op in layer_ops(spec, phase, b, L) if op.op_class == GEMM and op.shape.get("relu_input")]
            assert marked == (["fc2"] if name == "mlp" else []), (name, phase)
    for activation, marked in (("relu", True), ("gelu", False), ("silu", False)):
        spec = dataclasses.replace(BUILTIN_LAYERS["mlp"], activation=activation)
        assert isinstance(spec, MLPSpec)
        fc2 = [op for op in layer_ops(spec, "prefill", b, L) if op.name == "fc2"][0]
        assert bool(fc2.shape.get("relu_input")) is marked, activation
    assert relu_input_gemm_shapes() == [(4096, 16384)]


def test_a_power_limited_relu_input_gemm_takes_the_measured_ratio_and_a_streaming_one_does_not(h100):
    ceil = ceilings(get_gpu("h100"), dataclasses.replace(h100, gemm_relu_input=_samples()))
    m = np.array([2.0, 64.0, 4096.0, 16384.0, 32768.0, 65536.0, 262144.0])
    relu, dense = gemm("fc2", m, 4096, 16384, relu_input=True), gemm("fc2", m, 4096, 16384)
    (t_relu, code), (t_dense, code_dense) = op_time(relu, ceil), op_time(dense, ceil)
    assert (code == code_dense).all()
    ratio = t_relu / t_dense
    assert ratio[:2] == pytest.approx([1.0, 1.0])  # decode: weight-streaming, zeros save no bytes
    assert ratio[2:4] == pytest.approx([0.95, 0.9])
    assert 0.9 < ratio[4] < 0.92  # between measured M, interpolated over log M
    assert ratio[5:] == pytest.approx([0.92, 0.92])  # held past the last measured M
    # Same cycles, higher clock: its clock alone at the limit is the inverse of its time ratio.
    assert clock_ratio(relu, code, ceil)[3] == pytest.approx(1 / 0.9)
    assert clock_ratio(dense, code, ceil)[3] == 1.0
    # Without the section (older files, the datasheet) nothing changes.
    bare = ceilings(get_gpu("h100"), dataclasses.replace(h100, gemm_relu_input=()))
    assert (op_time(relu, bare)[0] == op_time(dense, bare)[0]).all()


def test_a_ratio_above_one_is_noise_and_never_slows_the_gemm(h100):
    ceil = ceilings(get_gpu("h100"), dataclasses.replace(h100, gemm_relu_input=_samples((1.04, 1.02, 0.95))))
    op = gemm("fc2", np.array([4096.0, 16384.0, 65536.0]), 4096, 16384, relu_input=True)
    _t, code = op_time(op, ceil)
    assert relu_input_ratio(op, code, ceil).tolist() == pytest.approx([1.0, 1.0, 0.95])


def test_a_relu_input_makes_the_mlp_prefill_faster_and_leaves_its_decode(h100):
    with_ratio = dataclasses.replace(h100, gemm_relu_input=_samples((0.9, 0.9, 0.9)))
    without = dataclasses.replace(h100, gemm_relu_input=())

    def ms(phase, batch, cal):
        return predict("mlp", phase, batch, [4096], gpu="h100", calibration=cal)["time_ms"].to_numpy()

    fast, slow = ms("prefill", [1, 4, 16], with_ratio), ms("prefill", [1, 4, 16], without)
    # fc2 is ~45 % of the layer: a real saving, but at most its 10 % off the layer
    assert (fast < 0.985 * slow).all() and (fast > 0.9 * slow).all()
    assert ms("decode", [1, 8], with_ratio) == pytest.approx(ms("decode", [1, 8], without))


def test_the_section_round_trips_and_bad_entries_are_one_line_errors(h100):
    data = json.loads(json.dumps(dataclasses.replace(h100, gemm_relu_input=_samples()).to_dict()))
    assert from_dict(data).gemm_relu_input == _samples()
    good = data["gemm_relu_input"][0]
    for bad in ({**good, "relu_s": -1.0}, {**good, "dense_s": 0.0}, {k: v for k, v in good.items() if k != "relu_s"},
                {**good, "m": "many"}):
        with pytest.raises(CalibrationError) as err:
            from_dict({**data, "gemm_relu_input": [bad]}, "f.json")
        assert "\n" not in str(err.value) and "f.json" in str(err.value)


def test_gemm_relu_input_is_a_remeasurable_name():
    check_kernel_families(["gemm_relu_input"])


def test_the_benchmark_input_is_half_zeros_like_the_layers():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    a = relu_input(torch, 256, 64, 512, device="cpu")
    assert a.shape == (256, 512) and a.dtype == torch.bfloat16 and (a >= 0).all()
    assert 0.45 < (a == 0).float().mean().item() < 0.55
