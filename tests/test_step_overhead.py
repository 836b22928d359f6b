"""What a decode step's CUDA graph adds to its kernels (analytic.efficiency.step_overhead_s), which of
a layer's kernels meet a cold L2 (analytic.ops.cold_kernels), and the step chains' fit and file entry."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analytic.calibration import CalibrationError, bundled_path, from_dict, load_calibration
from analytic.composition import CountedOp, step_ops
from analytic.costs import layer_ops
from analytic.efficiency import ceilings, step_overhead_s
from analytic.hardware import get_gpu
from analytic.ops import cold_kernels
from analytic.predict import predict
from models.registry import BUILTIN_LAYERS, BUILTIN_MODELS
from perfbench.calibration.run import check_kernel_families
from perfbench.calibration.step import fit_step_overhead

US = 1e-6
STEP = {"base_s": 4 * US, "kernel_s": 0.2 * US, "cold_kernel_s": 0.5 * US}


@pytest.fixture(scope="module")
def h100():
    return load_calibration(bundled_path("h100"), "h100")


def _decode_ops(layer, batch=16):
    b, L = np.array([float(batch)]), np.array([4096.0])
    return [CountedOp(layer, op, 1) for op in layer_ops(BUILTIN_LAYERS[layer], "decode", b, L)]


def _chains(base, warm, cold, noise=0.0):
    """Synthetic samples: excess = base + per-kernel cost, the layout measure_step_overhead writes."""
    out = [{"chain": "gemv2", "kernels": 2, "cold_kernels": 0, "sum_s": 100 * US, "step_s": 100 * US + base}]
    for j in (1, 2, 4, 8, 16):
        out.append({"chain": f"warm{j}", "kernels": 2 + j, "cold_kernels": 0, "sum_s": 100 * US,
                    "step_s": 100 * US + base + warm * j + noise * (-1) ** j})
        out.append({"chain": f"cold{j}", "kernels": 2 + j, "cold_kernels": j, "sum_s": 100 * US,
                    "step_s": 100 * US + base + cold * j})
    return out


def test_fit_recovers_the_base_and_both_per_kernel_costs():
    fit = fit_step_overhead(_chains(4 * US, 0.15 * US, 0.5 * US))
    assert fit["base_s"] == pytest.approx(4 * US)
    assert fit["kernel_s"] == pytest.approx(0.15 * US)
    assert fit["cold_kernel_s"] == pytest.approx(0.5 * US)


def test_fit_takes_the_base_from_the_line_not_one_noisy_chain():
    samples = _chains(4 * US, 0.15 * US, 0.5 * US, noise=0.3 * US)
    samples[0]["step_s"] -= 1.0 * US  # the two-GEMV chain alone reads 1 us low
    assert fit_step_overhead(samples)["base_s"] > 3.5 * US


def test_fit_never_returns_negative_costs_and_needs_two_warm_lengths():
    fit = fit_step_overhead(_chains(-1 * US, -0.2 * US, -0.3 * US))
    assert min(fit.values()) >= 0
    with pytest.raises(ValueError, match="two lengths"):
        fit_step_overhead([s for s in _chains(4 * US, 0.1 * US, 0.5 * US) if s["chain"] in ("gemv2", "cold4")])


def test_cold_kernels_are_the_ones_that_touch_state_calibrated_warm():
    def cold(layer):
        return {c.op.name: cold_kernels(c.op) for c in _decode_ops(layer) if cold_kernels(c.op)}
    assert cold("mlp") == {}  # relu and square read fc1's output, still in L2
    assert cold("attention") == {"kv_append": 2}
    assert cold("attention-mha") == {"rope": 8, "kv_append": 2}  # 4 of each tensor's 7 RoPE kernels read cos/sin
    assert cold("mamba") == {"A_prep": 1} and cold("mamba2") == {"dt_A_prep": 1, "gated_rmsnorm": 1}
    for layer in BUILTIN_LAYERS:
        for c in _decode_ops(layer):
            assert 0 <= cold_kernels(c.op) <= c.op.kernels


def test_overhead_grows_with_kernels_and_more_with_cold_ones(h100):
    ceil = ceilings(get_gpu("h100"), dataclasses.replace(h100, step=STEP))
    mlp, attn, mha = (step_overhead_s(_decode_ops(n), ceil) for n in ("mlp", "attention", "attention-mha"))
    assert mlp == pytest.approx(4 * US + 2 * 0.2 * US)  # fc1, relu, square, fc2: two further warm kernels
    assert attn == pytest.approx(4 * US + 0.5 * US * 2 + 0.2 * US * 1)  # kv_append cold, the attention kernel warm
    assert mlp < attn < mha
    everything_cold = ceilings(get_gpu("h100"), dataclasses.replace(h100, step={**STEP, "kernel_s": 0.5 * US}))
    assert step_overhead_s(_decode_ops("attention-mha"), everything_cold) >= mha


def test_a_model_pays_the_base_once_and_every_layer_kernel(h100):
    ceil = ceilings(get_gpu("h100"), dataclasses.replace(h100, step=STEP))
    spec = BUILTIN_MODELS["mamba2-hybrid-8b"]
    ops = step_ops("model", spec, "decode", np.array([4.0]), np.array([2048.0]))
    kernels = sum(c.op.kernels * c.count for c in ops)
    cold = sum(cold_kernels(c.op) * c.count for c in ops)
    assert cold >= len(spec.pattern)  # at least every block's residual add and norm
    assert step_overhead_s(ops, ceil) == pytest.approx(4 * US + 0.2 * US * (kernels - 2 - cold) + 0.5 * US * cold)


def test_without_step_chains_or_calibration_the_old_figures_hold(h100):
    old = ceilings(get_gpu("h100"), dataclasses.replace(h100, step={}))
    assert step_overhead_s(_decode_ops("mamba"), old) == old.graph_replay_s
    datasheet = ceilings(get_gpu("h100"), None)
    assert step_overhead_s(_decode_ops("mamba"), datasheet) == datasheet.graph_replay_s == 0.0


def test_predict_adds_the_step_overhead_to_graph_decode_only(h100):
    with_step = dataclasses.replace(h100, step=STEP)
    no_replay = dataclasses.replace(h100, step={}, launch={**h100.launch, "graph_replay_s": 0.0,
                                                           "graph_launch_period_s": 0.0})
    args = ("attention", "decode", [8], [4096])
    stepped = predict(*args, gpu="h100", calibration=with_step)["time_ms"].iloc[0]
    bare = predict(*args, gpu="h100", calibration=no_replay)["time_ms"].iloc[0]
    assert (stepped - bare) * 1e-3 == pytest.approx(4 * US + 0.5 * US * 2 + 0.2 * US, rel=1e-6)
    eager = predict(*args, gpu="h100", calibration=with_step, graphs=False)["time_ms"].iloc[0]
    assert eager == pytest.approx(predict(*args, gpu="h100", calibration=no_replay, graphs=False)["time_ms"].iloc[0])


def test_bundled_files_carry_measured_step_chains():
    for gpu in ("h100", "h200"):
        cal = load_calibration(bundled_path(gpu), gpu)
        assert cal.step["cold_kernel_s"] > cal.step["kernel_s"] >= 0 and cal.step["base_s"] > 0
        assert cal.step == {**cal.step, **fit_step_overhead(cal.step["samples"])}  # the stored fit is its samples'


def test_the_file_round_trips_the_section_and_rejects_a_bad_one(h100, tmp_path):
    data = json.loads(json.dumps(dataclasses.replace(h100, step=STEP).to_dict()))
    assert from_dict(data).step == STEP
    for bad in ({"base_s": 4e-6, "kernel_s": 1e-7}, {**STEP, "cold_kernel_s": -1e-7}, {**STEP, "base_s": "x"}):
        with pytest.raises(CalibrationError, match="step"):
            from_dict({**data, "step": bad}, "f.json")


def test_step_is_a_remeasurable_name():
    check_kernel_families(["step", "writeback"])
