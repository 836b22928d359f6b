"""Scaling laws of the analytic model, as properties over (batch, seqlen) drawn by hypothesis.

Each test states one law the papers (or the kernels) imply and checks it on the cost model's
per-operation FLOPs and bytes, or on the predicted times.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analytic.calibration import Calibration
from analytic.costs import layer_ops
from analytic.ops import ATTN_DECODE, ATTN_PREFILL, GEMM, SELECTIVE_SCAN, total
from analytic.predict import predict
from models.registry import BUILTIN_LAYERS, PAPER_MODELS, VOCAB, get_layer
from models.specs import AttentionSpec

E = 2  # bf16 bytes
LAYERS = sorted(BUILTIN_LAYERS)
SSM_LAYERS = ["mamba", "mamba2"]
ATTENTION_LAYERS = ["attention", "attention-mha"]

FAST = settings(max_examples=40, deadline=None)
batches = st.integers(min_value=1, max_value=512)
seqlens = st.integers(min_value=1, max_value=131072)


def ops(spec, phase, b, L):
    return layer_ops(spec, phase, np.array([float(b)]), np.array([float(L)]))


def flops(spec, phase, b, L) -> float:
    return float(total(ops(spec, phase, b, L), "flops")[0])


def bytes_(spec, phase, b, L) -> float:
    return float(total(ops(spec, phase, b, L), "bytes_")[0])


def core(spec, phase, b, L, op_class):
    return next(op for op in ops(spec, phase, b, L) if op.op_class == op_class)


# ---------------------------------------------------------------------------------------------
# Prefill: attention ~L^2, SSM ~L


@FAST
@given(b=batches, L=st.integers(min_value=1, max_value=65536), name=st.sampled_from(ATTENTION_LAYERS))
def test_attention_core_prefill_flops_ratio_for_doubled_length_approaches_4(b, L, name):
    spec = get_layer(name)
    f1 = float(core(spec, "prefill", b, L, ATTN_PREFILL).flops[0])
    f2 = float(core(spec, "prefill", b, 2 * L, ATTN_PREFILL).flops[0])
    ratio = f2 / f1
    assert 3.0 <= ratio < 4.0
    # the gap to 4 shrinks like 1/L: causal L(L+1)/2 pairs -> 4 - ratio = 2/(L+1)
    assert 4.0 - ratio == pytest.approx(2.0 / (L + 1), rel=1e-9)


@FAST
@given(b=batches, L=st.integers(min_value=256, max_value=65536), name=st.sampled_from(ATTENTION_LAYERS))
def test_attention_layer_prefill_flops_grow_faster_than_linearly(b, L, name):
    spec = get_layer(name)
    r1 = flops(spec, "prefill", b, 2 * L) / flops(spec, "prefill", b, L)
    r2 = flops(spec, "prefill", b, 4 * L) / flops(spec, "prefill", b, 2 * L)
    assert 2.0 < r1 < r2 < 4.0  # projections ~L, core ~L^2: the ratio climbs towards 4


@FAST
@given(b=batches, n_chunks=st.integers(min_value=1, max_value=512))
def test_mamba2_prefill_flops_double_exactly_for_chunk_multiple_lengths(b, n_chunks):
    spec = get_layer("mamba2")
    L = n_chunks * spec.chunk_size
    assert flops(spec, "prefill", b, 2 * L) == pytest.approx(2 * flops(spec, "prefill", b, L), rel=1e-12)


@FAST
@given(b=batches, L=seqlens)
def test_mamba2_prefill_flops_at_most_double_for_any_length(b, L):
    spec = get_layer("mamba2")
    assert flops(spec, "prefill", b, 2 * L) <= 2 * flops(spec, "prefill", b, L) * (1 + 1e-12)


@FAST
@given(b=batches, L=st.integers(min_value=1, max_value=40000))
def test_mamba1_prefill_flops_are_affine_in_length(b, L):
    # Only A = -exp(A_log) is independent of L; everything else is per token: equal increments.
    spec = get_layer("mamba")
    f1, f2, f3 = (flops(spec, "prefill", b, k * L) for k in (1, 2, 3))
    assert f3 - f2 == pytest.approx(f2 - f1, rel=1e-9)
    assert 1.99 < f2 / f1 <= 2.0  # the A preparation (d_inner * d_state, once) is all that lags


@FAST
@given(b=batches, L=seqlens, name=st.sampled_from(LAYERS))
def test_prefill_flops_and_bytes_grow_with_length(b, L, name):
    spec = get_layer(name)
    assert flops(spec, "prefill", b, L + 1) > flops(spec, "prefill", b, L)
    assert bytes_(spec, "prefill", b, L + 1) > bytes_(spec, "prefill", b, L)


# ---------------------------------------------------------------------------------------------
# Decode: attention reads a cache that grows with context; SSM state does not


@FAST
@given(b=batches, L=seqlens, extra=st.integers(min_value=1, max_value=65536),
       name=st.sampled_from(ATTENTION_LAYERS))
def test_attention_decode_bytes_grow_by_one_cache_read_per_context_token(b, L, extra, name):
    spec = get_layer(name)
    grown = bytes_(spec, "decode", b, L + extra) - bytes_(spec, "decode", b, L)
    # each extra cached token is read once (K and V of the KV heads), never rewritten
    assert grown == pytest.approx(b * extra * spec.kv_bytes_per_token(E), rel=1e-9)


@FAST
@given(b=batches, L1=seqlens, L2=seqlens, name=st.sampled_from(SSM_LAYERS + ["mlp"]))
def test_ssm_and_mlp_decode_costs_do_not_depend_on_context(b, L1, L2, name):
    spec = get_layer(name)
    assert bytes_(spec, "decode", b, L1) == bytes_(spec, "decode", b, L2)
    assert flops(spec, "decode", b, L1) == flops(spec, "decode", b, L2)


@FAST
@given(b=batches, L=seqlens, kv=st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_gqa_decode_cache_reads_scale_with_kv_heads_not_query_heads(b, L, kv):
    base = AttentionSpec(d_model=4096, n_heads=32, n_kv_heads=kv, head_dim=128)
    more_queries = AttentionSpec(d_model=4096, n_heads=64, n_kv_heads=kv, head_dim=128)
    reads = float(core(base, "decode", b, L, ATTN_DECODE).shape["kv_bytes"][0])
    assert reads == E * b * (L + 1) * 2 * kv * 128  # K and V of kv heads, L cached + the new token
    assert float(core(more_queries, "decode", b, L, ATTN_DECODE).shape["kv_bytes"][0]) == reads


@FAST
@given(b=batches, L=seqlens, kv=st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_gqa_decode_core_bytes_scale_with_kv_heads(b, L, kv):
    def core_bytes(n_kv):
        spec = AttentionSpec(d_model=4096, n_heads=32, n_kv_heads=n_kv, head_dim=128)
        return float(core(spec, "decode", b, L, ATTN_DECODE).bytes_[0])

    # the query side (read q, write o) is the same; the cache side is proportional to kv heads
    assert core_bytes(kv) - core_bytes(1) == pytest.approx((kv - 1) * E * b * (L + 1) * 2 * 128, rel=1e-12)


@FAST
@given(b=batches, L1=seqlens, L2=seqlens, name=st.sampled_from(ATTENTION_LAYERS))
def test_decode_writes_only_the_new_tokens_kv(b, L1, L2, name):
    spec = get_layer(name)
    appends = [next(op for op in ops(spec, "decode", b, L) if op.name == "kv_append") for L in (L1, L2)]
    assert float(appends[0].bytes_[0]) == float(appends[1].bytes_[0])
    # read the new K, V from the projection output and write them into the cache: 2 x one token
    assert float(appends[0].bytes_[0]) == 2 * b * spec.kv_bytes_per_token(E)


# ---------------------------------------------------------------------------------------------
# Batch: activations scale, weights are read once


@FAST
@given(b=st.integers(min_value=1, max_value=4096), L=seqlens, name=st.sampled_from(LAYERS),
       phase=st.sampled_from(["prefill", "decode"]))
def test_doubling_batch_doubles_gemm_activation_bytes_but_not_weight_bytes(b, L, name, phase):
    spec = get_layer(name)
    for op1, op2 in zip(ops(spec, phase, b, L), ops(spec, phase, 2 * b, L)):
        if op1.op_class != GEMM:
            continue
        weights = E * op1.shape["n"] * op1.shape["k"]
        activations = float(op1.bytes_[0]) - weights
        assert float(op2.bytes_[0]) - weights == pytest.approx(2 * activations, rel=1e-12), op1.name
        assert float(op2.flops[0]) == pytest.approx(2 * float(op1.flops[0]), rel=1e-12), op1.name


def non_gemm_params(spec) -> int:
    """Parameters no GEMM reads: conv, A, D, dt bias, gated-norm weight (mamba_ssm layouts)."""
    if spec.kind == "mamba":
        return (spec.d_inner * spec.d_conv + spec.d_inner  # conv weight + bias
                + spec.d_inner  # dt_proj bias, added inside the scan
                + spec.d_inner * spec.d_state + spec.d_inner)  # A_log, D
    if spec.kind == "mamba2":
        return (spec.conv_dim * spec.d_conv + spec.conv_dim  # conv weight + bias
                + 3 * spec.nheads + spec.d_inner)  # dt_bias, A_log, D; gated-norm weight
    if spec.kind == "mamba3":  # dt_bias, D; B/C biases and norm weights (mamba_ssm Mamba3, SISO)
        return 2 * spec.nheads + 2 * spec.nheads * spec.d_state + 2 * spec.d_state
    if spec.kind == "gdn":  # conv weight; A_log, dt_bias; gated-norm weight
        return spec.conv_dim * spec.d_conv + 2 * spec.n_v_heads + spec.head_v_dim
    return 0


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("name", LAYERS)
def test_gemm_weight_bytes_are_the_layers_linear_weights_read_once(name, phase):
    spec = get_layer(name)
    gemms = [op for op in ops(spec, phase, 1, 1) if op.op_class == GEMM]
    assert sum(op.shape["n"] * op.shape["k"] for op in gemms) == spec.params - non_gemm_params(spec)


@FAST
@given(b=st.integers(min_value=1, max_value=1024), L=seqlens, name=st.sampled_from(LAYERS))
def test_decode_bytes_per_sequence_fall_with_batch(b, L, name):
    spec = get_layer(name)
    assert bytes_(spec, "decode", 2 * b, L) < 2 * bytes_(spec, "decode", b, L)


# ---------------------------------------------------------------------------------------------
# What the fused kernels never write


@FAST
@given(b=batches, L=st.integers(min_value=1, max_value=65536), name=st.sampled_from(ATTENTION_LAYERS))
def test_flash_attention_bytes_are_linear_in_length_no_score_matrix(b, L, name):
    spec = get_layer(name)
    c1 = core(spec, "prefill", b, L, ATTN_PREFILL)
    c2 = core(spec, "prefill", b, 2 * L, ATTN_PREFILL)
    assert float(c2.bytes_[0]) == pytest.approx(2 * float(c1.bytes_[0]), rel=1e-12)
    # Q, K, V in and O out, nothing per (query, key) pair
    assert float(c1.bytes_[0]) == E * b * L * (2 * spec.q_dim + 2 * spec.kv_dim)


@FAST
@given(b=batches, L=st.integers(min_value=1, max_value=65536), name=st.sampled_from(ATTENTION_LAYERS))
def test_attention_layer_prefill_bytes_are_affine_in_length(b, L, name):
    spec = get_layer(name)
    y1, y2, y3 = (bytes_(spec, "prefill", b, k * L) for k in (1, 2, 3))
    assert y3 - y2 == pytest.approx(y2 - y1, rel=1e-9)


@FAST
@given(b=batches, L=st.integers(min_value=1, max_value=131071))
def test_mamba1_scan_bytes_per_token_exclude_the_expanded_state(b, L):
    spec = get_layer("mamba")
    expanded_per_token = E * b * spec.d_inner * spec.d_state  # one token of (B, d_inner, L, N)
    assume(L % 2048 != 0)  # L and L+1 in the same 2048-token chunk of selective_scan_fwd
    step = (float(core(spec, "prefill", b, L + 1, SELECTIVE_SCAN).bytes_[0])
            - float(core(spec, "prefill", b, L, SELECTIVE_SCAN).bytes_[0]))
    assert 0 < step < expanded_per_token / 10


@FAST
@given(b=batches, L=st.integers(min_value=2048, max_value=131072))
def test_mamba1_scan_bytes_are_far_below_the_expanded_state(b, L):
    spec = get_layer("mamba")
    scan = float(core(spec, "prefill", b, L, SELECTIVE_SCAN).bytes_[0])
    assert scan < E * b * spec.d_inner * L * spec.d_state / 10


# ---------------------------------------------------------------------------------------------
# Predicted times


def synthetic_calibration() -> Calibration:
    """A calibration with a GEMM table for every GEMM shape the built-ins use (monotone times)."""
    shapes = {(VOCAB, 4096)}
    for spec in BUILTIN_LAYERS.values():
        for phase in ("prefill", "decode"):
            shapes |= {(op.shape["n"], op.shape["k"]) for op in ops(spec, phase, 1, 512) if op.op_class == GEMM}
    grid = [2 ** i for i in range(17)]
    gemm = tuple((m, n, k, 3e-6 + max(2 * m * n * k / 7e14, E * (m * k + n * k + m * n) / 3e12))
                 for n, k in sorted(shapes) for m in grid)
    return Calibration(gpu="h100", gpu_name="synthetic", copy_bandwidth_bytes_s=3.0e12,
                       gemm_peak_flops=7.0e14, gemm=gemm,
                       launch={"graph_kernel_s": 2.5e-6, "eager_kernel_s": 9e-6},
                       op_classes={"attention_decode": {"bw_per_cta_bytes_s": 2.0e10},
                                   "attention_prefill": {"ctas_per_sm": 2.0}})


CALIBRATIONS = {"datasheet": "none", "calibrated": synthetic_calibration()}
TARGETS = LAYERS + list(PAPER_MODELS)


@pytest.mark.parametrize("cal", sorted(CALIBRATIONS))
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("target", TARGETS)
def test_more_batch_never_predicts_less_time(target, phase, cal):
    frame = predict(target, phase, np.arange(1, 300), [1, 64, 1000, 4096, 32768],
                    calibration=CALIBRATIONS[cal])
    for _, g in frame.groupby("seqlen"):
        times = g.sort_values("batch")["time_ms"].to_numpy()
        assert (np.diff(times) >= -1e-12 * times[1:]).all()


def _attention_split_counts(target: str, batch: int, seqlens: np.ndarray) -> np.ndarray | None:
    """FlashAttention-2's split-KV count per context for the target's attention layer (None: none)."""
    from analytic.efficiency import attention_decode_plan
    from models.registry import get_model

    if target in BUILTIN_LAYERS:
        spec = BUILTIN_LAYERS[target] if target in ATTENTION_LAYERS else None
    else:
        spec = next((layer for layer in get_model(target).layers if layer.kind == "attention"), None)
    if spec is None:
        return None
    ops = layer_ops(spec, "decode", np.full(len(seqlens), float(batch)), seqlens)
    return attention_decode_plan(next(op for op in ops if op.op_class == ATTN_DECODE), 132)[0]


@pytest.mark.parametrize("cal", sorted(CALIBRATIONS))
@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("target", TARGETS)
def test_more_context_never_predicts_less_time(target, phase, cal):
    """Strictly, except where FlashAttention-2 decode re-picks its split-KV count: the next context
    may then run a little faster (measured: the kernel plus its split combine), never by 10 %."""
    frame = predict(target, phase, [1, 8, 64], np.unique(np.geomspace(1, 131072, 200).astype(int)),
                    calibration=CALIBRATIONS[cal])
    for batch, g in frame.groupby("batch"):
        g = g.sort_values("seqlen")
        times = g["time_ms"].to_numpy()
        splits = _attention_split_counts(target, int(batch), g["seqlen"].to_numpy(dtype=float))
        same_plan = np.ones(len(times) - 1, dtype=bool) if (phase == "prefill" or splits is None) \
            else splits[1:] == splits[:-1]
        assert (np.diff(times)[same_plan] >= -1e-12 * times[1:][same_plan]).all()
        assert (times[1:] >= 0.9 * times[:-1]).all()


def test_more_batch_never_predicts_less_time_for_gemm_shapes_off_the_calibration_table():
    cal = Calibration(gpu="h100", gpu_name="synthetic", copy_bandwidth_bytes_s=3.0e12,
                      gemm_peak_flops=7.0e14, gemm=(),
                      launch={"graph_kernel_s": 2.5e-6, "eager_kernel_s": 9e-6}, op_classes={})
    frame = predict("mlp", "decode", np.arange(100, 160), [4096], calibration=cal)
    assert (np.diff(frame.sort_values("batch")["time_ms"].to_numpy()) >= 0).all()


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_hybrid_speedup_over_transformer_grows_with_context(phase):
    contexts = [1024, 4096, 16384, 65536, 131072]
    t = predict("transformer-8b", phase, [1, 16], contexts, calibration="none").set_index(["batch", "seqlen"])
    h = predict("mamba2-hybrid-8b", phase, [1, 16], contexts, calibration="none").set_index(["batch", "seqlen"])
    speedup = (t["time_ms"] / h["time_ms"]).unstack("seqlen")
    assert (speedup.diff(axis=1).iloc[:, 1:] > 0).all().all()
    assert (speedup[131072] > 1).all()
