"""Mamba-1 layer costs (arXiv 2312.00752 Alg. 2; mamba_ssm `Mamba` fast path `mamba_inner_fn`).

Prefill: in_proj GEMM d -> 2*d_inner (x, z); causal_conv1d over x with SiLU; x_proj GEMM
d_inner -> dt_rank + 2N; dt_proj GEMM dt_rank -> d_inner; B and C made contiguous; the CUDA
selective scan, which keeps its (B, d_inner, L, N) expansion in SRAM and touches HBM only for
u, delta, z, B, C and the output (plus one fp32 state per 2048-token chunk); out_proj GEMM
d_inner -> d (its input is a transposed view that cuBLAS reads in place: no copy kernel).
Scan arithmetic per (token, channel, state): exp(delta*A), delta*B*u, h = dA*h + dBu, y += C*h:
about 9 FP32 operations and one exp, counted as `scan_elements` = T * d_inner * N.

Decode (`Mamba.step`): in_proj, causal_conv1d_update, x_proj, dt_proj, A = -exp(A_log) (recomputed
each step), selective_state_update over the (d_inner, N) state, out_proj.
"""

from __future__ import annotations

import numpy as np

from analytic.families.state_update import programs
from analytic.ops import CONV1D, LD_A_T, SELECTIVE_SCAN, SSU_MAMBA1, STATE_UPDATE, Op, elementwise, gemm

FP32 = 4
SCAN_CHUNK = 2048  # selective_scan_fwd processes the sequence in chunks of 2048 and saves each state


def scan_chunk(seqlen: np.ndarray) -> np.ndarray:
    """Tokens one selective-scan block handles per chunk: kNThreads * kNItems picked by seqlen
    (selective_scan_fwd_kernel.cuh: <=128 -> 32x4, <=256 -> 32x8, <=512 -> 32x16, <=1024 -> 64x16,
    else 128x16); the last chunk is padded to it, and each thread configuration runs at its own
    rate. A length that is not a multiple of the chunk (`kIsEvenLen` false) loses the vectorised
    loads: a slower rate again."""
    return np.select([seqlen <= 128, seqlen <= 256, seqlen <= 512, seqlen <= 1024], [128, 256, 512, 1024],
                     SCAN_CHUNK)


def prefill(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    T = b * L
    di, N, r = spec.d_inner, spec.d_state, spec.dt_rank
    scan_elements = T * di * N
    chunk = scan_chunk(L)
    padded_elements = b * np.ceil(L / chunk) * chunk * di * N
    saved_states = b * np.ceil(L / SCAN_CHUNK) * di * N * 2 * FP32
    return [
        # mamba_simple computes in_proj as W @ x^T and dt_proj as W @ x_dbl^T: both write (N, B*L),
        # leading dimension B*L, so the scan reads them as (B, N, L) without a transpose.
        gemm("in_proj", T, 2 * di, spec.d_model, e, ld=T),
        elementwise("A_prep", di * N + 0 * T, di * N + 0 * T, 1.0, FP32, kernels=2),
        Op("conv1d", CONV1D, 2.0 * spec.d_conv * T * di, e * 2 * T * di + e * di * spec.d_conv, 1,
           {"elements": T * di, "hparams": {"channels": di, "d_conv": spec.d_conv}}),
        gemm("x_proj", T, r + 2 * N, di, e),
        gemm("dt_proj", T, di, r, e, ld=T),
        elementwise("BC_contiguous", 2 * T * N, 2 * T * N, 0.0, e, kernels=2),
        Op("selective_scan", SELECTIVE_SCAN, 9.0 * scan_elements,
           e * T * (4 * di + 2 * N) + saved_states, 1, {"scan_elements": scan_elements, "padded_elements": padded_elements, "chunk": chunk,
            "even": (L % chunk) == 0, "tokens": T, "seqlen": L, "d_state": N, "blocks": b * di,
            "hparams": {"d_state": N, "d_inner": di}}),
        # The scan writes its (B, d_inner, L) output in delta's (d_inner, B*L) order, so out_proj reads
        # it as a transposed (B*L, d_inner) view in place (a "TT" GEMM in H100 traces, no copy kernel),
        # leading dimension B*L: an unaligned B*L slows it as it does in_proj (perfbench/calibration/gemm_unaligned.py).
        gemm("out_proj", T, spec.d_model, di, e, ld=T, ld_layout=LD_A_T),
    ]


def decode(spec, batch, seqlen, e: int = 2, state_bytes: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64) + 0.0 * np.asarray(seqlen)
    di, N, r, w = spec.d_inner, spec.d_state, spec.dt_rank, spec.d_conv
    state = b * di * N
    return [
        gemm("in_proj", b, 2 * di, spec.d_model, e),
        Op("conv1d_update", CONV1D, 2.0 * w * b * di, e * (2 * b * di * w + 2 * b * di + di * w), 1,
           {"elements": b * di * w, "written_bytes": e * b * di * (w + 1),
            "hparams": {"channels": di, "d_conv": w}}),
        gemm("x_proj", b, r + 2 * N, di, e),
        gemm("dt_proj", b, di, r, e),
        elementwise("A_prep", di * N + 0 * b, di * N + 0 * b, 1.0, FP32, kernels=2, cold_kernels=1),  # exp(A_log)
        Op("selective_state_update", STATE_UPDATE, 9.0 * state,
           2 * state_bytes * state + FP32 * di * N + e * b * (4 * di + 2 * N), 1,
           {"state_elements": state, "batch": b, "family": SSU_MAMBA1,
            "written_bytes": state_bytes * state + e * b * di, "ctas": programs(b, 1, di, N),
            "hparams": {"d_state": N, "d_inner": di}}),
        gemm("out_proj", b, spec.d_model, di, e),
    ]
