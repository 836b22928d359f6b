"""The decode step's selective_state_update over d_state, head dim and channels
(mamba_ssm ops/triton/selective_state_update.py).

The Triton kernel runs one program per (block of BLOCK_SIZE_M rows of the head dim, sequence, head),
each over all N states of its rows; BLOCK_SIZE_M falls as d_state grows so that a program holds about
512 state elements (32 rows at N <= 16, 16 at <= 32, 8 at <= 64, 4 at <= 128, 4 with 8 warps above).
Mamba-1's form is one head of d_inner rows. Each program also loads its rows' x, dt, z, D and its
group's B and C and pays the latency of those loads and the exp before its state streams, so a call
costs its bytes at the achieved bandwidth plus a latency per wave of resident programs.
"""

from __future__ import annotations

import numpy as np


def block_rows(d_state: int) -> int:
    """BLOCK_SIZE_M the launcher picks for this state size."""
    return 32 if d_state <= 16 else 16 if d_state <= 32 else 8 if d_state <= 64 else 4


def programs(batch, heads: int, rows_per_head: int, d_state: int) -> np.ndarray:
    """Programs (CTAs) of one call: grid (cdiv(dim, BLOCK_SIZE_M), batch, nheads)."""
    return np.asarray(batch, dtype=np.float64) * heads * np.ceil(rows_per_head / block_rows(d_state))


def wave_latency_s(op, ctas_per_sm: float, wave_s: float, sm_count: int) -> np.ndarray:
    """Latency the call's waves of programs add: ceil(programs / resident programs) x wave_s (0 for an
    op without a program count or a calibration without the term)."""
    if wave_s <= 0 or "ctas" not in op.shape:
        return np.zeros(np.shape(op.flops))
    return np.ceil(np.asarray(op.shape["ctas"], dtype=np.float64) / (sm_count * ctas_per_sm)) * wave_s
