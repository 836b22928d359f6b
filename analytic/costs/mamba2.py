"""Mamba-2 layer costs (SSD, arXiv 2405.21060 §6-7; mamba_ssm `Mamba2` with its fused path).

Prefill (`mamba_split_conv1d_scan_combined`): in_proj GEMM d -> [z, x, B, C, dt]; causal_conv1d
over xBC (conv_dim channels) with SiLU; the chunked scan in five Triton kernels
(ssd_combined.py): chunk_cumsum, chunk_state, state_passing, bmm_chunk (C^T B per chunk),
chunk_scan; gated RMSNorm; out_proj GEMM. With chunk size Q, G groups, H heads of P dims and
state size N, per token:
    bmm_chunk   2 * Q * G * N        FLOPs, writes CB (Q per token per group, fp32)
    chunk_state 2 * H * P * N        FLOPs, writes one (H, P, N) fp32 state per chunk
    state_pass  reads those states, writes them back in bf16
    chunk_scan  2 * H * P * (Q/2)    (causal intra-chunk) + 2 * H * P * N (C times the carried state)
The per-chunk states are (H * P * N) / Q elements per token: at the 8B sizes (H*P*N = 1M, Q = 128)
8K elements per token, which outweighs x itself; the cost model keeps them.

Decode (`Mamba2.step`): in_proj GEMM (M = batch), causal_conv1d_update on the (conv_dim, d_conv)
conv state, selective_state_update reading and writing the whole (H, P, N) SSM state of every
sequence, gated RMSNorm, out_proj GEMM. Nothing depends on the context length.
"""

from __future__ import annotations

import numpy as np

from analytic.families.state_update import programs
from analytic.ops import CONV1D, SSD, STATE_UPDATE, Op, elementwise, gemm

FP32 = 4


def prefill(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    T = b * L
    Q, G, N, H, P = spec.chunk_size, spec.ngroups, spec.d_state, spec.nheads, spec.headdim
    di, cd = spec.d_inner, spec.conv_dim
    chunks = b * np.ceil(L / Q)
    state_elems = chunks * H * P * N
    ssd = {"tokens": T, "chunks": chunks, "state_bytes": FP32 * state_elems, "hparams": {"headdim": P, "d_state": N, "ngroups": G, "chunk_size": Q}}
    ops = [
        gemm("in_proj", T, spec.d_in_proj, spec.d_model, e),
        Op("conv1d", CONV1D, 2.0 * spec.d_conv * T * cd, e * 2 * T * cd + e * cd * spec.d_conv, 1,
           {"elements": T * cd, "hparams": {"channels": cd, "d_conv": spec.d_conv}}),
        Op("ssd_chunk_cumsum", SSD, 4.0 * T * H, e * T * H + FP32 * 2 * T * H, 1, ssd),
        Op("ssd_chunk_state", SSD, 2.0 * T * H * P * N,
           e * T * (G * N + H * P) + FP32 * 2 * T * H + FP32 * state_elems, 1, ssd),
        Op("ssd_state_passing", SSD, 2.0 * state_elems, (FP32 + e) * state_elems + FP32 * chunks * H, 1, ssd),
        Op("ssd_bmm_chunk", SSD, 2.0 * T * Q * G * N, e * 2 * T * G * N + FP32 * T * G * Q, 1, ssd),
        Op("ssd_chunk_scan", SSD, 2.0 * T * H * P * (Q / 2) + 2.0 * T * H * P * N,
           FP32 * T * G * Q + e * T * (H * P + G * N) + FP32 * 2 * T * H + e * state_elems + e * T * H * P
           + e * T * di, 1, ssd),
        elementwise("gated_rmsnorm", 2 * T * di, T * di, 6.0, e),
        gemm("out_proj", T, spec.d_model, di, e),
    ]
    return ops


def decode(spec, batch, seqlen, e: int = 2, state_bytes: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64) + 0.0 * np.asarray(seqlen)
    N, H, P, G = spec.d_state, spec.nheads, spec.headdim, spec.ngroups
    di, cd, w = spec.d_inner, spec.conv_dim, spec.d_conv
    state = b * H * P * N
    return [
        gemm("in_proj", b, spec.d_in_proj, spec.d_model, e),
        Op("conv1d_update", CONV1D, 2.0 * w * b * cd, e * (2 * b * cd * w + 2 * b * cd + cd * w), 1,
           {"elements": b * cd * w, "written_bytes": e * b * cd * (w + 1), "hparams": {"channels": cd, "d_conv": w}}),
        elementwise("dt_A_prep", b * H + H, b * H + H, 2.0, FP32, kernels=3, cold_kernels=1),  # exp(A_log)
        Op("selective_state_update", STATE_UPDATE, 7.0 * state,
           2 * state_bytes * state + e * b * (2 * di + 2 * G * N) + FP32 * b * H, 1,
           {"state_elements": state, "batch": b, "written_bytes": state_bytes * state + e * b * di,
            "ctas": programs(b, H, P, N), "hparams": {"headdim": P, "d_state": N, "ngroups": G}}),
        elementwise("gated_rmsnorm", 2 * b * di, b * di, 6.0, e, cold_kernels=1),  # its weight
        gemm("out_proj", b, spec.d_model, di, e),
    ]
