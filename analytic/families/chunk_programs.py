"""Chunked prefill kernels whose programs each walk a whole sequence, chunk after chunk.

Mamba-3's `mamba3_siso_fwd` (mamba_ssm 2.3.2 `ops/triton/mamba3/mamba3_siso_fwd.py`, grid (nheads, batch))
and fla's state-passing kernel `chunk_gated_delta_rule_fwd_kernel_h_blockdim64` (fla 0.6.0
`ops/common/chunk_delta_h.py`, grid (cdiv(V, BV), batch * HV)) carry the recurrent state in registers
from one chunk to the next, so a program cannot be split over the sequence: a call has only
batch x heads (x V / BV) programs, however long the sequence. When they number fewer than the SMs'
resident program slots, or leave a last wave part-full, the idle slots cost time: the call takes
ceil(programs / slots) waves of one program's duration, not programs / slots. The call's
FLOPs and bytes at the rate of a full GPU are stretched by that fill factor.

How many programs an SM holds (its slots) is set by the program's on-chip footprint, the tiles of one
chunk and the fp32 state it carries (`program_bytes`): an SM holds as many as fit a calibrated budget
(`PROGRAM_BUDGET`, bytes), at least one. A program's time is its chunks in turn, each paying a fixed
latency (`CHUNK_LATENCY`: its dependent loads, dots and exponentials, which one program cannot overlap)
and its FLOPs at one program's share of an SM. On the H100 Mamba-3 chunk samples (2026-12-07, d_state 64
and 128, 32-128 heads) the d_state 128 programs run one to an SM at ~13.9 us a chunk and the d_state 64
ones two to an SM at ~9.5 us: neither a constant slot count nor a FLOP rate alone gives both
(docs/notes/2026-12-07-sequence-programs.md).
"""

from __future__ import annotations

import numpy as np

CTAS_PER_SM = "ctas_per_sm"  # resident programs per SM: the fitted term (1 until a calibration fits it)
PROGRAM_BUDGET = "program_budget_bytes"  # on-chip bytes an SM gives these programs (slots = budget // footprint)
CHUNK_LATENCY = "chunk_latency_s"  # a program's fixed time per chunk beyond its FLOPs
MAX_SLOTS = 8  # programs of 4 warps an SM holds at most under any footprint (register file, 64 warps / 2)
FP32 = 4


def program_bytes(fp32_elements: float, tile_elements: float, e: int) -> float:
    """One sequence-long program's on-chip footprint: its fp32 state and scores, one chunk's input
    tiles of `e` bytes."""
    return FP32 * fp32_elements + e * tile_elements


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


def resident_programs(footprint, budget: float) -> np.ndarray:
    """Programs an SM holds: as many footprints as fit `budget`, at least 1, at most MAX_SLOTS."""
    f = np.maximum(np.asarray(footprint, dtype=np.float64), 1.0)
    return np.clip(np.floor(budget / f), 1.0, MAX_SLOTS)


def sequence_programs(op) -> bool:
    """Whether the op names its sequence-long programs and their footprint (costs/mamba3.py, gdn.py)."""
    return bool(op.shape) and "program_ctas" in op.shape and "program_bytes" in op.shape


def sequence_program_time(op, work, flops_s: float, budget: float, chunk_latency_s: float,
                          sm_count: int) -> np.ndarray:
    """Seconds of the op's programs: waves of resident programs, each walking its chunks in turn at
    `chunk_latency_s` plus its FLOPs at one program's rate (`flops_s` is the GPU's with one program an SM)."""
    programs = np.maximum(np.asarray(op.shape["program_ctas"], dtype=np.float64), 1.0)
    chunks = np.maximum(np.asarray(op.shape["program_chunks"], dtype=np.float64), 1.0)
    slots = sm_count * resident_programs(op.shape["program_bytes"], budget)
    waves = np.ceil(programs / slots)
    per_chunk = np.asarray(work, dtype=np.float64) / (programs * chunks)
    return waves * chunks * (chunk_latency_s + per_chunk * sm_count / flops_s)
