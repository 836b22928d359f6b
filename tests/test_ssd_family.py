"""Mamba-2's SSD kernels over their hyper-parameters (analytic.families.ssd): the head-dim tile term,
the chunk scan's causal row blocks, the working-set term, their inertness without fitted values, and the fit recovering them from
synthetic samples drawn from a known truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analytic.calibration import bundled_path, from_dict, read_calibration_data
from analytic.costs import layer_ops
from analytic.efficiency import ClassCeiling, _roofline, ceilings, op_time, ssd_time
from analytic.families import ssd as ssd_family
from analytic.fit import _candidate, fit_ssd, sample_ops, spec_fields, ssd_grids
from analytic.hardware import get_gpu
from analytic.ops import SSD
from models.specs import Mamba2Spec
from perfbench.calibration.kernels import ssd_shapes


@pytest.fixture(scope="module")
def base():
    data = read_calibration_data(bundled_path("h100"))
    return ceilings(get_gpu("h100"), from_dict({**data, "op_classes": {}}, "fit"))


def _ssd_ops(spec, batch=2.0, seqlen=4096.0):
    return {op.name: op for op in layer_ops(spec, "prefill", np.array([batch]), np.array([seqlen])) if op.op_class == SSD}


def test_narrower_head_dims_cost_more_work_per_flop_in_the_head_dim_tiled_kernels():
    factors = [ssd_family.headdim_factor(_ssd_ops(Mamba2Spec(d_model=4096, headdim=p))["ssd_chunk_scan"], 0.5) for p in (32, 64, 128, 256)]
    assert factors[0] > factors[1] > factors[2] == factors[3] == 1.0
    assert factors[0] == pytest.approx(1.0 + 0.5 * 3)


def test_the_head_dim_term_leaves_the_other_ssd_kernels_and_weight_zero_alone():
    ops = _ssd_ops(Mamba2Spec(d_model=4096, headdim=32))
    assert ssd_family.headdim_factor(ops["ssd_state_passing"], 1.0) == 1.0
    assert ssd_family.headdim_factor(ops["ssd_chunk_state"], 0.0) == 1.0


def test_the_chunk_scan_runs_its_diagonal_row_blocks_whole():
    # per token and head dim: counted Q/2 + N, run (Q + min(M, Q))/2 + N
    def factor(chunk):
        return ssd_family.causal_block_factor(_ssd_ops(Mamba2Spec(d_model=4096, chunk_size=chunk))["ssd_chunk_scan"], 128)
    assert factor(128) == pytest.approx((128 + 128 + 256) / (128 + 256))
    assert factor(256) == pytest.approx((256 + 128 + 256) / (256 + 256))
    assert factor(64) == pytest.approx((64 + 64 + 256) / (64 + 256))  # one block, the whole square


def test_wider_chunks_run_fewer_masked_products_per_counted_one():
    factors = [ssd_family.causal_block_factor(_ssd_ops(Mamba2Spec(d_model=4096, chunk_size=q))["ssd_chunk_scan"], 128)
               for q in (128, 256, 512)]
    assert factors[0] > factors[1] > factors[2] > 1.0


def test_the_causal_block_term_leaves_the_other_ssd_kernels_and_block_zero_alone():
    ops = _ssd_ops(Mamba2Spec(d_model=4096, chunk_size=256))
    assert all(ssd_family.causal_block_factor(op, 128) == 1.0 for name, op in ops.items() if name != "ssd_chunk_scan")
    assert ssd_family.causal_block_factor(ops["ssd_chunk_scan"], 0.0) == 1.0


def test_the_work_factor_multiplies_the_head_dim_and_causal_block_terms():
    op = _ssd_ops(Mamba2Spec(d_model=4096, headdim=32))["ssd_chunk_scan"]
    extra = {ssd_family.HEADDIM_TILE_WEIGHT: 0.5, ssd_family.CAUSAL_BLOCK_M: 64.0}
    assert ssd_family.work_factor(op, extra) == pytest.approx(
        ssd_family.headdim_factor(op, 0.5) * ssd_family.causal_block_factor(op, 64.0))


def test_the_working_set_slows_a_call_only_once_its_chunk_states_outgrow_the_reach():
    spec = Mamba2Spec(d_model=4096)  # the 8B layer: 32 KB of fp32 chunk states per token
    lengths = np.array([8192.0, 32768.0, 65536.0, 131072.0])
    op = next(op for op in layer_ops(spec, "prefill", np.ones(4), lengths) if op.name == "ssd_chunk_state")
    factor = ssd_family.working_set_factor(op, 2e9, 0.2)
    assert factor[0] == 1.0 and factor[1] == 1.0  # 0.27 and 1.07 GB
    assert 1.0 < factor[2] < 1.2  # 2.1 GB: on the ramp
    assert factor[3] == pytest.approx(1.2)  # 4.3 GB: past twice the reach
    assert np.all(np.diff(factor) >= 0)


def test_an_ssd_ceiling_without_the_terms_times_the_plain_roofline():
    c = ClassCeiling(1e-6, 2e12, 1e14)
    for op in _ssd_ops(Mamba2Spec(d_model=4096, headdim=32, chunk_size=64), 8.0, 16384.0).values():
        roof, _ = _roofline(op, c, op.flops)
        assert float(ssd_time(op, c, 132)[0][0]) == pytest.approx(float((c.t0_s + roof)[0]))


def test_the_ssd_fit_recovers_its_terms_from_samples_drawn_from_them(base):
    t0s, bws, rates, _hosts = ssd_grids(base)
    truth = {"t0_s": float(t0s[4]), "bw_bytes_s": float(bws[20]), "flops_s": float(rates[20]),
             ssd_family.HEADDIM_TILE_WEIGHT: 0.5, ssd_family.CAUSAL_BLOCK_M: 128.0,
             ssd_family.WORKING_SET_BYTES: float(np.geomspace(0.5e9, 4e9, 7)[2]), ssd_family.WORKING_SET_SLOWDOWN: 0.2}
    true_ceil = replace(base, classes={**base.classes, SSD: _candidate(truth)})
    stubs = [s for s in ssd_shapes.plan() if s["batch"] in (3, 6)]
    samples = []
    for stub in stubs:
        spec = stub["spec"]
        sample = {**stub, "mode": "graph", "layer": spec.kind, "kind": spec.kind, "spec": spec_fields(spec)}
        sample["time_s"] = sum(float(op_time(op, true_ceil)[0][0]) for op in sample_ops(sample))
        samples.append(sample)
    fitted = fit_ssd(samples, base)
    for key in (ssd_family.HEADDIM_TILE_WEIGHT, ssd_family.CAUSAL_BLOCK_M, ssd_family.WORKING_SET_BYTES,
                ssd_family.WORKING_SET_SLOWDOWN):
        assert fitted[key] == pytest.approx(truth[key])
    assert fitted["fit_median_abs_err"] < 1e-3


def test_the_ssd_fit_refines_a_flop_rate_between_its_grid_points(base):
    t0s, bws, rates, _hosts = ssd_grids(base)
    between = float(np.sqrt(rates[20] * rates[21]))  # 2.9 % from either grid point
    truth = {"t0_s": float(t0s[4]), "bw_bytes_s": float(bws[20]), "flops_s": between,
             ssd_family.HEADDIM_TILE_WEIGHT: 0.5, ssd_family.CAUSAL_BLOCK_M: 128.0,
             ssd_family.WORKING_SET_BYTES: 2e9, ssd_family.WORKING_SET_SLOWDOWN: 0.0}
    true_ceil = replace(base, classes={**base.classes, SSD: _candidate(truth)})
    samples = []
    for stub in (s for s in ssd_shapes.plan() if s["batch"] == 6):
        spec = stub["spec"]
        sample = {**stub, "mode": "graph", "layer": spec.kind, "kind": spec.kind, "spec": spec_fields(spec)}
        sample["time_s"] = sum(float(op_time(op, true_ceil)[0][0]) for op in sample_ops(sample))
        samples.append(sample)
    fitted = fit_ssd(samples, base)
    assert fitted["fit_median_abs_err"] < 0.005
