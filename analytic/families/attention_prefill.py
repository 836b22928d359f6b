"""Causal FlashAttention-2 prefill over head dim and query/KV-head ratio (flash-attention
csrc/flash_attn/src/flash_fwd_launch_template.h, as vendored in PyTorch's SDPA flash backend).

On sm80/sm90 the forward kernel runs one CTA per (sequence, query head, 128-row query block) with
kBlockM = 128 and kBlockN = 128 key columns for head dims <= 64, 64 above (4 warps, 8 at head dim
> 128); a row block under the causal mask computes its key blocks up to the diagonal, which in units
of 128 x 128 tiles is i + 1 tiles for row block i whatever kBlockN. GQA indexes the KV head as query
head / ratio, so the ratio changes bytes, not tiles. Each tile costs its two GEMMs' 4 * hd * 128 * 128
FLOPs on the tensor cores plus the online softmax on its 128 x 128 scores (max, exp, sum, rescale in
FP32, independent of hd): at head dim 64 the softmax is a larger share of a tile than at 128.
A CTA keeps its Q tile and two K/V stages in shared memory, 2 * hd * (kBlockM + 2 * kBlockN) bytes,
which caps how many CTAs an SM holds (one at head dim 256).
"""

from __future__ import annotations

import numpy as np

TILE = 128
SCORE_RATE = "score_rate"  # score elements per second over the whole GPU (absent: FLOPs alone)


def block_n(head_dim) -> np.ndarray:
    return np.where(np.asarray(head_dim) <= 64, 128, 64)


def smem_bytes(head_dim) -> np.ndarray:
    """Shared memory one CTA holds: its bf16 Q tile and double-buffered K and V tiles."""
    hd = np.asarray(head_dim, dtype=np.float64)
    return 2.0 * hd * (TILE + 2 * block_n(hd))


def ctas_per_sm(head_dim, fitted: float, smem_per_sm_bytes: float) -> np.ndarray:
    """Resident CTAs per SM: the calibrated figure, capped by what shared memory holds."""
    return np.minimum(fitted, np.maximum(np.floor(smem_per_sm_bytes / smem_bytes(head_dim)), 1.0))


def tile_seconds(op, flops_s: float, score_rate: float | None) -> np.ndarray:
    """Whole-GPU seconds per 128 x 128 tile: its FLOPs at the tensor rate plus its scores at the
    softmax rate (only where the calibration measured more than one head dim)."""
    t = np.asarray(op.shape["tile_flop"], dtype=np.float64) / flops_s
    if score_rate:
        t = t + TILE * TILE / score_rate
    return t
