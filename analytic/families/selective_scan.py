"""Mamba-1's CUDA selective scan over d_state and d_inner (mamba_ssm csrc/selective_scan).

`selective_scan_fwd_kernel.cuh` launches one block per (sequence, channel) (kNRows = 1) and walks the
sequence in chunks of kNThreads x kNItems tokens. For each chunk every thread loads its tokens' u,
delta and z (per channel, whatever d_state), then loops over the N states: exp(delta * A), the
block-wide scan, C * h. So a block's time per token is  c * (N + n0): the state loop plus a fixed
per-channel share (loads, softplus, the D skip, the z gate, the output store) worth n0 states.
At d_state 128 n0 is lost in N (the paper's layers); at 16 it is most of the time: timed on
9 * padded elements * N alone, a d_state 16 layer is predicted too fast.
Blocks run whole sequences, so the kernel lasts ceil(blocks / slots) waves of blocks: a small
d_inner at batch 1 leaves SMs idle in the last wave.
"""

from __future__ import annotations

import numpy as np

STATE_OVERHEAD = "state_overhead"  # n0: per-channel work in units of one state's work
BLOCK_SLOTS = "block_slots"  # resident blocks on the whole GPU (0: no wave quantisation)


def scan_work(op, state_overhead: float = 0.0, block_slots: float = 0.0) -> np.ndarray:
    """The scan's work in FLOP-equivalents: 9 FLOPs per chunk-padded (token, channel, state), plus the
    per-channel share (n0 states) and the idle slots of a partly filled last wave of blocks.
    With n0 = 0 and no slots it is the padded FLOPs the rate tables were first fitted on."""
    padded = np.asarray(op.shape["padded_elements"], dtype=np.float64)
    work = 9.0 * padded
    if state_overhead > 0 and "d_state" in op.shape:
        work = work * (op.shape["d_state"] + state_overhead) / op.shape["d_state"]
    if block_slots > 0 and "blocks" in op.shape:
        blocks = np.maximum(np.asarray(op.shape["blocks"], dtype=np.float64), 1.0)
        work = work * np.ceil(blocks / block_slots) * block_slots / blocks
    return work
