"""Gated DeltaNet layer costs (arXiv 2412.06464; flash-linear-attention 0.6.0 `ops/gated_delta_rule`,
as `models.torch_layers.GatedDeltaNetLayer` runs them in the Qwen3-Next layer's order).

Symbols: T = B*L tokens, Hk key heads and Hv value heads of Dk and Dv dims, C = chunk size (64),
w = conv width, e = bf16 bytes; key_dim = Hk*Dk, value_dim = Hv*Dv, conv_dim = 2 key_dim + value_dim.

Prefill: in_proj GEMM d -> [q, k, v, z, b, a]; causal_conv1d (silu) over q, k, v (conv_dim channels);
q and k L2-normed (`l2norm_fwd`, two passes); beta = sigmoid(b); then the chunked delta rule
(`chunk_gated_delta_rule_fwd`): the gate g = -exp(A_log) softplus(a + dt_bias) cumulated within each
chunk (`gdn_gate_chunk_cumsum`, fp32) and three kernels, per token and value head:
    intra (`chunk_gated_delta_rule_fwd_intra` at C = 64: A zeroed, the fused kkt + solve_tril kernel,
           recompute_w_u: 3 kernels; A is bf16)
          beta k k^T           2 C Dk
          (I + A)^-1           C^2 / 3   (the lower-triangular solve, per token)
          w = A (beta k e^g)   2 C Dk
          u = A (beta v)       2 C Dv        writes w (Dk), u (Dv) and A (C)
    h     v_new = u - w h      2 Dk Dv
          h = e^g h + k^T v_new 2 Dk Dv      writes one bf16 (Dk, Dv) state per chunk and v_new
    o     q h                  2 Dk Dv
          q k^T (masked)       2 C Dk
          (q k^T) v_new        2 C Dv        writes o
The per-chunk states are Hv Dk Dv / C elements per token (8K at the 8B shapes): as in Mamba-2's SSD,
they outweigh the token's own q, k, v, so the cost model keeps them. Then the gated RMSNorm over Dv
(`FusedRMSNormGated`, silu(z)) and out_proj GEMM.
fla's `@input_guard` makes every tensor argument contiguous: q, k, v (strided slices of the conv's
output, row stride conv_dim), the gate input a and beta's b (slices of the projection) before the
chunk function, and z before the gated norm: 6 copy kernels (`fla_input_copies`).
The state-passing kernel (`chunk_gated_delta_rule_fwd_kernel_h_blockdim64`, fla `ops/common/
chunk_delta_h.py`) runs grid (cdiv(Dv, BV), B*Hv), each program walking its sequence's chunks in turn:
B*Hv*Dv/BV programs however long the sequence (BV 32 as tuned at a short first call: STATE_PASSING_BV)
(analytic.families.chunk_programs). The other chunk kernels run one program per chunk.

Decode: in_proj GEMM (M = batch); causal_conv1d_update on the (conv_dim, w) conv state; fla's
`fused_recurrent_gated_delta_rule` kernel with L2 norm, gate and sigmoid inside, reading the fp32
(Hv, Dk, Dv) state and writing the new one (4 bytes each way): per value head the decay (Dk Dv),
h^T k (2 Dk Dv), the rank-1 update (2 Dk Dv), h^T q (2 Dk Dv): 7 Dk Dv flops; the layer copies the
returned state into its cache (one more fp32 read and write; serving engines pass the cache as the
output instead); the gated RMSNorm; out_proj GEMM. Nothing depends on the context length.
The same 6 input copies run for batch > 1; at batch 1 the one-row slices are already contiguous
and fla copies nothing.
"""

from __future__ import annotations

import numpy as np

from analytic.families.chunk_programs import program_bytes
from analytic.ops import CONV1D, ELEMENTWISE, GDN_CHUNK, GDN_STEP, SSD, STATE_UPDATE, Op, elementwise, gemm

FP32 = 4
RECURRENT_BV = 8  # fused_recurrent_gated_delta_rule_fwd: BV = min(8, next_power_of_2(V))
# chunk_gated_delta_rule_fwd_kernel_h_blockdim64 autotunes BV in {32, 64} on Hopper under a key without the
# batch or the length (H, HV, K, V, BT): the pick made at the process's first call holds for every shape
# after it. A first call on a short prompt (the calibration's and the harness's) has fewer programs than
# SMs, where BV 32's twice as many programs run it faster; the H100 family samples fit 4.8 % median with 32,
# 10.3 % with 64 (docs/notes/2026-12-07-sequence-programs.md).
STATE_PASSING_BV = 32
STEP_MATVEC_FLOPS = 4.0  # per state element: h^T k and h^T q (2 each)
STEP_ELEMENTWISE_FLOPS = 3.0  # per state element: h *= exp(g), h += k delta^T (a multiply and an add)


def chunk_flops_per_token_head(spec) -> float:
    """Tensor-core FLOPs of the three chunk kernels per token and value head (module docstring)."""
    C, K, V = spec.chunk_size, spec.head_k_dim, spec.head_v_dim
    intra = 4.0 * C * K + 2.0 * C * V + C * C / 3.0
    return intra + 4.0 * K * V + (2.0 * K * V + 2.0 * C * K + 2.0 * C * V)


def chunk_hparams(spec) -> dict:
    """What the chunk and step kernels' time depends on beyond FLOPs and bytes (analytic.coverage)."""
    return {"head_k_dim": spec.head_k_dim, "head_v_dim": spec.head_v_dim,
            "gqa_ratio": spec.n_v_heads // spec.n_k_heads, "chunk_size": spec.chunk_size}


def _conv(spec, tokens: np.ndarray, e: int) -> Op:
    cd, w = spec.conv_dim, spec.d_conv
    return Op("conv1d", CONV1D, 2.0 * w * tokens * cd, e * 2 * tokens * cd + e * cd * w, 1,
              {"elements": tokens * cd, "hparams": {"channels": cd, "d_conv": w}})


def _input_copies(spec, tokens: np.ndarray, e: int, kernels=6) -> Op:
    """fla's `@input_guard` copies of q, k, v, a, b and z (module docstring): read and written once."""
    elements = tokens * (2 * spec.key_dim + 2 * spec.value_dim + 2 * spec.n_v_heads)
    return elementwise("fla_input_copies", elements, elements, 0.0, e, kernels=kernels)


def prefill(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    T = b * L
    C, Hv, K, V = spec.chunk_size, spec.n_v_heads, spec.head_k_dim, spec.head_v_dim
    kd, vd = spec.key_dim, spec.value_dim
    chunks = b * np.ceil(L / C)
    states = chunks * Hv * K * V  # one (Dk, Dv) state per chunk and value head
    ssd = {"tokens": T, "chunks": chunks, "family": GDN_CHUNK, "hparams": chunk_hparams(spec)}
    per_head = T * Hv
    return [
        gemm("in_proj", T, spec.d_in_proj, spec.d_model, e),
        _conv(spec, T, e),
        _input_copies(spec, T, e),
        elementwise("qk_l2norm", 2 * T * kd, 2 * T * kd, 4.0, e, kernels=2),
        elementwise("beta_sigmoid", per_head, per_head, 4.0, FP32),
        # the gate -exp(A_log) softplus(a + dt_bias), cumulated within each chunk (fp32 out)
        Op("gdn_gate_cumsum", SSD, 8.0 * per_head, (e + FP32) * per_head, 1, ssd),
        # torch.zeros of A, the fused kkt + solve_tril kernel, recompute_w_u: A (bf16, C a row) zeroed,
        # written and read back
        Op("gdn_chunk_intra", SSD, per_head * (4.0 * C * K + 2.0 * C * V + C * C / 3.0),
           e * T * (kd + vd) + FP32 * 2 * per_head + e * per_head * (K + V) + 3 * e * per_head * C, 3, ssd),
        Op("gdn_chunk_h", SSD, per_head * 4.0 * K * V,
           e * T * kd + e * per_head * (K + V) + FP32 * per_head + e * states + e * T * vd, 1,
           {**ssd, "program_ctas": b * Hv * np.ceil(V / STATE_PASSING_BV), "program_chunks": np.ceil(L / C),
            # the (K, BV) fp32 state; one chunk's w, k (C, K) and u (C, BV) tiles
            "program_bytes": program_bytes(K * STATE_PASSING_BV, C * (2 * K + STATE_PASSING_BV), e)}),
        Op("gdn_chunk_o", SSD, per_head * (2.0 * K * V + 2.0 * C * K + 2.0 * C * V),
           e * T * 2 * kd + e * T * vd + e * states + FP32 * per_head + e * T * vd, 1, ssd),
        elementwise("gated_rmsnorm", 2 * T * vd, T * vd, 6.0, e),
        gemm("out_proj", T, spec.d_model, vd, e),
    ]


def decode(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64) + 0.0 * np.asarray(seqlen)
    Hv, K, V, cd, w = spec.n_v_heads, spec.head_k_dim, spec.head_v_dim, spec.conv_dim, spec.d_conv
    kd, vd = spec.key_dim, spec.value_dim
    state = b * Hv * K * V
    return [
        gemm("in_proj", b, spec.d_in_proj, spec.d_model, e),
        Op("conv1d_update", CONV1D, 2.0 * w * b * cd, e * (2 * b * cd * w + 2 * b * cd + cd * w), 1,
           {"elements": b * cd * w, "written_bytes": e * b * cd * (w + 1), "hparams": {"channels": cd, "d_conv": w}}),
        _input_copies(spec, b * (b > 1), e, kernels=np.where(b > 1, 6, 0)),  # one-row slices need no copy
        Op("gdn_fused_recurrent", STATE_UPDATE, (STEP_MATVEC_FLOPS + STEP_ELEMENTWISE_FLOPS) * state,
           2 * FP32 * state + e * b * (2 * kd + 2 * vd) + e * b * 2 * Hv + FP32 * 2 * Hv, 1,
           {"state_elements": state, "batch": b, "family": GDN_STEP, "cold_kernels": 1,
            "ctas": b * Hv * np.ceil(V / RECURRENT_BV),  # grid (V/BV * B * Hv): BV = 8 value columns a program
            "hparams": {k: v for k, v in chunk_hparams(spec).items() if k != "chunk_size"},
            "written_bytes": FP32 * state + e * b * vd}),
        Op("state_copy", ELEMENTWISE, 0.0 * b, 2 * FP32 * state, 1,
           {"elements": state, "cold_kernels": 1, "written_bytes": FP32 * state}),
        elementwise("gated_rmsnorm", 2 * b * vd, b * vd, 6.0, e, cold_kernels=1),  # its weight
        gemm("out_proj", b, spec.d_model, vd, e),
    ]
