"""Memory: weights, KV cache, SSM + conv state, prefill activation peak; the largest batch that fits.

Weights are bf16 parameters. The KV cache grows with context (attention layers only, KV heads
only); the SSM and conv states are fixed per sequence. The activation peak is the largest set of
tensors one layer keeps alive in a prefill forward without autograd: the residual stream plus that
layer's widest intermediates (its in-projection output, conv output, scan output and, for Mamba-2,
the fp32 per-chunk states and C^T B blocks).
"""

from __future__ import annotations

import numpy as np

from analytic.hardware import GPUSpec
from models.specs import ModelSpec

ALLOCATOR_HEADROOM = 0.94  # the caching allocator, CUDA context and workspaces take the rest
FP32 = 4


def _layer_activation_elems_per_token(spec, chunk_tokens: float) -> float:
    if spec.kind == "mamba2":
        per_chunk_state = spec.nheads * spec.headdim * spec.d_state * FP32 / 2 / chunk_tokens
        return (spec.d_in_proj + spec.conv_dim + 2 * spec.d_inner + 2 * per_chunk_state
                + spec.ngroups * spec.chunk_size * FP32 / 2)
    if spec.kind == "mamba3":
        return mamba3_activation_elems_per_token(spec)
    if spec.kind == "gdn":
        return gdn_activation_elems_per_token(spec)
    if spec.kind == "mamba":
        return 2 * spec.d_inner + 4 * spec.d_inner + spec.dt_rank + 2 * spec.d_state
    if spec.kind == "attention":
        return spec.qkv_dim + 2 * spec.q_dim
    return 2 * spec.fc1_out + spec.ffn_hidden  # MLP: fc1 out, activation out (and its temporary)


def mamba3_activation_elems_per_token(spec) -> float:
    """Mamba-3 prefill (analytic/costs/mamba3.py), in bf16 elements per token: the in_proj output, the
    angles expanded to every head and their cumsum (fp32), the normed B and C, contiguous x and z, the
    kernel's stored rotated q and k per head, its three fp32 scalars per head, and y."""
    h = spec.nheads
    return (spec.d_in_proj + 2 * 2 * h * spec.num_rope_angles + 2 * spec.bc_dim + 2 * spec.d_inner
            + 2 * h * spec.d_state + 3 * 2 * h + spec.d_inner)


def gdn_activation_elems_per_token(spec) -> float:
    """Gated DeltaNet prefill (analytic/costs/gdn.py), in bf16 elements per token: the in_proj output,
    the conv output, the L2-normed q and k, w and u, v_new, A (fp32, C per value head), the per-chunk
    states, o and the normed output."""
    hv = spec.n_v_heads
    return (spec.d_in_proj + spec.conv_dim + 2 * spec.key_dim + hv * (spec.head_k_dim + spec.head_v_dim)
            + spec.value_dim + 2 * hv * spec.chunk_size + hv * spec.head_k_dim * spec.head_v_dim / spec.chunk_size
            + 2 * spec.value_dim)


def memory_footprint(spec: ModelSpec, batch, context, dtype_bytes: int = 2, phase: str = "prefill") -> dict:
    """Bytes of each component for `batch` sequences at `context` tokens (numpy-broadcast)."""
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(context, dtype=np.float64)
    weights = float(spec.params * dtype_bytes)
    kv = b * L * spec.kv_bytes_per_token(dtype_bytes)
    state = b * spec.state_bytes_per_sequence(dtype_bytes) + 0.0 * L
    tokens = b * L if phase == "prefill" else b + 0.0 * L
    widest = max(_layer_activation_elems_per_token(layer, getattr(layer, "chunk_size", 1))
                 for layer in spec.layers)
    logits = b * spec.vocab_size * FP32
    activation = tokens * (widest + 3 * spec.d_model) * dtype_bytes + logits
    total = weights + kv + state + activation
    return {"weights_bytes": weights + 0.0 * total, "kv_cache_bytes": kv + 0.0 * total,
            "ssm_state_bytes": state + 0.0 * total, "activation_peak_bytes": activation,
            "total_bytes": total}


def max_batch(spec: ModelSpec, context: int, gpu: GPUSpec, phase: str = "decode", tp: int = 1) -> int:
    """Largest batch whose footprint fits in `gpu`'s memory (0 if not even one sequence fits)."""
    budget = gpu.mem_bytes * ALLOCATOR_HEADROOM
    return largest_batch(lambda b: float(memory_footprint(spec, b, context, phase=phase)["total_bytes"]) / tp
                         <= budget)


def largest_batch(fits, limit: int = 1 << 24) -> int:
    """Largest b >= 0 with fits(b) (fits monotone: doubling, then bisection); capped at `limit`."""
    lo, hi = 0, 1
    while fits(hi):
        lo, hi = hi, hi * 2
        if hi > limit:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
