"""Hand-derived values: one point (or more) per layer type, worked out on paper, not by the code.

Notation: B batch, L prompt length (prefill) or context (decode), T = B*L tokens, d = 4096,
bf16 = 2 bytes, fp32 = 4 bytes. A GEMM C[M,N] = A[M,K] W[K,N] does 2MNK FLOPs and moves
2*(MK + KN + MN) bytes (each operand read once, the output written once).
"""

from __future__ import annotations

import numpy as np
import pytest

from analytic.composition import step_ops
from analytic.costs import layer_ops
from analytic.ops import (ATTN_DECODE, ATTN_PREFILL, CONV1D, GEMM, SELECTIVE_SCAN, SSD,
                          STATE_UPDATE)
from analytic.predict import breakdown, predict
from models.registry import PAPER_MODELS, get_layer, get_model
from models.specs import MLPSpec


def _ops(name, phase, b, L):
    return layer_ops(get_layer(name), phase, np.array([float(b)]), np.array([float(L)]))


def _sum(ops, attr, op_class=None) -> float:
    return float(sum(getattr(op, attr)[0] for op in ops if op_class is None or op.op_class == op_class))


# ---------------------------------------------------------------------------------------------
# MLP (4096 -> 16384 -> 4096, squared ReLU), prefill B=1, L=1024: T = 1024, f = 16384


def test_mlp_prefill_flops_by_hand():
    # fc1 2*T*d*f = 2*1024*4096*16384 = 137,438,953,472
    # fc2 2*T*f*d                     = 137,438,953,472
    # squared ReLU as relu then square: 1 FLOP per element per kernel, 2*T*f = 33,554,432
    # total                             274,911,461,376
    assert _sum(_ops("mlp", "prefill", 1, 1024), "flops") == 274_911_461_376


def test_mlp_prefill_bytes_by_hand():
    # fc1 reads x (T*d = 4,194,304), W (d*f = 67,108,864), writes h (T*f = 16,777,216):
    #     88,080,384 elements * 2 = 176,160,768 bytes
    # fc2 reads h (T*f), W (f*d), writes y (T*d): the same 176,160,768
    # relu reads+writes T*f, square reads+writes T*f: 4 * 16,777,216 * 2 = 134,217,728
    # total 486,539,264
    assert _sum(_ops("mlp", "prefill", 1, 1024), "bytes_") == 486_539_264


def test_mlp_decode_time_on_datasheet_h100_by_hand():
    # B=1: every op is memory-bound. fc1 and fc2 each move 2*(4096 + 4096*16384 + 16384)
    # = 134,258,688 bytes; squared ReLU moves 2*(2*16384 + 2*16384) = 131,072 bytes.
    # H100 SXM datasheet: 3.35 TB/s; 4 kernels at the 2 us per-kernel floor in a CUDA graph.
    expected_s = 4 * 2e-6 + (2 * 134_258_688 + 131_072) / 3.35e12
    row = predict("mlp", "decode", [1], [4096], gpu="h100", calibration="none").iloc[0]
    assert row["time_ms"] == pytest.approx(expected_s * 1e3, rel=1e-12)
    assert row["bound"] == "memory"


# ---------------------------------------------------------------------------------------------
# Attention, the hybrid's GQA (32 query heads x 128, 8 KV heads), no RoPE


def test_gqa_attention_prefill_flops_by_hand():
    # B=1, L=1024.
    # QKV projection 2*T*d*(32+2*8)*128 = 2*1024*4096*6144 = 51,539,607,552
    # out projection 2*T*4096*d          = 2*1024*4096*4096 = 34,359,738,368
    # causal core: QK^T and PV, 2*hd FLOPs each per (query, key) pair per query head, over the
    #   L(L+1)/2 pairs of the lower triangle: 4*32*128*(1024*1025/2) = 16384*524,800 = 8,598,323,200
    # total 94,497,669,120
    ops = _ops("attention", "prefill", 1, 1024)
    assert _sum(ops, "flops", ATTN_PREFILL) == 8_598_323_200
    assert _sum(ops, "flops") == 94_497_669_120


def test_gqa_attention_prefill_core_bytes_by_hand():
    # FlashAttention reads Q (T*32*128), K and V (T*8*128 each), writes O (T*32*128):
    # 2 * 1024 * (4096 + 1024 + 1024 + 4096) = 20,971,520 bytes; no L x L scores.
    assert _sum(_ops("attention", "prefill", 1, 1024), "bytes_", ATTN_PREFILL) == 20_971_520


def test_gqa_attention_decode_by_hand():
    # B=1, context L=4096: the new token attends to 4096 cached + itself = 4097 keys.
    # QKV GEMM (M=1): 2*(4096 + 4096*6144 + 6144) = 50,352,128 bytes, 2*4096*6144 = 50,331,648 FLOPs
    # KV append: read the new K,V (2*8*128 = 2048) and write them: 2*4096 = 8,192 bytes
    # q fold (the 4 query heads of each KV head become 4 query rows of one CTA): a view, no bytes
    # core: read K,V cache 2*8*128*2 bytes * 4097 = 16,781,312; q in + o out 2*(4096+4096) = 16,384
    #       FLOPs 4*32*128*4097 = 67,125,248
    # out GEMM (M=1): 2*(4096 + 4096*4096 + 4096) = 33,570,816 bytes, 2*4096*4096 = 33,554,432 FLOPs
    # total bytes 50,352,128 + 8,192 + 16,797,696 + 33,570,816 = 100,728,832
    # total FLOPs 50,331,648 + 67,125,248 + 33,554,432 = 151,011,328
    ops = _ops("attention", "decode", 1, 4096)
    core = next(op for op in ops if op.op_class == ATTN_DECODE)
    assert float(core.shape["kv_bytes"][0]) == 16_781_312
    assert float(core.bytes_[0]) == 16_797_696
    assert _sum(ops, "bytes_") == 100_728_832
    assert _sum(ops, "flops") == 151_011_328


def test_mha_attention_decode_cache_read_by_hand():
    # Transformer MHA, 32 KV heads: 2*32*128*2 bytes = 16,384 bytes per token; 4097 tokens at L=4096
    # -> 67,125,248 bytes per sequence, 4x the GQA layer's.
    core = next(op for op in _ops("attention-mha", "decode", 1, 4096) if op.op_class == ATTN_DECODE)
    assert float(core.shape["kv_bytes"][0]) == 67_125_248


# ---------------------------------------------------------------------------------------------
# Mamba-2 (d_inner 8192, H=128 heads of P=64, N=128, G=8 groups, chunk Q=128, conv_dim 10240)


def test_mamba2_prefill_gemm_flops_by_hand():
    # B=1, L=1024. in_proj d -> 2*8192 + 2*8*128 + 128 = 18560: 2*1024*4096*18560 = 155,692,564,480
    # out_proj 8192 -> d: 2*1024*8192*4096 = 68,719,476,736; sum 224,412,041,216
    assert _sum(_ops("mamba2", "prefill", 1, 1024), "flops", GEMM) == 224_412_041_216


def test_mamba2_prefill_ssd_flops_by_hand():
    # SSD (arXiv 2405.21060 sec. 6), T = 1024 tokens, 8 chunks of 128:
    #   chunk_state  B^T x per chunk: 2*T*H*P*N = 2*1024*(128*64*128) = 2,147,483,648
    #   state_passing across 8 chunks: 2*8*H*P*N                     =    16,777,216
    #   bmm_chunk    C^T B per chunk and group: 2*T*Q*G*N = 2*1024*128*8*128 = 268,435,456
    #   chunk_scan   intra-chunk (Q/2 keys on average): 2*T*H*P*Q/2 = 1,073,741,824
    #                plus C times the carried state:    2*T*H*P*N   = 2,147,483,648
    #   chunk_cumsum of dt*A: 4*T*H = 524,288
    # total 5,654,446,080
    assert _sum(_ops("mamba2", "prefill", 1, 1024), "flops", SSD) == 5_654_446_080


def test_mamba2_decode_state_update_bytes_by_hand():
    # B=1: selective_state_update reads and writes the whole (H, P, N) = 1,048,576-element state in
    # bf16 (2 * 2 * 1,048,576 = 4,194,304), reads x and writes y (2 * 8192 * 2 = 32,768), reads
    # B and C (2 * 8*128 * 2 = 4,096) and dt in fp32 (128 * 4 = 512): 4,231,680 bytes.
    assert _sum(_ops("mamba2", "decode", 1, 4096), "bytes_", STATE_UPDATE) == 4_231_680


def test_mamba2_decode_conv_update_bytes_by_hand():
    # causal_conv1d_update on conv_dim = 8192 + 2*8*128 = 10240 channels, width 4:
    # conv state read + written 2 * 10240*4 * 2 = 163,840; input in + output out 2 * 10240 * 2
    # = 40,960; weights 10240*4 * 2 = 81,920: 286,720 bytes.
    assert _sum(_ops("mamba2", "decode", 1, 4096), "bytes_", CONV1D) == 286_720


# ---------------------------------------------------------------------------------------------
# Mamba-1 (d_inner 8192, N=128, dt_rank 256, d_conv 4)


def test_mamba1_prefill_gemm_flops_by_hand():
    # B=1, L=2048 (T = 2048):
    #   in_proj  2*T*4096*16384       = 274,877,906,944
    #   x_proj   2*T*8192*(256+2*128) =  17,179,869,184
    #   dt_proj  2*T*256*8192         =   8,589,934,592
    #   out_proj 2*T*8192*4096        = 137,438,953,472
    # total 438,086,664,192
    assert _sum(_ops("mamba", "prefill", 1, 2048), "flops", GEMM) == 438_086_664_192


def test_mamba1_prefill_scan_bytes_by_hand():
    # selective_scan_fwd, T = 2048: reads u, delta, z (T*8192 each), B, C (T*128 each), writes y
    # (T*8192): 2 * 2048 * (4*8192 + 2*128) = 135,266,304 bytes; plus the one saved fp32 state of
    # its single 2048-token chunk, (8192, 2*128) * 4 = 8,388,608: 143,654,912 bytes.
    # The (T, 8192, 128) expansion (4.3 GB in bf16) stays on chip.
    assert _sum(_ops("mamba", "prefill", 1, 2048), "bytes_", SELECTIVE_SCAN) == 143_654_912


def test_mamba1_decode_state_update_bytes_by_hand():
    # B=1: state (8192, 128) read + written in bf16: 2*2*1,048,576 = 4,194,304; A (8192, 128) in
    # fp32 read: 4,194,304; x, dt, z in and y out (4*8192) and B, C (2*128) in bf16:
    # 2*(32,768 + 256) = 66,048. Total 8,454,656 bytes.
    assert _sum(_ops("mamba", "decode", 1, 4096), "bytes_", STATE_UPDATE) == 8_454_656


# ---------------------------------------------------------------------------------------------
# Whole models


def test_transformer_decode_gemm_flops_are_twice_the_gemm_weights():
    # One token: 2 FLOPs per GEMM weight. Per block 4*4096^2 (MHA) + 2*4096*16384 (MLP)
    # = 67,108,864 + 134,217,728 = 201,326,592; x 32 = 6,442,450,944; LM head 256,000*4096
    # = 1,048,576,000; total 7,491,026,944 weights -> 14,982,053,888 FLOPs (embedding: a gather).
    ops = step_ops("model", get_model("transformer-8b"), "decode", np.array([1.0]), np.array([4096.0]))
    gemm = sum(float(c.op.flops[0]) * c.count for c in ops if c.op.op_class == GEMM)
    assert gemm == 14_982_053_888


def test_hybrid_decode_cache_reads_by_hand():
    # 4 GQA layers x 4097 tokens x (2*8*128*2 = 4096 bytes) = 67,125,248 bytes at L=4096, B=1.
    ops = step_ops("model", get_model("mamba2-hybrid-8b"), "decode", np.array([1.0]), np.array([4096.0]))
    reads = sum(float(c.op.shape["kv_bytes"][0]) * c.count for c in ops if c.op.op_class == ATTN_DECODE)
    assert reads == 67_125_248


# ---------------------------------------------------------------------------------------------
# Prediction rows: consistency of derived columns


CONTRACT_COLUMNS = {"target_kind", "name", "phase", "batch", "seqlen", "gpu", "calibrated", "time_ms",
                    "flops", "bytes", "bound", "intensity", "n_kernels", "tokens_per_s", "memory_bytes"}


@pytest.mark.parametrize("target", ["mamba2", "attention", *PAPER_MODELS])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_prediction_rows_have_the_contract_columns_and_consistent_rates(target, phase):
    frame = predict(target, phase, [1, 8, 64], [1024, 4096, 131072], calibration="none")
    assert CONTRACT_COLUMNS <= set(frame.columns)
    assert len(frame) == 9
    tokens = frame["batch"] * (frame["seqlen"] if phase == "prefill" else 1)
    np.testing.assert_allclose(frame["tokens_per_s"], tokens / (frame["time_ms"] / 1e3), rtol=1e-12)
    np.testing.assert_allclose(frame["intensity"], frame["flops"] / frame["bytes"], rtol=1e-12)
    assert (frame["time_ms"] > 0).all() and (frame["memory_bytes"] > 0).all() and (frame["n_kernels"] > 0).all()
    assert set(frame["bound"]) <= {"compute", "memory", "launch", "host"}


def test_a_point_whose_host_chain_outlasts_the_gpu_is_host_bound():
    """Mamba-2's calibrated Python path (~1.5 ms on the H100) outlasts a 512-token prefill's kernels, not
    a 32K-token one's; with CUDA graphs a decode step never waits on it."""
    small, big = predict("mamba2", "prefill", [1, 64], [512], gpu="h100")["bound"]
    assert (small, big) == ("host", "compute")
    assert predict("mamba2", "decode", [1], [512], gpu="h100", graphs=False)["bound"].iloc[0] == "host"
    assert predict("mamba2", "decode", [1], [512], gpu="h100", graphs=True)["bound"].iloc[0] != "host"


@pytest.mark.parametrize("target", ["mamba", "attention-mha", "mamba2-hybrid-8b"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_breakdown_sums_to_the_prediction(target, phase):
    row = predict(target, phase, [8], [2048], calibration="none").iloc[0]
    parts = breakdown(target, phase, 8, 2048, calibration="none")
    assert parts["time_ms"].sum() == pytest.approx(row["time_ms"], rel=1e-9)
    assert parts["flops"].sum() == pytest.approx(row["flops"], rel=1e-12)
    assert parts["bytes"].sum() == pytest.approx(row["bytes"], rel=1e-12)
    assert parts["share"].sum() == pytest.approx(1.0)


def test_large_prefill_mlp_is_compute_bound_and_tiny_decode_is_launch_bound():
    assert predict("mlp", "prefill", [8], [4096], calibration="none")["bound"].iloc[0] == "compute"
    tiny = MLPSpec(d_model=64, ffn_hidden=256)
    assert predict(tiny, "decode", [1], [16], calibration="none")["bound"].iloc[0] == "launch"


def test_eager_decode_is_never_faster_than_graph_replay():
    graph = predict("mamba2-hybrid-8b", "decode", [1, 64], [4096], calibration="none", graphs=True)
    eager = predict("mamba2-hybrid-8b", "decode", [1, 64], [4096], calibration="none", graphs=False)
    assert (eager["time_ms"].to_numpy() >= graph["time_ms"].to_numpy()).all()
    assert set(eager["mode"]) == {"eager"} and set(graph["mode"]) == {"graph"}


def test_faster_memory_predicts_faster_memory_bound_decode():
    h100 = predict("transformer-8b", "decode", [16], [32768], gpu="h100", calibration="none")
    h200 = predict("transformer-8b", "decode", [16], [32768], gpu="h200", calibration="none")
    assert h200["time_ms"].iloc[0] < h100["time_ms"].iloc[0]


@pytest.mark.parametrize("target", ["mamba2", "attention-mha", "mlp", "mamba2-hybrid-8b"])
@pytest.mark.parametrize("phase,graphs", [("prefill", False), ("decode", True), ("decode", False)])
def test_a_breakdown_with_its_step_row_adds_up_to_the_calibrated_prediction(target, phase, graphs):
    """With `graphs` given, one "step" row carries what predict adds to the GPU's ops (a decode graph's
    overhead, or the host's launch chain where it outlasts the GPU), so a small point adds up too."""
    for batch, seqlen in ((1, 512), (16, 4096)):
        row = predict(target, phase, [batch], [seqlen], gpu="h100", graphs=graphs).iloc[0]
        parts = breakdown(target, phase, batch, seqlen, gpu="h100", graphs=graphs)
        assert parts["time_ms"].sum() == pytest.approx(row["time_ms"], rel=1e-6)
        step = parts[parts["group"] == "step"]
        assert (step["time_ms"] > 0).all()
        # An eager point whose host chain outlasts the GPU is host-bound, and its step row says so.
        assert (row["bound"] == "host") == (not graphs and len(step) == 1)
        assert set(step["bound"]) <= ({"launch"} if graphs else {"host"})
    plain = breakdown(target, phase, 1, 512, gpu="h100")
    assert "step" not in set(plain["group"])  # the GPU's ops alone, as a kernel trace shows them
    if phase == "decode" and graphs:
        assert "step" in set(breakdown(target, phase, 1, 512, gpu="h100", graphs=True)["group"])
