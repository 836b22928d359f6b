"""Memory: weights, KV cache, SSM + conv state, prefill activation peak; the largest batch that fits.

Weights are bf16 parameters. The KV cache grows with context (attention layers only, KV heads
only); the SSM and conv states are fixed per sequence. The activation peak is the largest set of
tensors one layer keeps alive in a prefill forward without autograd: the residual stream plus that
layer's widest intermediates (its in-projection output, conv output, scan output and, for Mamba-2,
the fp32 per-chunk states and C^T B blocks). Under tensor parallelism each GPU holds one rank's
share (`memory_per_gpu`).
"""

from __future__ import annotations

import numpy as np

from analytic.hardware import GPUSpec
from models.sharding import check_tp, shard_layer, shard_model
from models.specs import ModelSpec

ALLOCATOR_HEADROOM = 0.94  # the caching allocator, CUDA context and workspaces take the rest
FP32 = 4


def _layer_activation_elems_per_token(spec, chunk_tokens: float) -> float:
    if spec.kind == "mamba2":
        per_chunk_state = spec.nheads * spec.headdim * spec.d_state * FP32 / 2 / chunk_tokens
        return (spec.d_in_proj + spec.conv_dim + 2 * spec.d_inner + 2 * per_chunk_state
                + spec.ngroups * spec.chunk_size * FP32 / 2)
    if spec.kind == "mamba":
        return 2 * spec.d_inner + 4 * spec.d_inner + spec.dt_rank + 2 * spec.d_state
    if spec.kind == "attention":
        return spec.qkv_dim + 2 * spec.q_dim
    return 2 * spec.fc1_out + spec.ffn_hidden  # MLP: fc1 out, activation out (and its temporary)


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


def memory_per_gpu(spec: ModelSpec, batch, context, tp: int = 1, dtype_bytes: int = 2,
                   phase: str = "prefill") -> dict:
    """`memory_footprint` of one rank of `tp`: weights, KV cache and SSM state split N ways.

    Sharded: every mixer weight, the embedding and the LM head (vocabulary-parallel), the KV
    cache (KV heads split) and the SSM/conv states (heads, groups or channels split). Replicated:
    norms, the residual stream and the gathered (B, V) logits. Identical to memory_footprint at tp=1.
    """
    tp = check_tp(tp)
    mem = memory_footprint(shard_model(spec, tp), batch, context, dtype_bytes, phase=phase)
    if tp > 1:  # all ranks hold the gathered bf16 logits besides their own V/N slice
        gathered = np.asarray(batch, dtype=np.float64) * spec.vocab_size * dtype_bytes + 0.0 * mem["total_bytes"]
        mem["activation_peak_bytes"] = mem["activation_peak_bytes"] + gathered
        mem["total_bytes"] = mem["total_bytes"] + gathered
    return mem


def layer_memory_bytes(spec, batch, context, tp: int = 1, phase: str = "prefill") -> np.ndarray:
    """One GPU's bytes for a lone layer (one rank's shard of it): its weights, cache or state and
    activation peak, without the embedding, LM head and logits a model adds."""
    local = shard_layer(spec, tp)
    model = ModelSpec(name="_", d_model=local.d_model, vocab_size=1, pattern=local.letter, **{local.kind: local})
    mem = memory_footprint(model, batch, context, phase=phase)
    b = np.asarray(batch, dtype=np.float64)
    return mem["total_bytes"] - model.embedding_params * 2 * 2 - b * 4  # no embedding/head/logits


def footprint_bytes(target_kind: str, spec, phase: str, batch, context, tp: int = 1) -> np.ndarray:
    """Total bytes on each GPU of a prediction's target ("model" or "layer") at degree `tp`."""
    if target_kind == "model":
        return memory_per_gpu(spec, batch, context, tp, phase=phase)["total_bytes"]
    return layer_memory_bytes(spec, batch, context, tp, phase)


def fits_in_memory(memory_bytes, gpu: GPUSpec) -> np.ndarray:
    """Whether a footprint fits one GPU (with the allocator's headroom): a time is still predicted
    for points that do not, so a user sees both."""
    return np.asarray(memory_bytes) <= gpu.mem_bytes * ALLOCATOR_HEADROOM


def max_batch(spec: ModelSpec, context: int, gpu: GPUSpec, phase: str = "decode", tp: int = 1) -> int:
    """Largest batch whose per-GPU footprint fits each of the `tp` GPUs (0 if not even one sequence fits)."""
    budget = gpu.mem_bytes * ALLOCATOR_HEADROOM
    shard_model(spec, check_tp(tp))  # an invalid split fails here, not inside the search
    return largest_batch(lambda b: float(memory_per_gpu(spec, b, context, tp, phase=phase)["total_bytes"])
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
