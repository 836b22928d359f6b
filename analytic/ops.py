"""Kernel-sized operations: the unit the cost model counts and times.

Each `Op` carries FLOPs and bytes as numpy arrays broadcast over the (batch, seqlen) grid, the
number of kernel launches it stands for, and the shape facts its op class needs to be timed
(GEMM M/N/K; attention tiles and CTAs; scan elements). Bytes count each input read once and each
output written once, as a kernel that keeps its intermediates on chip moves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
# mamba_ssm's fused residual add + norm (Triton layer_norm_fn, prenorm), once per block of a model: one
# program per row, so a decode step's few rows take ~4 us where a copy of their bytes takes ~1 us (H200
# torch.profiler, mamba-8b B=1: 4.4 us a call).
ADD_NORM = "add_norm"
# The newer mixers' kernels (analytic/costs/mamba3.py, gdn.py): each its own family inside the class whose
# roofline it takes until `perfbench calibrate` has measured it (the class's ceilings, or the datasheet's).
MAMBA3_CHUNK = "mamba3_chunk"  # class SSD: mamba3_siso_fwd (Triton, one program per head and sequence)
MAMBA3_MIMO_CHUNK = "mamba3_mimo_chunk"  # class SSD: the TileLang MIMO forward
MAMBA3_STEP = "mamba3_step"  # class STATE_UPDATE: mamba3_siso_step (Triton)
GDN_CHUNK = "gdn_chunk"  # class SSD: fla's chunk_gated_delta_rule kernels (intra-chunk WY, state passing, output)
GDN_STEP = "gdn_step"  # class STATE_UPDATE: fla's fused_recurrent_gated_delta_rule
NEW_MIXER_FAMILIES = (MAMBA3_CHUNK, MAMBA3_MIMO_CHUNK, MAMBA3_STEP, GDN_CHUNK, GDN_STEP)
FAMILIES = (ROPE, SSU_MAMBA1, ADD_NORM) + NEW_MIXER_FAMILIES
# Collectives of a tensor-parallel step (timed by analytic.collectives, not analytic/efficiency.py).
ALLREDUCE = "allreduce"
ALLGATHER = "allgather"
COLLECTIVE_CLASSES = (ALLREDUCE, ALLGATHER)


@dataclass(frozen=True)
class Op:
    """One kernel (or a short fixed run of kernels) of a layer's forward or decode step. `kernels` is an
    int, or an array over the grid where the count depends on the point (a copy a wrapper skips at
    batch 1, where a one-row slice is already contiguous)."""

    name: str
    op_class: str
    flops: np.ndarray
    bytes_: np.ndarray
    kernels: int = 1
    shape: dict = field(default_factory=dict)


# How a GEMM lays a token dimension out as a leading dimension (cuBLAS's fast kernels need it 16-byte aligned):
LD_OUT = "out"  # C written as (N, M): leading dimension M (Mamba-1's in_proj W @ x^T, dt_proj W @ x_dbl^T)
LD_A_T = "a_t"  # A read as a transposed (M, K) view: leading dimension M (Mamba-1's out_proj)
LD_LAYOUTS = (LD_OUT, LD_A_T)


def gemm(name: str, m: np.ndarray, n: int, k: int, dtype_bytes: int = 2, kernels: int = 1,
         ld: np.ndarray | None = None, ld_layout: str = LD_OUT, relu_input: bool = False) -> Op:
    """C[M,N] = A[M,K] @ W[K,N]: 2MNK FLOPs; reads A and W once, writes C once.
    `ld`: elements of a leading dimension the call lays out from the tokens (`ld_layout` says how);
    unless ld * dtype_bytes is a multiple of 16 cuBLAS runs slower kernels (`ld_alignment_bytes`).
    `relu_input`: A is a (squared) ReLU's output, half zeros, which draws less power at the limit
    (perfbench/calibration/gemm_relu_input.py)."""
    m = np.asarray(m, dtype=np.float64)
    flops = 2.0 * m * n * k
    bytes_ = dtype_bytes * (m * k + float(n) * k + m * n)
    shape = {"m": m, "n": n, "k": k, **({"relu_input": True} if relu_input else {})}
    if ld is not None:
        shape["ld_alignment"] = ld_alignment_bytes(np.broadcast_to(ld, m.shape), dtype_bytes)
        shape["ld_layout"] = ld_layout
    return Op(name, GEMM, flops, bytes_, kernels, shape)


def ld_alignment_bytes(ld_elements, dtype_bytes: int = 2) -> np.ndarray:
    """The largest of 2, 4, 8, 16 bytes dividing a leading dimension of `ld_elements` (16: aligned for
    the tensor-memory-accelerator kernels; less: cuBLAS falls back to slower kernels)."""
    nbytes = np.asarray(ld_elements, dtype=np.int64) * dtype_bytes
    out = np.full(nbytes.shape, 16, dtype=np.int64)
    for a in (8, 4, 2):
        out = np.where(nbytes % (2 * a) != 0, a, out)
    return out


def elementwise(name: str, elements_read: np.ndarray, elements_written: np.ndarray,
                flops_per_element: float = 1.0, dtype_bytes: int = 2, kernels: int = 1, cold_kernels: int = 0) -> Op:
    """A memory-bound pass: bytes = (read + written) x dtype; a few FLOPs per output element.
    `cold_kernels`: how many of its kernels touch a tensor living across decode steps (`cold_kernels()`)."""
    read = np.asarray(elements_read, dtype=np.float64)
    written = np.asarray(elements_written, dtype=np.float64)
    return Op(name, ELEMENTWISE, flops_per_element * written, dtype_bytes * (read + written), kernels,
              {"elements": written, **({"cold_kernels": cold_kernels} if cold_kernels else {})})


def add_norm(name: str, d_model: int, norm: str, tokens: np.ndarray, dtype_bytes: int = 2) -> Op:
    """The fused residual add + norm over `tokens` rows (family ADD_NORM): reads the block output and the
    residual, writes the normed input and the new residual. It reads the residual stream and the norm's
    weight, both out of L2 by then: the family is calibrated so at decode sizes, so it counts no further
    cold-kernel step cost."""
    norm_flops = 8.0 if norm == "layernorm" else 5.0
    op = elementwise(name, 2 * tokens * d_model, 2 * tokens * d_model, norm_flops, dtype_bytes)
    return replace(op, shape={**op.shape, "family": ADD_NORM})


def collective(name: str, op_class: str, message_bytes: np.ndarray) -> Op:
    """A collective call among the ranks: no FLOPs and no HBM traffic counted (bytes_ 0); the
    message size is in shape["message_bytes"]."""
    message = np.asarray(message_bytes, dtype=np.float64)
    zero = 0.0 * message
    return Op(name, op_class, zero, zero, 1, {"message_bytes": message})


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
    to back), so a step pays each one's HBM latency on top (perfbench/calibration/step.py). Kernels of
    classes calibrated on rotated copies (GEMM, state update, conv, attention) are cold already."""
    return int(op.shape.get("cold_kernels", 0)) if op.shape else 0


def total(ops: list[Op], attr: str) -> np.ndarray:
    return sum(getattr(op, attr) for op in ops)
