"""FlashAttention-2 decode's per-CTA softmax cost over head dim (analytic.families.attention_decode):
the term's direction, its inertness without a fitted value, and the fit recovering it from synthetic
samples drawn from a known truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analytic.calibration import bundled_path, from_dict, read_calibration_data
from analytic.costs import layer_ops
from analytic.efficiency import ceilings, op_time
from analytic.families import attention_decode as flash_decode
from analytic.fit import _candidate, fit_attention_decode, sample_ops, spec_fields
from analytic.hardware import get_gpu
from analytic.ops import ATTN_DECODE
from models.specs import AttentionSpec
from perfbench.calibration.kernels import attention_decode_shapes

TRUTH = {"t0_s": 5e-6, "bw_bytes_s": 3.0e12, "flops_s": 66.9e12, "bw_nosplit_bytes_s": 2.5e12,
         "bw_per_cta_bytes_s": 30e9, "ctas_per_sm": 2.0, "combine_s": 0.3e-6, "combine_per_split_s": 0.25e-6,
         "wave_s": 1.5e-6}


@pytest.fixture(scope="module")
def base():
    data = read_calibration_data(bundled_path("h100"))
    return ceilings(get_gpu("h100"), from_dict({**data, "op_classes": {}}, "fit"))


def _decode_op(head_dim: int, batch: float = 34.0, ctx: float = 3072.0):
    spec = AttentionSpec(d_model=2048, n_heads=2048 // head_dim, n_kv_heads=2048 // head_dim, head_dim=head_dim)
    return next(op for op in layer_ops(spec, "decode", np.array([batch]), np.array([ctx])) if op.op_class == ATTN_DECODE)


def test_a_cta_streams_slower_the_smaller_its_head_dim():
    rates = flash_decode.per_cta_rate(30e9, 2e-10, [64, 128, 256])
    assert rates[0] < rates[1] < rates[2] < 30e9
    assert flash_decode.per_cta_rate(30e9, 0.0, 64) == pytest.approx(30e9)


def test_attention_decode_without_the_score_term_times_as_before(base):
    with_zero = replace(base, classes={**base.classes, ATTN_DECODE: _candidate({**TRUTH, flash_decode.CTA_SCORE_S: 0.0})})
    without = replace(base, classes={**base.classes, ATTN_DECODE: _candidate(TRUTH)})
    op = _decode_op(64)
    assert float(op_time(op, with_zero)[0][0]) == float(op_time(op, without)[0][0])


def test_the_score_term_slows_head_dim_64_more_than_256(base):
    truth = replace(base, classes={**base.classes, ATTN_DECODE: _candidate({**TRUTH, flash_decode.CTA_SCORE_S: 2e-10})})
    blind = replace(base, classes={**base.classes, ATTN_DECODE: _candidate(TRUTH)})
    slowdown = {hd: float(op_time(_decode_op(hd), truth)[0][0]) / float(op_time(_decode_op(hd), blind)[0][0])
                for hd in (64, 256)}
    assert slowdown[64] > slowdown[256] >= 1.0


def test_the_decode_fit_recovers_the_cta_score_cost(base):
    score_s = float(np.geomspace(1e-11, 1e-9, 9)[6])
    truth = replace(base, classes={**base.classes, ATTN_DECODE: _candidate({**TRUTH, flash_decode.CTA_SCORE_S: score_s})})
    samples = []
    for stub in attention_decode_shapes.plan():
        spec = stub["spec"]
        sample = {**stub, "mode": "graph", "layer": spec.kind, "kind": spec.kind, "spec": spec_fields(spec)}
        op = next(op for op in sample_ops(sample) if op.op_class == ATTN_DECODE)
        samples.append({**sample, "time_s": float(op_time(op, truth)[0][0])})
    fitted = fit_attention_decode(samples, base)
    assert fitted[flash_decode.CTA_SCORE_S] == pytest.approx(score_s, rel=0.5)
    assert fitted["fit_median_abs_err"] < 0.02
