"""Kernel families as physical functions of their hyper-parameters: the terms, their fits on samples
spread over hyper-parameters (synthetic here: times drawn from a known truth, so a fit must recover it
and predict a held-out shape), the coverage of an op by the samples, and the calibration's time budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analytic.calibration import bundled_path, load_calibration
from analytic.costs import layer_ops
from analytic.coverage import FAMILY_AXES, INSIDE, OUTSIDE, SAMPLE, CoverageIndex, op_family, selective_scan_coverage
from analytic.efficiency import op_time
from analytic.families.attention_prefill import SCORE_RATE, ctas_per_sm
from analytic.families.selective_scan import BLOCK_SLOTS, STATE_OVERHEAD, scan_work
from analytic.families.state_update import block_rows
from analytic.fit import _candidate, _fit_scan_at, fit_attention_prefill, fit_class, fit_selective_scan, sample_ops, spec_fields
from analytic.hardware import get_gpu
from analytic.ops import ATTN_PREFILL, SELECTIVE_SCAN, STATE_UPDATE
from models.registry import BUILTIN_LAYERS
from models.specs import AttentionSpec, Mamba2Spec, MambaSpec
from perfbench.calibration.estimate import SECTIONS, estimate
from perfbench.calibration.kernels import FAMILIES
from perfbench.calibration.kernels import attention_prefill_shapes, selective_scan_shapes, state_update_shapes
from perfbench.calibration.run import samples_by_family


def _sample(stub: dict, time_s: float = 1.0) -> dict:
    spec = stub["spec"]
    return {**stub, "layer": spec.kind, "kind": spec.kind, "spec": spec_fields(spec), "time_s": time_s}


def _scan(spec, batch=2, seqlen=1000.0):
    return next(op for op in layer_ops(spec, "prefill", np.array([float(batch)]), np.array([seqlen]))
                if op.name == "selective_scan")


def _with_class(base, op_class, params):
    return replace(base, classes={**base.classes, op_class: _candidate(params)})


def test_scan_work_is_the_padded_flops_without_fitted_terms():
    op = _scan(BUILTIN_LAYERS["mamba"])
    assert float(scan_work(op)[0]) == 9.0 * float(op.shape["padded_elements"][0])


def test_the_scans_per_channel_share_weighs_more_at_a_small_state():
    small, large = _scan(MambaSpec(d_model=4096, d_state=16)), _scan(BUILTIN_LAYERS["mamba"])
    ratio_small = float(scan_work(small, 16.0)[0] / scan_work(small)[0])
    ratio_large = float(scan_work(large, 16.0)[0] / scan_work(large)[0])
    assert ratio_small == pytest.approx(2.0) and ratio_large == pytest.approx(144 / 128)


def test_a_partly_filled_last_wave_of_scan_blocks_costs_a_whole_wave():
    op = _scan(MambaSpec(d_model=768, d_state=16, dt_rank=48), batch=1)  # 1536 blocks
    assert float(scan_work(op, 0.0, 1024.0)[0] / scan_work(op)[0]) == pytest.approx(2048 / 1536)
    assert float(scan_work(op, 0.0, 1536.0)[0]) == pytest.approx(float(scan_work(op)[0]))


def test_the_scan_fit_recovers_a_per_channel_share_and_predicts_an_unsampled_d_state(h100_data, base):
    reference = h100_data["samples"]["selective_scan"]
    truth = _fit_scan_at(reference, [sample_ops(s)[0] for s in reference], base, 8.0, 0.0)
    true_ceil = _with_class(base, SELECTIVE_SCAN, truth)
    spread = [_sample(stub) for stub in selective_scan_shapes.plan()]
    spread = [dict(s, time_s=float(op_time(sample_ops(s)[0], true_ceil)[0][0])) for s in spread]
    fitted = fit_selective_scan(reference + spread, base)
    assert fitted[STATE_OVERHEAD] == 8.0 and fitted[BLOCK_SLOTS] == 0.0
    held_out = _scan(MambaSpec(d_model=3072, d_state=48, dt_rank=192), batch=3, seqlen=2500.0)
    fitted_ceil = _with_class(base, SELECTIVE_SCAN, fitted)
    assert float(op_time(held_out, fitted_ceil)[0][0]) == pytest.approx(float(op_time(held_out, true_ceil)[0][0]),
                                                                         rel=1e-6)


def test_only_the_8b_scan_samples_keep_their_fit_where_no_other_spec_was_measured(h100_data, base):
    fitted = fit_selective_scan(h100_data["samples"]["selective_scan"], base)
    assert STATE_OVERHEAD not in fitted and BLOCK_SLOTS not in fitted


def test_shared_memory_holds_one_flash_cta_at_head_dim_256_and_more_at_128():
    smem = get_gpu("h100").smem_per_sm_bytes
    assert float(ctas_per_sm(256, 2.0, smem)) == 1.0
    assert float(ctas_per_sm(128, 2.0, smem)) == 2.0
    assert float(ctas_per_sm(64, 8.0, smem)) == 4.0


def test_the_prefill_fit_splits_a_tile_into_flops_and_softmax_scores(h100_data, base):
    truth = {"t0_s": base.graph_kernel_s, "bw_bytes_s": base.copy_bw_bytes_s, "flops_s": 400e12, "host_s": 20e-6,
             "ctas_per_sm": 2.0, SCORE_RATE: 40e12}
    true_ceil = _with_class(base, ATTN_PREFILL, truth)
    stubs = [*attention_prefill_shapes.plan(),
             *({"spec": BUILTIN_LAYERS["attention"], "phase": "prefill", "batch": b, "seqlen": L,
                "ops": ["flash_attention"]} for b, L in ((1, 384), (3, 1024), (6, 6144)))]
    samples = [dict(_sample(stub), mode="eager") for stub in stubs]
    samples = [dict(s, time_s=truth["host_s"] + float(op_time(sample_ops(s)[0], true_ceil)[0][0])) for s in samples]
    fitted = fit_attention_prefill(samples, base)
    assert fitted["ctas_per_sm"] == 2.0
    assert fitted["flops_s"] == pytest.approx(400e12, rel=0.02)
    assert fitted[SCORE_RATE] == pytest.approx(40e12, rel=0.05)


def test_a_state_update_program_holds_about_512_state_elements():
    assert [block_rows(n) * n for n in (16, 32, 64, 128)] == [512] * 4
    assert block_rows(256) == 4


def test_the_state_update_fit_finds_its_latency_per_wave_of_programs(base):
    truth = {"t0_s": 2e-6, "bw_bytes_s": 2.0e12, "flops_s": 3e12, "wave_s": 1.0e-6, "ctas_per_sm": 8.0}
    true_ceil = _with_class(base, STATE_UPDATE, truth)
    stubs = [s for s in state_update_shapes.plan() if s["spec"].kind == "mamba2"]
    samples = [_sample(stub) for stub in stubs]
    samples = [dict(s, time_s=float(op_time(sample_ops(s)[0], true_ceil)[0][0])) for s in samples]
    fitted = fit_class(STATE_UPDATE, samples, base)
    assert "wave_s" in fitted
    fitted_ceil = _with_class(base, STATE_UPDATE, fitted)
    held_out = next(op for op in layer_ops(Mamba2Spec(d_model=3072, headdim=96, d_state=96, ngroups=4), "decode",
                                           np.array([20.0]), np.array([100.0])) if op.op_class == STATE_UPDATE)
    assert float(op_time(held_out, fitted_ceil)[0][0]) == pytest.approx(float(op_time(held_out, true_ceil)[0][0]),
                                                                         rel=0.03)


def test_every_planned_sample_records_the_exact_spec_it_runs():
    for family in FAMILIES.values():
        for stub in getattr(family, "plan", list)():
            sample = _sample(stub)
            assert type(stub["spec"])(**sample["spec"]) == stub["spec"]
            ops = sample_ops(sample)
            assert ops and all(op.name in stub["ops"] for op in ops)
            timed = next((op for op in ops if op.shape.get("family")), ops[0])  # as samples_by_family files it
            assert set(FAMILY_AXES[op_family(timed)]) == set(timed.shape["hparams"])


def test_samples_of_a_shape_family_fit_with_their_class_or_family():
    scan = _sample(selective_scan_shapes.plan()[0])
    ssu1 = _sample(next(s for s in state_update_shapes.plan() if s["spec"].kind == "mamba"))
    grouped = samples_by_family({"selective_scan_shapes": [scan], "state_update_shapes": [ssu1]})
    assert grouped == {"selective_scan": [scan], "state_update_mamba1": [ssu1]}


def test_an_op_is_on_a_sample_inside_or_outside_the_sampled_hyperparameters(h100_data):
    bundled = load_calibration(bundled_path("h100"), "h100")
    assert selective_scan_coverage(_scan(BUILTIN_LAYERS["mamba"]), bundled) == SAMPLE
    assert selective_scan_coverage(_scan(MambaSpec(d_model=4096, d_state=512)), bundled) == OUTSIDE  # sampled 16-256
    spread = [_sample(stub) for stub in selective_scan_shapes.plan()]
    widened = CoverageIndex.from_calibration(replace(bundled, samples={**bundled.samples, "selective_scan_shapes": spread}))
    assert widened.of(_scan(MambaSpec(d_model=4096, d_state=48))) == INSIDE
    assert widened.of(_scan(MambaSpec(d_model=4096, d_state=512))) == OUTSIDE


def test_a_family_coverage_refuses_another_familys_op():
    bundled = load_calibration(bundled_path("h100"), "h100")
    attention = next(op for op in layer_ops(AttentionSpec(d_model=4096), "prefill", np.array([1.0]), np.array([64.0]))
                     if op.op_class == ATTN_PREFILL)
    with pytest.raises(ValueError, match="not selective_scan"):
        selective_scan_coverage(attention, bundled)


def test_the_default_calibration_is_estimated_within_20_minutes_on_the_h100(h100_data):
    figures = estimate(h100_data)
    assert set(figures) == set(SECTIONS) | set(FAMILIES) | {"total"}
    assert all(seconds > 0 for seconds in figures.values())
    assert figures["total"] <= 20 * 60
