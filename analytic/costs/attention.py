"""Causal self-attention costs (GQA or MHA), FlashAttention-style core.

Prefill: QKV projection, partial RoPE on q and k, the fused attention kernel, output projection.
The core never writes the L x L score matrix: it reads Q, K, V once and writes O once
(FlashAttention-2, arXiv 2307.08691). Causal FLOPs: QK^T and PV over the lower triangle,
4 * B * H * hd * L(L+1)/2. The kernel works in 128 x 128 tiles, so the diagonal tiles cost full
tiles: `tile_flops` (used for timing) counts the tiles actually computed.

Decode: one query per sequence against a KV cache of L tokens. Only the new token's K and V are
written; the whole cache of the *KV heads* (not the query heads) is read once.

Dense-decoder extensions (transformers `Qwen2Attention`, `Qwen3Attention`):
- q/k/v biases (`qkv_bias`, or `bias` with the output's too) ride in the GEMM's epilogue (torch's
  addmm -> cuBLASLt bias epilogue): no kernel of their own; the bias vector's N x e bytes are read,
  and its T x N adds are left out of the FLOPs as torch's FLOP counter leaves them out.
- q/k RMSNorm (`qk_norm`) over each head's head_dim channels, before RoPE: `F.rms_norm` on CUDA is
  `_fused_rms_norm_cuda`, which first makes its input contiguous; q and k are column slices of the
  QKV output, so each costs a copy (read, write) and the norm (read, write, the weight): 4 kernels,
  2 (T (H + H_kv) hd) reads and as many writes, ~4 FLOPs an element (square, sum, scale, weight).
"""

from __future__ import annotations

import numpy as np

from dataclasses import replace

from analytic.ops import ATTN_DECODE, ATTN_PREFILL, ROPE, Op, elementwise, gemm

TILE = 128


def _rope(spec, tokens: np.ndarray, e: int) -> list[Op]:
    """Rotate-half RoPE in eager PyTorch (models.reference.apply_rope): per tensor (q, k) four
    multiplies, a subtract, an add on the rotated half and a cat that rewrites the whole head."""
    if spec.rotary_fraction <= 0:
        return []
    rot = int(spec.head_dim * spec.rotary_fraction)
    heads = spec.n_heads + spec.n_kv_heads
    half = tokens * heads * rot / 2
    full = tokens * heads * spec.head_dim
    # 4 muls (read half, write half) + sub + add (read 2 halves, write half) + cat (read/write full)
    # Per tensor, 4 of the 7 kernels (x1*cos, x2*sin, x2*cos, x1*sin) read the cos/sin tables.
    op = elementwise("rope", 4 * half + 4 * half + full, 6 * half + full, 1.0, e, kernels=14, cold_kernels=8)
    return [replace(op, shape={**op.shape, "family": ROPE})]


def _qkv_proj(spec, tokens: np.ndarray, e: int) -> Op:
    op = gemm("qkv_proj", tokens, spec.qkv_dim, spec.d_model, e)
    return replace(op, bytes_=op.bytes_ + e * spec.qkv_dim) if spec.has_qkv_bias else op


def _out_proj(spec, tokens: np.ndarray, e: int) -> Op:
    op = gemm("out_proj", tokens, spec.d_model, spec.q_dim, e)
    return replace(op, bytes_=op.bytes_ + e * spec.d_model) if spec.bias else op


def _qk_norm(spec, tokens: np.ndarray, e: int) -> list[Op]:
    """Copy + RMSNorm of q and of k (see the module docstring). Its kernels run beyond the host chain
    calibrated for attention, so a calibrated chain does not cover them (`beyond_host_chain`)."""
    if not spec.qk_norm:
        return []
    elems = tokens * (spec.n_heads + spec.n_kv_heads) * spec.head_dim
    op = elementwise("qk_norm", 2 * elems, 2 * elems, 2.0, e, kernels=4, cold_kernels=2)
    return [replace(op, shape={**op.shape, "beyond_host_chain": True})]


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
              {"tile_flops": tile_flops, "ctas": b * h * n_tiles, "seqlen": L, "n_tiles": n_tiles,
               "tile_flop": 4.0 * hd * TILE * TILE, "head_dim": hd,
               "hparams": {"head_dim": hd, "gqa_ratio": h // hkv}})
    # SDPA's flash and cuDNN kernels write O in (B, L, H, hd) memory order, so the transpose back to
    # (B, L, H*hd) is a view: no copy kernel runs before out_proj (H100 kernel traces, 2026-11-24).
    return [_qkv_proj(spec, tokens, e), *_qk_norm(spec, tokens, e), *_rope(spec, tokens, e),
            core, _out_proj(spec, tokens, e)]


def decode(spec, batch, seqlen, e: int = 2) -> list[Op]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64) + 0.0 * b
    h, hkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
    ctx = L + 1  # the cache holds L tokens, plus the new one
    kv_read = e * b * ctx * 2 * hkv * hd
    flops = 4.0 * b * h * hd * ctx
    # The G query heads that share a KV head ride as G query rows of one CTA (models.torch_layers
    # folds them; FlashAttention-2 decode does the same), so B * n_kv_heads CTAs stream the cache.
    core = Op("attention_decode", ATTN_DECODE, flops, kv_read + e * b * 2 * h * hd, 1,
              {"ctas": b * hkv, "kv_bytes": kv_read, "seqlen": ctx, "head_dim": hd,
               "hparams": {"head_dim": hd, "gqa_ratio": h // hkv}})
    # k and v stored into the cache: both kernels touch it cold.
    append = elementwise("kv_append", b * 2 * hkv * hd, b * 2 * hkv * hd, 0.0, e, kernels=2, cold_kernels=2)
    # Folding q is a view (q is a column slice of the QKV output): H100 decode traces show no kernel
    # between the KV append and the flash kernels.
    return [_qkv_proj(spec, b, e), *_qk_norm(spec, b, e), *_rope(spec, b, e), append, core,
            _out_proj(spec, b, e)]
