"""Mamba-3 layer costs (arXiv 2603.15569; mamba_ssm 2.3.2 `modules/mamba3.py`, `ops/triton/mamba3/`).

Symbols: T = B*L tokens, H heads of P dims, N = d_state, G B/C groups, R MIMO rank (1: SISO),
S = RoPE angles (N * rope_fraction / 2), Q = chunk size, e = bf16 bytes.

Prefill (`Mamba3.forward` -> `mamba3_siso_combined`): in_proj GEMM d -> [z, x, B, C, dt, A, trap,
angles]; torch prep of the per-head scalars (A = -softplus(A_proj) clamped, DT = softplus(dt + bias),
ADT = A * DT, and the kernel's `.contiguous()` on the (B, H, L) transposes: ~10 fp32 passes over T*H);
the angles expanded to every head in fp32 (`.expand(...).to(float32)`: T*H*S written); B and C
RMS-normed (Triton `RMSNorm`, after a copy out of the strided projection); x and z made contiguous
by the kernel wrapper; `angle_dt_fwd` (cumulative tanh(angle) * pi * DT, fp32 in and out); then the
chunked kernel `mamba3_siso_fwd` (one program per (head, sequence), chunk by chunk), per token and head:
    phase 1: bias, rotation and the diagonal q.k term (2N, on tensor cores via a dot with ones);
             stores the rotated q and the scaled rotated k per head (2 * e * N) and three fp32 scalars
    phase 2: q @ h^T            2 N P    (the carried state's contribution)
             q @ k^T            2 Q N    (intra-chunk scores; the whole Q x Q tile is computed)
             s @ v              2 Q P
             h += v^T k         2 P N    (state passed to the next chunk)
so  flops = T * H * (4 N P + 2 Q (N + P) + 2 N); its reads are B, C once (other heads hit L2), the
stored q and k twice (written, read back), x, z, the angles and the scalars; it writes y gated by
silu(z). No chunk states reach HBM in inference (`store_states_adt_outv` is off without autograd).
Then out_proj GEMM. Mamba-3 has no convolution (the trapezoidal rule takes its place).
MIMO (R > 1, TileLang `mamba3_mimo`): each token carries R rank rows through the same chunk math,
with Q = chunk_size tokens (R * Q rows) a chunk: flops = T * H * R * (4 N P + 2 R Q (N + P) + 2 N).

Decode (`models.torch_layers.Mamba3Layer.decode`: the Triton `mamba3_siso_step`, since the CuTe-DSL
step of `Mamba3.step` needs nvidia-cutlass-dsl, not in the GPU kit): in_proj GEMM (M = batch);
the same prep over B*H scalars, B/C norms and contiguous copies; the step kernel per (head, sequence):
    a = exp(ADT), h = a h + (a DT (1 - trap)) v_prev k_prev^T + (trap DT) v k^T, y = h q + D v, * silu(z)
about 7 P N flops per head, reading the fp32 state and writing a new one (4 bytes each way), plus q, k,
the previous k and v, and the angle state; the wrapper returns new state tensors, which the layer
copies into its cache (one more fp32 read and write of the SSM state); out_proj GEMM.
Nothing depends on the context length.
"""

from __future__ import annotations

import numpy as np

from analytic.ops import (ELEMENTWISE, MAMBA3_CHUNK, MAMBA3_MIMO_CHUNK, MAMBA3_STEP, SSD, STATE_UPDATE, Op,
                          elementwise, gemm)

FP32 = 4


def chunk_flops_per_token_head(spec) -> float:
    """Tensor-core FLOPs of the chunked kernel per token and head (module docstring)."""
    N, P, Q, R = spec.d_state, spec.headdim, spec.chunk_size, spec.mimo_rank
    return R * (4.0 * N * P + 2.0 * R * Q * (N + P) + 2.0 * N)


def _hparams(spec, chunk: bool) -> dict:
    """What the chunk and step kernels' time depends on beyond FLOPs and bytes (analytic.coverage)."""
    out = {"headdim": spec.headdim, "d_state": spec.d_state, "ngroups": spec.ngroups,
           "rope_angles": spec.num_rope_angles}
    if chunk:
        out.update(chunk_size=spec.chunk_size, mimo_rank=spec.mimo_rank)
    return out


def _prep(spec, rows: np.ndarray, e: int, cold: bool) -> list[Op]:
    """Per-head scalars, angles, B/C norms and the contiguous copies the kernels' wrappers make, over
    `rows` tokens (T in prefill, B in decode)."""
    H, S, bc, di = spec.nheads, spec.num_rope_angles, spec.bc_dim, spec.d_inner
    return [
        elementwise("dt_A_trap_prep", 10 * rows * H, 10 * rows * H, 2.0, FP32, kernels=10,
                    cold_kernels=2 if cold else 0),  # dt_bias, D
        Op("angles_expand", ELEMENTWISE, rows * H * S, e * rows * S + FP32 * rows * H * S, 1,
           {"elements": rows * H * S}),
        elementwise("bc_rmsnorm", 4 * rows * bc, 4 * rows * bc, 4.0, e, kernels=4, cold_kernels=2 if cold else 0),
        elementwise("xz_contiguous", 2 * rows * di, 2 * rows * di, 0.0, e, kernels=2),
    ]


def prefill(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    T = b * L
    H, P, N, S, G = spec.nheads, spec.headdim, spec.d_state, spec.num_rope_angles, spec.ngroups * spec.mimo_rank
    chunks = b * np.ceil(L / spec.chunk_size)
    core_bytes = (e * T * 2 * G * N + FP32 * T * H * S + T * H * (FP32 + e + FP32)  # B, C, angles, DT, trap, ADT
                  + 2 * (2 * e * T * H * N) + 4 * FP32 * T * H  # q, k stored and read back; qk, scale, gamma
                  + 3 * e * T * H * P)  # x, z read; y written
    family, name = (MAMBA3_MIMO_CHUNK, "mamba3_mimo_fwd") if spec.is_mimo else (MAMBA3_CHUNK, "mamba3_siso_fwd")
    return [
        gemm("in_proj", T, spec.d_in_proj, spec.d_model, e),
        *_prep(spec, T, e, cold=False),
        Op("angle_dt", ELEMENTWISE, 4.0 * T * H * S, FP32 * (2 * T * H * S + T * H), 1, {"elements": T * H * S}),
        Op(name, SSD, T * H * chunk_flops_per_token_head(spec), core_bytes, 1,
           {"tokens": T, "chunks": chunks, "family": family, "hparams": _hparams(spec, chunk=True)}),
        gemm("out_proj", T, spec.d_model, spec.d_inner, e),
    ]


def decode(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64) + 0.0 * np.asarray(seqlen)
    H, P, N, S, G = spec.nheads, spec.headdim, spec.d_state, spec.num_rope_angles, spec.ngroups
    state = b * H * P * N
    small = b * H * (2 * S + N + P)  # angle state (fp32, counted as two bf16), k and v states
    step_bytes = (2 * FP32 * state + e * b * 2 * G * N + FP32 * b * H * (3 + S) + e * 2 * small
                  + e * b * H * (3 * P) + FP32 * 2 * H * N)  # biases read cold
    return [
        gemm("in_proj", b, spec.d_in_proj, spec.d_model, e),
        *_prep(spec, b, e, cold=True),
        Op("mamba3_siso_step", STATE_UPDATE, 7.0 * state, step_bytes, 1,
           {"state_elements": state, "batch": b, "family": MAMBA3_STEP, "cold_kernels": 1,
            "hparams": _hparams(spec, chunk=False),
            "ctas": b * H,  # one program per (head, sequence), each over its whole (P, N) state
            "written_bytes": FP32 * state + e * b * H * P}),
        # The wrapper's new states copied into the layer's cache (SSM, angle, k, v): four copy kernels.
        Op("state_copy", ELEMENTWISE, 0.0 * b, 2 * FP32 * state + 2 * e * 2 * small, 4,
           {"elements": state, "cold_kernels": 4, "written_bytes": FP32 * state}),
        gemm("out_proj", b, spec.d_model, spec.d_inner, e),
    ]
