"""Chunked prefill kernels whose programs each walk a whole sequence, chunk after chunk.

Mamba-3's `mamba3_siso_fwd` (mamba_ssm 2.3.2 `ops/triton/mamba3/mamba3_siso_fwd.py`, grid (nheads, batch))
and fla's state-passing kernel `chunk_gated_delta_rule_fwd_kernel_h_blockdim64` (fla 0.6.0
`ops/common/chunk_delta_h.py`, grid (cdiv(V, BV), batch * HV)) carry the recurrent state in registers
from one chunk to the next, so a program cannot be split over the sequence: a call has only
batch x heads (x V / BV) programs, however long the sequence. When they number fewer than the SMs'
resident program slots, or leave a last wave part-full, the idle slots cost time: the call takes
ceil(programs / slots) waves of one program's duration, not programs / slots. The call's
FLOPs and bytes at the rate of a full GPU are stretched by that fill factor.
"""

from __future__ import annotations

import numpy as np

CTAS_PER_SM = "ctas_per_sm"  # resident programs per SM: the fitted term (1 until a calibration fits it)


def wave_fill(programs, slots: float) -> np.ndarray:
    """ceil(programs / slots) x slots / programs: how much longer than a perfectly filled GPU a call of
    `programs` sequence-long programs runs (1 when they fill whole waves, slots / programs below one)."""
    n = np.maximum(np.asarray(programs, dtype=np.float64), 1.0)
    return np.ceil(n / slots) * slots / n


def program_fill(op, ctas_per_sm: float, sm_count: int) -> np.ndarray:
    """The fill factor of an op whose shape names its sequence-long programs ("program_ctas"), else 1."""
    if not op.shape or "program_ctas" not in op.shape:
        return np.ones(np.shape(op.flops))
    return wave_fill(op.shape["program_ctas"], sm_count * max(ctas_per_sm, 1e-9))
