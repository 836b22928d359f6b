"""Mamba-3 and Gated DeltaNet costs read from their kernels' wrappers, and the `mamba3_shapes` /
`gdn_shapes` calibration families over their hyper-parameters (CPU: costs, plans, sample routing,
file round trip, and a fit on synthetic samples; the families' GPU run is in test_new_mixers_gpu.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from analytic.calibration import load_calibration, write_calibration_data
from analytic.costs import layer_ops
from analytic.costs.gdn import STATE_PASSING_BV
from analytic.coverage import INSIDE, OUTSIDE, CoverageIndex
from analytic.efficiency import ClassCeiling, host_time, op_time
from analytic.families import chunk_programs
from analytic.families.chunk_programs import CHUNK_LATENCY, PROGRAM_BUDGET, wave_fill
from analytic.fit import fit_class, sample_ops
from analytic.ops import GDN_CHUNK, GDN_STEP, MAMBA3_CHUNK, MAMBA3_STEP
from models.registry import BUILTIN_LAYERS, load_models_file
from models.specs import GatedDeltaNetSpec, Mamba3Spec
from perfbench.calibration.estimate import estimate
from perfbench.calibration.kernels import FAMILIES, gdn_shapes, mamba3_shapes
from perfbench.calibration.kernels.common import spec_sample
from perfbench.calibration.run import samples_by_family

MAMBA3, GDN = BUILTIN_LAYERS["mamba3"], BUILTIN_LAYERS["gdn"]


def _ops(spec, phase, batch, seqlen=2048.0):
    return {op.name: op for op in layer_ops(spec, phase, np.array([float(batch)]), np.array([float(seqlen)]))}


def _kernels(ops: dict) -> int:
    return int(sum(int(np.asarray(op.kernels).ravel()[0]) for op in ops.values()))


def _sample(stub: dict, time_s: float = 1e-3) -> dict:
    return {**spec_sample(stub["spec"], {k: v for k, v in stub.items() if k != "spec"}), "time_s": time_s}


def test_sequence_long_programs_pay_for_idle_slots():
    assert wave_fill(132, 132.0) == pytest.approx(1.0)
    assert wave_fill(66, 132.0) == pytest.approx(2.0)  # half the SMs idle: twice the time of a full GPU
    assert wave_fill(133, 132.0) == pytest.approx(264 / 133)  # a second wave of one program


def test_mamba3_prefill_stores_each_chunks_state_after_zeroing_it(monkeypatch):
    import analytic.costs.mamba3 as costs

    chunks, H, P, N = 2 * 4096 / MAMBA3.chunk_size, MAMBA3.nheads, MAMBA3.headdim, MAMBA3.d_state
    stored = _ops(MAMBA3, "prefill", 2, 4096)
    monkeypatch.setattr(costs, "STORES_BACKWARD_STATES", False)
    inference_only = _ops(MAMBA3, "prefill", 2, 4096)
    assert float(stored["chunk_state_zeros"].bytes_[0]) >= 2 * chunks * H * P * N and \
        "chunk_state_zeros" not in inference_only
    extra = float(stored["mamba3_siso_fwd"].bytes_[0] - inference_only["mamba3_siso_fwd"].bytes_[0])
    assert extra >= 2 * chunks * H * P * N + 2 * 2 * 4096 * H * P  # the states and Out_v


def test_mamba3_prefill_launches_the_wrappers_21_kernels():
    assert _kernels(_ops(MAMBA3, "prefill", 1)) == 21


def test_mamba3_decode_skips_three_copies_at_batch_one():
    assert _kernels(_ops(MAMBA3, "decode", 8)) == 20
    assert _kernels(_ops(MAMBA3, "decode", 1)) == 17


def test_mamba3_chunk_kernel_runs_one_program_per_head_and_sequence():
    assert float(_ops(MAMBA3, "prefill", 3)["mamba3_siso_fwd"].shape["program_ctas"][0]) == 3 * MAMBA3.nheads


def test_gdn_prefill_counts_fla_input_copies():
    ops = _ops(GDN, "prefill", 2)
    assert int(ops["fla_input_copies"].kernels) == 6
    assert float(ops["gdn_chunk_h"].shape["program_ctas"][0]) == 2 * GDN.n_v_heads * GDN.head_v_dim / STATE_PASSING_BV


def test_gdn_decode_copies_nothing_at_batch_one():
    assert int(np.asarray(_ops(GDN, "decode", 1)["fla_input_copies"].kernels).ravel()[0]) == 0
    assert float(_ops(GDN, "decode", 1)["fla_input_copies"].bytes_[0]) == 0.0
    assert int(np.asarray(_ops(GDN, "decode", 4)["fla_input_copies"].kernels).ravel()[0]) == 6


def test_kernel_counts_that_vary_over_the_grid_predict_each_point_as_alone():
    from analytic.predict import predict

    both = predict(GDN, "decode", [1, 8], [1024])
    alone = [float(predict(GDN, "decode", [b], [1024])["time_ms"].iloc[0]) for b in (1, 8)]
    assert both["time_ms"].tolist() == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize("name", ["mamba3_shapes", "gdn_shapes"])
def test_shape_families_are_registered_for_remeasure(name):
    assert name in FAMILIES and FAMILIES[name].CLASSES == (name,)


def test_mamba3_shapes_plan_spans_heads_state_groups_and_program_counts():
    plan = mamba3_shapes.plan()
    prefill = [s for s in plan if s["phase"] == "prefill"]
    assert len(prefill) == len(mamba3_shapes.SPECS) * len(mamba3_shapes.SIZES)
    assert {s["spec"].d_state for s in prefill} == {64, 128}
    assert len({s["spec"].nheads for s in prefill}) >= 3 and len({s["spec"].ngroups for s in prefill}) >= 2
    programs = {s["batch"] * s["spec"].nheads for s in prefill}
    assert min(programs) < 132 < max(programs)


def test_mamba3_shapes_keeps_its_autotuning_keys_few():
    assert len(mamba3_shapes.autotune_keys(mamba3_shapes.SPECS)) == 2
    assert mamba3_shapes.SETUP_S == mamba3_shapes.KEY_SETUP_S  # the 8B key is the mamba3 family's


def test_gdn_shapes_plan_spans_head_counts_and_head_dims():
    specs = {s["spec"] for s in gdn_shapes.plan()}
    assert {s.head_k_dim for s in specs} == {128, 256}
    assert len({s.n_v_heads // s.n_k_heads for s in specs}) == 2


def test_shape_families_estimate_their_gpu_time_with_autotuning(h100_data):
    figures = estimate(h100_data, ["mamba3_shapes", "gdn_shapes"])
    assert figures["mamba3_shapes"] > mamba3_shapes.SETUP_S
    assert figures["gdn_shapes"] > gdn_shapes.SETUP_S


def test_shape_samples_fit_with_their_kernel_families():
    m3 = [_sample(s) for s in mamba3_shapes.plan()]
    gd = [_sample(s) for s in gdn_shapes.plan()]
    grouped = samples_by_family({"mamba3_shapes": m3, "gdn_shapes": gd})
    assert {k: len(v) for k, v in grouped.items()} == {
        MAMBA3_CHUNK: sum(s["phase"] == "prefill" for s in m3), MAMBA3_STEP: sum(s["phase"] == "decode" for s in m3),
        GDN_CHUNK: sum(s["phase"] == "prefill" for s in gd), GDN_STEP: sum(s["phase"] == "decode" for s in gd)}


def test_shape_samples_survive_a_calibration_file_round_trip(tmp_path, h100_data):
    samples = {**h100_data["samples"], "mamba3_shapes": [_sample(s) for s in mamba3_shapes.plan()]}
    path = write_calibration_data(tmp_path / "h100.json.gz", {**h100_data, "samples": samples})
    cal = load_calibration(path, "h100")
    assert cal.samples["mamba3_shapes"] == samples["mamba3_shapes"]
    index = CoverageIndex.from_calibration(cal)
    inside = next(op for op in layer_ops(Mamba3Spec(d_model=2048, d_state=96), "prefill", np.array([1.0]),
                                         np.array([512.0])) if op.name == "mamba3_siso_fwd")
    outside = next(op for op in layer_ops(Mamba3Spec(d_model=2048, d_state=256), "prefill", np.array([1.0]),
                                          np.array([512.0])) if op.name == "mamba3_siso_fwd")
    assert index.of(inside) == INSIDE and index.of(outside) == OUTSIDE


def test_chunk_fit_recovers_the_program_budget_latency_and_rate_from_synthetic_samples(base):
    d128 = chunk_programs.program_bytes(64 * 128 + 64 * 64, 64 * (2 * 128 + 64), 2)
    truth = ClassCeiling(4e-6, 2.0e12, 50e12, {PROGRAM_BUDGET: 1.5 * d128, CHUNK_LATENCY: 3e-6}, 30e-6)
    ceil = replace(base, classes={**base.classes, MAMBA3_CHUNK: truth})
    samples = []
    for stub in mamba3_shapes.plan():
        if stub["phase"] != "prefill":
            continue
        sample, ops = _sample(stub), sample_ops(_sample(stub))
        gpu_s = sum(float(op_time(op, ceil)[0][0]) for op in ops)
        samples.append({**sample, "time_s": max(gpu_s, sum(host_time(op, ceil) for op in ops))})
    fitted = fit_class(MAMBA3_CHUNK, samples, base)
    for footprint in sorted(_footprints(samples)):  # the same programs an SM at every sampled d_state
        assert chunk_programs.resident_programs(footprint, fitted[PROGRAM_BUDGET]) == \
            chunk_programs.resident_programs(footprint, truth.extra[PROGRAM_BUDGET])
    assert fitted[CHUNK_LATENCY] == pytest.approx(3e-6, rel=0.15)
    assert fitted["flops_s"] == pytest.approx(truth.flops_s, rel=0.15)
    assert fitted["fit_median_abs_err"] < 0.03


def _footprints(samples) -> set:
    return {float(op.shape["program_bytes"]) for s in samples for op in sample_ops(s)
            if chunk_programs.sequence_programs(op)}


def test_an_sm_holds_fewer_sequence_programs_as_their_state_grows():
    ops = {n: _ops(replace(MAMBA3, d_state=n), "prefill", 8)["mamba3_siso_fwd"] for n in (32, 64, 128, 256)}
    budget = 1.2e5
    slots = [float(chunk_programs.resident_programs(ops[n].shape["program_bytes"], budget)) for n in (32, 64, 128, 256)]
    assert slots == sorted(slots, reverse=True) and slots[-1] == 1.0 and slots[0] > slots[-1]


def test_a_program_past_the_resident_slots_adds_a_whole_wave():
    op = _ops(MAMBA3, "prefill", 1, 4096)["mamba3_siso_fwd"]
    budget = float(op.shape["program_bytes"]) * 1.01  # one program an SM
    one = chunk_programs.sequence_program_time(op, op.flops, 1e30, budget, 3e-6, sm_count=132)
    two = chunk_programs.sequence_program_time(op, op.flops, 1e30, budget, 3e-6, sm_count=MAMBA3.nheads - 1)
    assert float(one[0]) == pytest.approx(4096 / MAMBA3.chunk_size * 3e-6)  # one wave: each chunk's latency in turn
    assert float(two[0]) == pytest.approx(2 * float(one[0]))


def test_a_gdn_spec_off_the_spread_still_costs_its_kernels():
    spec = GatedDeltaNetSpec(d_model=1536, n_k_heads=12, n_v_heads=24)
    assert all(float(op.flops[0]) >= 0 and float(op.bytes_[0]) > 0 for op in _ops(spec, "prefill", 2).values())


def test_held_out_new_mixer_configurations_are_off_every_calibrated_spec():
    held = load_models_file(Path(__file__).resolve().parents[1] / "benchmarks" / "whatif" / "new_mixers.toml")
    fitted = set(mamba3_shapes.SPECS) | set(gdn_shapes.SPECS) | {MAMBA3, GDN}
    assert len(held.layers) >= 4 and {s.kind for s in held.layers.values()} == {"mamba3", "gdn"}
    assert not set(held.layers.values()) & fitted
    assert {letter for m in held.models.values() for letter in m.pattern} >= {"3", "G"}
