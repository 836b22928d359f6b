"""Causal self-attention costs (GQA or MHA), FlashAttention-style core.

Prefill: QKV projection, partial RoPE on q and k, the fused attention kernel, output projection.
The core never writes the L x L score matrix: it reads Q, K, V once and writes O once
(FlashAttention-2, arXiv 2307.08691). Causal FLOPs: QK^T and PV over the lower triangle,
4 * B * H * hd * L(L+1)/2. The kernel works in 128 x 128 tiles, so the diagonal tiles cost full
tiles: `tile_flops` (used for timing) counts the tiles actually computed.

Decode: one query per sequence against a KV cache of L tokens. Only the new token's K and V are
written; the whole cache of the *KV heads* (not the query heads) is read once.
"""

from __future__ import annotations

import numpy as np

from analytic.ops import ATTN_DECODE, ATTN_PREFILL, Op, elementwise, gemm

TILE = 128


def _rope(spec, tokens: np.ndarray, e: int) -> list[Op]:
    if spec.rotary_fraction <= 0:
        return []
    rot = int(spec.head_dim * spec.rotary_fraction)
    # q and k rotated dims: read x, cos, sin; write x. Eager PyTorch: ~6 kernels per tensor.
    elems = tokens * (spec.n_heads + spec.n_kv_heads) * rot
    return [elementwise("rope", 2 * elems, elems + tokens * (spec.n_heads + spec.n_kv_heads) * spec.head_dim,
                        3.0, e, kernels=12)]


def prefill(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    tokens = b * L
    h, hkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
    flops = 4.0 * b * h * hd * L * (L + 1) / 2
    n_tiles = np.ceil(L / TILE)
    tile_flops = 4.0 * b * h * hd * (TILE * TILE) * n_tiles * (n_tiles + 1) / 2
    bytes_ = e * tokens * (2 * h * hd + 2 * hkv * hd)  # read Q, K, V; write O
    core = Op("flash_attention", ATTN_PREFILL, flops, bytes_, 1,
              {"tile_flops": tile_flops, "ctas": b * h * n_tiles, "seqlen": L})
    return [gemm("qkv_proj", tokens, spec.qkv_dim, spec.d_model, e), *_rope(spec, tokens, e),
            core, gemm("out_proj", tokens, spec.d_model, spec.q_dim, e)]


def decode(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64) + 0.0 * b
    h, hkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
    ctx = L + 1  # the cache holds L tokens, plus the new one
    kv_read = e * b * ctx * 2 * hkv * hd
    flops = 4.0 * b * h * hd * ctx
    core = Op("attention_decode", ATTN_DECODE, flops, kv_read + e * b * 2 * h * hd, 1,
              {"ctas": b * h, "kv_bytes": kv_read, "seqlen": ctx})
    append = elementwise("kv_append", b * 2 * hkv * hd, b * 2 * hkv * hd, 0.0, e, kernels=2)
    return [gemm("qkv_proj", b, spec.qkv_dim, spec.d_model, e), *_rope(spec, b, e), append, core,
            gemm("out_proj", b, spec.d_model, spec.q_dim, e)]
