"""FlashAttention-2 decode's CTAs over head dim (flash-attention csrc/flash_attn/src/flash_fwd_kernel.h,
`compute_attn_1rowblock_splitkv`, with the split-KV kernel traits of flash_fwd_launch_template.h).

Each CTA takes kBlockM = 64 query rows (the G query heads of one KV head ride as G of them, the rest
is padding) and walks its keys in blocks of kBlockN = 256 / 128 / 64 keys at head dim <= 64 / 128 /
more, so every block moves the same 64 KB of K and V (kBlockN x hd x 2 tensors x 2 bytes). Per block
it computes 64 x kBlockN scores, padded rows included, and their online softmax (max, exp, sum,
rescale in FP32): 64 / (4 hd) score elements per cache byte, twice as many at head dim 64 as at 128.
So a CTA's time per byte is  1 / bw_per_cta + scores_per_byte x cta_score_s, and its streaming rate
falls with the head dim (H100: hd 64 samples 6-16 % slower and hd 256 ones up to 37 % faster than a
head-dim-blind per-CTA rate).
"""

from __future__ import annotations

import numpy as np

CTA_SCORE_S = "cta_score_s"  # seconds one CTA spends per padded score element (absent: 0)
BLOCK_M = 64  # query rows per CTA, padded


def scores_per_byte(head_dim, element_bytes: int = 2) -> np.ndarray:
    """Padded score elements a CTA computes per byte of K and V it streams."""
    return BLOCK_M / (2.0 * np.asarray(head_dim, dtype=np.float64) * element_bytes)


def per_cta_rate(bw_per_cta: float, score_s: float, head_dim) -> np.ndarray:
    """Bytes per second one CTA streams with its scores' softmax in its loop (bw_per_cta where
    score_s is 0)."""
    return 1.0 / (1.0 / bw_per_cta + score_s * scores_per_byte(head_dim))
