"""Mamba-3 layer costs (arXiv 2603.15569; mamba_ssm 2.3.2 `modules/mamba3.py`, `ops/triton/mamba3/`).

Symbols: T = B*L tokens, H heads of P dims, N = d_state, G B/C groups, R MIMO rank (1: SISO),
S = RoPE angles (N * rope_fraction / 2), Q = chunk size, e = bf16 bytes.

Prefill (`Mamba3.forward` -> `mamba3_siso_combined`), 21 kernels launched eagerly, in order:
  in_proj GEMM d -> [z, x, B, C, dt, A, trap, angles];
  10 torch passes over the T*H per-head scalars (`dt_A_trap_prep`): A = clamp(-softplus(A.float()))
    (4 kernels), DT = softplus(dt + dt_bias) (2), ADT = A * DT (1), and `mamba3_siso_fwd`'s
    `.contiguous()` on the (B, H, L) views of ADT, DT (fp32) and Trap (bf16) (3): 76 bytes per
    token and head (6 + 8 + 8 + 8 | 6 + 8 | 12 | 8 + 8 + 4);
  the angles expanded to every head in fp32 (`.expand(...).to(float32)`: T*H*S written);
  B and C RMS-normed (`layernorm_gated._layer_norm_fwd`, one Triton kernel each; the (-1, N) reshape
    of the projection's slice is a view, so no copy), each writing its rows and an fp32 rstd;
  x and z made contiguous by `mamba3_siso_fwd` (2 copies of T*d_inner);
  `angle_dt_fwd` (cumulative tanh(angle) * pi * DT, fp32 in and out);
  `torch.zeros` of the per-chunk state store and its decay sums (2 memsets, below);
  the chunked kernel `mamba3_siso_fwd` (grid (H, B): one program per head and sequence walks every
  chunk in turn, so B*H programs however long the sequence: analytic.families.chunk_programs), per
  token and head:
    phase 1: bias, rotation and the diagonal q.k term (2N, on tensor cores via a dot with ones);
             stores the rotated q and the scaled rotated k per head (2 * e * N) and three fp32 scalars
    phase 2: q @ h^T            2 N P    (the carried state's contribution)
             q @ k^T            2 Q N    (intra-chunk scores; the whole Q x Q tile is computed)
             s @ v              2 Q P
             h += v^T k         2 P N    (state passed to the next chunk)
  so  flops = T * H * (4 N P + 2 Q (N + P) + 2 N); its reads are B, C once (other heads hit L2), the
  stored q and k twice (written, read back), x, z, the angles and the scalars; it writes y gated by
  silu(z).
  The layer's call also stores what a backward pass would read (`STORE_SSM_STATES_ADT_OUTV`):
  `_Mamba3Function.forward` sets it from `any(ctx.needs_input_grad)`, and D reaches it as the
  module's Parameter, whose requires_grad autograd reports even under `torch.inference_mode()`
  (checked with torch's own autograd.Function). So the kernel also writes each chunk's bf16 (P, N)
  state per head (e * H * P * N / Q per token, after the memset of the same size), the ungated
  output Out_v (e * H * P per token) and the fp32 cumulative decay (4 * H per token).
  Then out_proj GEMM. Mamba-3 has no convolution (the trapezoidal rule takes its place).
MIMO (R > 1, TileLang `mamba3_mimo`): each token carries R rank rows through the same chunk math,
with Q = chunk_size tokens (R * Q rows) a chunk: flops = T * H * R * (4 N P + 2 R Q (N + P) + 2 N).

Decode (`models.torch_layers.Mamba3Layer.decode`: the Triton `mamba3_siso_step`, since the CuTe-DSL
step of `Mamba3.step` needs nvidia-cutlass-dsl, not in the GPU kit), 20 kernels (17 at batch 1): in_proj GEMM (M = batch);
the same scalar passes over B*H (7) plus the step wrapper's `.contiguous()` of Trap (a strided slice
of the projection): 8 kernels, 60 bytes per sequence and head (6 + 8 + 8 + 8 | 6 + 8 | 12 | 4); the
wrapper's copies of the expanded angles (bf16, B*H*S) and of x and z (strided slices); the B and C
norms (2). At batch 1 the slices of Trap, x and z are one row, already contiguous: 3 kernels fewer; the step kernel per (head, sequence):
    a = exp(ADT), h = a h + (a DT (1 - trap)) v_prev k_prev^T + (trap DT) v k^T, y = h q + D v, * silu(z)
about 7 P N flops per head, reading the fp32 state and writing a new one (4 bytes each way), plus q, k,
the previous k and v, and the angle state; the wrapper returns new state tensors, which the layer
copies into its cache (4 copies: SSM, angle, k, v; one more fp32 read and write of the SSM state);
out_proj GEMM. Nothing depends on the context length.
"""

from __future__ import annotations

import numpy as np

from analytic.families.chunk_programs import program_bytes
from analytic.ops import (ELEMENTWISE, MAMBA3_CHUNK, MAMBA3_MIMO_CHUNK, MAMBA3_STEP, SSD, STATE_UPDATE, Op,
                          elementwise, gemm)

FP32 = 4
PREFILL_PREP_KERNELS, PREFILL_PREP_BYTES = 10, 76  # dt_A_trap_prep's passes and bytes per token and head
DECODE_PREP_KERNELS, DECODE_PREP_BYTES = 8, 60
# The layer's prefill stores the per-chunk states, Out_v and the decay for a backward pass (docstring).
STORES_BACKWARD_STATES = True
STEP_MATVEC_FLOPS = 2.0  # per state element: y = h q
STEP_ELEMENTWISE_FLOPS = 5.0  # per state element: a h, and the two rank-1 terms' multiply-adds


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


def _prep(spec, rows: np.ndarray, e: int, decode: bool) -> list[Op]:
    """Per-head scalars, angles, B/C norms and the contiguous copies the kernels' wrappers make, over
    `rows` tokens (T in prefill, B in decode; module docstring). In decode the copies of Trap, x and z
    run only for batch > 1: a one-row slice of the projection is already contiguous."""
    H, S, bc, di, G = spec.nheads, spec.num_rope_angles, spec.bc_dim, spec.d_inner, spec.ngroups * spec.mimo_rank
    if decode:
        rows_copied = rows * (rows > 1)
        passes = DECODE_PREP_KERNELS - 1 + (rows > 1)  # Trap's copy (4 of its 60 bytes)
        prep_bytes = (DECODE_PREP_BYTES - 4) * rows * H + 4 * rows_copied * H
        copies = np.where(rows > 1, 2, 0)
    else:
        rows_copied, passes, prep_bytes, copies = rows, PREFILL_PREP_KERNELS, PREFILL_PREP_BYTES * rows * H, 2
    cold = {"cold_kernels": 2} if decode else {}
    angles = e * rows * H * S if decode else FP32 * rows * H * S  # bf16 copy of the expand, or its fp32 cast
    return [
        Op("dt_A_trap_prep", ELEMENTWISE, 10.0 * rows * H, prep_bytes, passes, {"elements": rows * H, **cold}),
        Op("angles_expand", ELEMENTWISE, rows * H * S, e * rows * S + angles, 1, {"elements": rows * H * S}),
        Op("bc_rmsnorm", ELEMENTWISE, 4.0 * 2 * rows * bc, e * 2 * 2 * rows * bc + FP32 * 2 * rows * G, 2,
           {"elements": 2 * rows * bc, **cold}),  # the two norms' weights read cold in decode
        elementwise("xz_contiguous", 2 * rows_copied * di, 2 * rows_copied * di, 0.0, e, kernels=copies),
    ]


def prefill(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    T = b * L
    H, P, N, S, G = spec.nheads, spec.headdim, spec.d_state, spec.num_rope_angles, spec.ngroups * spec.mimo_rank
    Q = spec.chunk_size
    chunks = b * np.ceil(L / Q)
    core_bytes = (e * T * 2 * G * N + FP32 * T * H * S + T * H * (FP32 + e + FP32)  # B, C, angles, DT, trap, ADT
                  + 2 * (2 * e * T * H * N) + 4 * FP32 * T * H  # q, k stored and read back; qk, scale, gamma
                  + 3 * e * T * H * P)  # x, z read; y written
    chunk_states = e * chunks * H * P * N  # one bf16 (P, N) state per chunk and head
    if STORES_BACKWARD_STATES:
        core_bytes = core_bytes + chunk_states + e * T * H * P + FP32 * (T * H + chunks * H)  # states, Out_v, decay
    family, name = (MAMBA3_MIMO_CHUNK, "mamba3_mimo_fwd") if spec.is_mimo else (MAMBA3_CHUNK, "mamba3_siso_fwd")
    store_zeros = ([Op("chunk_state_zeros", ELEMENTWISE, 0.0 * T, chunk_states + FP32 * chunks * H, 2,
                       {"elements": chunk_states / e})] if STORES_BACKWARD_STATES else [])
    return [
        gemm("in_proj", T, spec.d_in_proj, spec.d_model, e),
        *_prep(spec, T, e, decode=False),
        Op("angle_dt", ELEMENTWISE, 4.0 * T * H * S, FP32 * (2 * T * H * S + T * H), 1, {"elements": T * H * S}),
        *store_zeros,
        Op(name, SSD, T * H * chunk_flops_per_token_head(spec), core_bytes, 1,
           {"tokens": T, "chunks": chunks, "family": family, "hparams": _hparams(spec, chunk=True),
            "program_ctas": b * H, "program_chunks": np.ceil(L / Q),  # grid (nheads, batch)
            "program_bytes": program_bytes(P * N + Q * Q, Q * (2 * N + P), e)}),  # the (P, N) state, scores; q, k, v
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
        *_prep(spec, b, e, decode=True),
        Op("mamba3_siso_step", STATE_UPDATE, (STEP_MATVEC_FLOPS + STEP_ELEMENTWISE_FLOPS) * state, step_bytes, 1,
           {"state_elements": state, "batch": b, "family": MAMBA3_STEP, "cold_kernels": 1,
            "hparams": _hparams(spec, chunk=False),
            "ctas": b * H,  # one program per (head, sequence), each over its whole (P, N) state
            "written_bytes": FP32 * state + e * b * H * P}),
        # The wrapper's new states copied into the layer's cache (SSM, angle, k, v): four copy kernels.
        Op("state_copy", ELEMENTWISE, 0.0 * b, 2 * FP32 * state + 2 * e * 2 * small, 4,
           {"elements": state, "cold_kernels": 4, "written_bytes": FP32 * state}),
        gemm("out_proj", b, spec.d_model, spec.d_inner, e),
    ]
