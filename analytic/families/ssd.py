"""Mamba-2's chunked scan (SSD) over head dim, state size and chunk size (mamba_ssm
ops/triton/ssd_chunk_state.py, ssd_state_passing.py, ssd_chunk_scan.py).

Three effects beyond bytes and FLOPs, each one calibrated term (absent: 0, today's shape-blind figure):

- Head-dim tiles (`HEADDIM_TILE_WEIGHT`, w). `_chunk_state_fwd` and `_chunk_scan_fwd` run one small
  GEMM per (chunk, head) whose P side is the head dim: its autotuned tiles are at most 128 wide there,
  and a narrow tile reloads its other operand (CB, C or B: Q x Q and Q x N per head) once per P / tile.
  The operand traffic per FLOP grows as 1 / min(P, 128), so their work is
      flops x (1 + w (128 / min(P, 128) - 1)),
  1 at head dim 128 and 1 + 3w at 32. Measured (H100, d_inner 8192): head dim 32 runs 1.43x the time
  of 64 at the same H x P, 128 runs 0.93x; the shape-blind model put all three within 10 %.
- Working set (`WORKING_SET_BYTES` r, `WORKING_SET_SLOWDOWN` s). `_chunk_state_fwd` writes one fp32
  (P, N) state per (chunk, head), `_state_passing_fwd` reads them all back: the per-token work is the
  same at every length, but once these states outgrow r the kernels run slower per token (H100, the
  8B layer: 84 ns a token up to 0.8 GB of states, 90 at 1.2 GB, 100 from 2.4 GB on, at any batch and
  length; d_state 256: +14 % per token from 1.6 to 2.4 GB), as address translation stops covering
  the buffers. The call's time is scaled by 1 + s clip(log2(bytes / r), 0, 1).
- Causal row blocks (`CAUSAL_BLOCK_M`, M). `_chunk_scan_fwd_kernel` splits a chunk's Q rows into
  BLOCK_SIZE_M blocks and runs each block's K loop to the block's end (`K_MAX = min((pid_m + 1) *
  BLOCK_SIZE_M, chunk_size)`), masking the upper triangle instead of skipping it: a chunk of Q rows runs
  Q (Q + min(M, Q)) / 2 of the Q^2 / 2 intra-chunk products counted. Per token and head dim the kernel
  counts Q/2 + N (intra-chunk, then C times the carried state) and runs (Q + min(M, Q))/2 + N, so
      flops x (Q + min(M, Q) + 2N) / (Q + 2N):
  1.33 at Q 128, N 128 and M 128; 1.25 at Q 256. The counted FLOPs made chunk 256 4 % slower a token
  than chunk 128 where the H100 samples ran it 6-8 % faster (d_model 4096, 8 groups).
"""

from __future__ import annotations

import numpy as np

HEADDIM_TILE_WEIGHT = "headdim_tile_weight"
WORKING_SET_BYTES = "working_set_bytes"
WORKING_SET_SLOWDOWN = "working_set_slowdown"
CAUSAL_BLOCK_M = "causal_block_m"
PARAMS = (HEADDIM_TILE_WEIGHT, WORKING_SET_BYTES, WORKING_SET_SLOWDOWN, CAUSAL_BLOCK_M)
MAX_TILE = 128  # the widest autotuned tile on the head-dim side of the two per-(chunk, head) GEMMs
HEADDIM_TILED = ("ssd_chunk_state", "ssd_chunk_scan")
CAUSAL_BLOCKED = "ssd_chunk_scan"


def headdim_factor(op, weight: float) -> float:
    """Work per FLOP of a head-dim-tiled SSD kernel over its FLOPs at 128-wide tiles (1 elsewhere)."""
    hparams = (op.shape or {}).get("hparams", {})
    if weight <= 0 or op.name not in HEADDIM_TILED or "headdim" not in hparams:
        return 1.0
    return 1.0 + weight * (MAX_TILE / min(float(hparams["headdim"]), MAX_TILE) - 1.0)


def causal_block_factor(op, block_m: float) -> float:
    """Products `_chunk_scan_fwd` runs over those it counts, with `block_m`-row causal blocks (1 for the
    other kernels, an op without a chunk size and state size, or block_m 0: the term off)."""
    hparams = (op.shape or {}).get("hparams", {})
    if block_m <= 0 or op.name != CAUSAL_BLOCKED or "chunk_size" not in hparams or "d_state" not in hparams:
        return 1.0
    chunk, state = float(hparams["chunk_size"]), float(hparams["d_state"])
    return (chunk + min(float(block_m), chunk) + 2.0 * state) / (chunk + 2.0 * state)


def work_factor(op, extra: dict) -> float:
    """Work per counted FLOP of an SSD kernel under a class ceiling's terms (`extra`): head-dim tiles
    times causal row blocks."""
    return (headdim_factor(op, extra.get(HEADDIM_TILE_WEIGHT, 0.0))
            * causal_block_factor(op, extra.get(CAUSAL_BLOCK_M, 0.0)))


def working_set_factor(op, reach_bytes: float, slowdown: float) -> np.ndarray:
    """How much slower an SSD kernel runs with its fp32 chunk states over `reach_bytes` (1 below it,
    1 + slowdown from twice it on; 1 for an op without a state size or a calibration without the term)."""
    state = (op.shape or {}).get("state_bytes")
    if slowdown <= 0 or reach_bytes <= 0 or state is None:
        return np.ones(np.shape(op.flops))
    over = np.log2(np.maximum(np.asarray(state, dtype=np.float64), 1.0) / reach_bytes)
    return 1.0 + slowdown * np.clip(over, 0.0, 1.0)
