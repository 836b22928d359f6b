"""Kernel-sized operations: the unit the cost model counts and times.

Each `Op` carries FLOPs and bytes as numpy arrays broadcast over the (batch, seqlen) grid, the
number of kernel launches it stands for, and the shape facts its op class needs to be timed
(GEMM M/N/K; attention tiles and CTAs; scan elements). Bytes count each input read once and each
output written once, as a kernel that keeps its intermediates on chip moves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Op classes: each has its own efficiency model in analytic/efficiency.py.
GEMM = "gemm"
ATTN_PREFILL = "attention_prefill"
ATTN_DECODE = "attention_decode"
SELECTIVE_SCAN = "selective_scan"  # Mamba-1 CUDA scan (prefill)
SSD = "ssd"  # Mamba-2 chunked scan kernels (prefill)
STATE_UPDATE = "state_update"  # Mamba-1/2 decode: selective_state_update over the SSM state
CONV1D = "conv1d"  # causal_conv1d (prefill) and causal_conv1d_update (decode)
ELEMENTWISE = "elementwise"  # activations, norms, rotary, adds, copies
OP_CLASSES = (GEMM, ATTN_PREFILL, ATTN_DECODE, SELECTIVE_SCAN, SSD, STATE_UPDATE, CONV1D, ELEMENTWISE)
# Kernel families inside a class whose achieved rates differ enough to calibrate them alone: an op
# names its family in shape["family"]; without that family's calibration it takes its class's.
ROPE = "rope"  # rotate-half RoPE in eager PyTorch: strided half-head slices, broadcasts, a cat
# Mamba-1's selective_state_update: per-channel dt and a (d_inner, N) A matrix, z gating; the same
# Triton kernel as Mamba-2's but another specialisation, measured ~10 % slower per state byte.
SSU_MAMBA1 = "state_update_mamba1"
FAMILIES = (ROPE, SSU_MAMBA1)


@dataclass(frozen=True)
class Op:
    """One kernel (or a short fixed run of kernels) of a layer's forward or decode step."""

    name: str
    op_class: str
    flops: np.ndarray
    bytes_: np.ndarray
    kernels: int = 1
    shape: dict = field(default_factory=dict)


def gemm(name: str, m: np.ndarray, n: int, k: int, dtype_bytes: int = 2, kernels: int = 1) -> Op:
    """C[M,N] = A[M,K] @ W[K,N]: 2MNK FLOPs; reads A and W once, writes C once."""
    m = np.asarray(m, dtype=np.float64)
    flops = 2.0 * m * n * k
    bytes_ = dtype_bytes * (m * k + float(n) * k + m * n)
    return Op(name, GEMM, flops, bytes_, kernels, {"m": m, "n": n, "k": k})


def elementwise(name: str, elements_read: np.ndarray, elements_written: np.ndarray,
                flops_per_element: float = 1.0, dtype_bytes: int = 2, kernels: int = 1, cold_kernels: int = 0) -> Op:
    """A memory-bound pass: bytes = (read + written) x dtype; a few FLOPs per output element.
    `cold_kernels`: how many of its kernels touch a tensor living across decode steps (`cold_kernels()`)."""
    read = np.asarray(elements_read, dtype=np.float64)
    written = np.asarray(elements_written, dtype=np.float64)
    return Op(name, ELEMENTWISE, flops_per_element * written, dtype_bytes * (read + written), kernels,
              {"elements": written, **({"cold_kernels": cold_kernels} if cold_kernels else {})})


def written_bytes(op: Op) -> np.ndarray:
    """Bytes of state the op's kernels store and no later kernel of the step reads (the SSM and conv
    states a decode step updates): they stay dirty in L2 until evicted. Activations passed to the
    next kernel are not counted: H100 traces show no slowdown of the MLP's fc2 after fc1 and the
    activation, while Mamba's out_proj runs 3.6-6.9 us longer after the state update."""
    return np.asarray(op.shape.get("written_bytes", 0.0), dtype=np.float64) if op.shape else np.zeros(())


def cold_kernels(op: Op) -> int:
    """How many of the op's kernels touch a tensor that lives across decode steps (a parameter other
    than a GEMM's weights, a KV cache, a norm weight, RoPE tables), which the step's weight stream has
    evicted from L2 by the time they run. Their class was calibrated warm (the same small buffer back
    to back), so a step pays each one's HBM latency on top (perfbench/step_overhead.py). Kernels of
    classes calibrated on rotated copies (GEMM, state update, conv, attention) are cold already."""
    return int(op.shape.get("cold_kernels", 0)) if op.shape else 0


def total(ops: list[Op], attr: str) -> np.ndarray:
    return sum(getattr(op, attr) for op in ops)
