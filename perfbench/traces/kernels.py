"""Kernel names: their short form, the analytic op class they count toward, and step counting.

The op classes are analytic/ops.py's (`gemm`, `attention_prefill`, `attention_decode`,
`selective_scan`, `ssd`, `state_update`, `conv1d`, `elementwise`); the name patterns come from the
kernels that run on an H100 for these layers: cuBLAS (`nvjet_*`, `sm90_xmma_gemm_*`, `gemv*`),
torch SDPA / cuDNN attention (`flash_fwd*`, `fmha*`, `*sdpa*`), mamba_ssm's CUDA selective scan
(`selective_scan_fwd_kernel`), its Triton SSD kernels (`_chunk_cumsum_fwd_kernel`,
`_chunk_state_fwd_kernel`, `_state_passing_fwd_kernel`, `_bmm_chunk_fwd_kernel`,
`_chunk_scan_fwd_kernel`) and decode update (`_selective_scan_update_kernel`), causal_conv1d
(`causal_conv1d_fwd_kernel`, `causal_conv1d_update_kernel`); everything else (PyTorch elementwise,
reductions, norms, copies) is `elementwise`, as the analytic model books it. On a CPU trace the
same patterns read aten op names (`aten::linear` -> gemm).
"""

from __future__ import annotations

import re

# Checked in order: specific before generic (the SSD `_bmm_chunk` kernel is not a cuBLAS GEMM,
# `fmha_cutlass*` is attention although it says cutlass).
_CLASSES = (
    ("state_update", re.compile(r"selective_scan_update|state_update", re.I)),
    ("selective_scan", re.compile(r"selective_scan", re.I)),
    ("ssd", re.compile(r"chunk_cumsum|chunk_state|state_passing|bmm_chunk|chunk_scan|ssd", re.I)),
    ("conv1d", re.compile(r"causal_conv1d|conv_depthwise|depthwise|conv1d", re.I)),
    ("attention", re.compile(r"flash|fmha|sdpa|attention|attn", re.I)),
    ("gemm", re.compile(r"gemm|gemv|nvjet|cutlass|xmma|splitkreduce|cublas|matmul|s16816|s1688"
                        r"|\blinear\b|addmm|\bmm\b|\bbmm\b", re.I)),
)
OP_CLASSES = ("gemm", "attention_prefill", "attention_decode", "selective_scan", "ssd", "state_update",
              "conv1d", "elementwise")


def classify_kernel(kernel: str, phase: str) -> str:
    """The analytic op class a kernel's work counts toward (attention split by phase)."""
    for op_class, pattern in _CLASSES:
        if pattern.search(kernel):
            return f"attention_{phase}" if op_class == "attention" else op_class
    return "elementwise"


def short_kernel_name(full: str) -> str:
    """'void at::native::foo_kernel<4, F<float> >(int, F<float>)' -> 'foo_kernel'.

    Drops the return type, template arguments and parameter list, then keeps the last scope
    component; names without any of these (Triton, cuBLAS `nvjet_*`) come back unchanged.
    """
    text = str(full).strip().replace("(anonymous namespace)", "anonymous_namespace")
    if text.startswith("void "):
        text = text[5:]
    out, depth = [], 0
    for char in text:
        if char == "<":
            depth += 1
        elif char == ">" and depth:
            depth -= 1
        elif char == "(" and depth == 0:
            break
        elif depth == 0:
            out.append(char)
    name = "".join(out).strip().split("::")[-1].strip()
    return name or str(full)


def steps_in(names: list[str]) -> int:
    """How many repeats of one step a range's ordered kernel names hold.

    The harness opens one range per timed call, which is one step; a range around several
    steps (another harness, or a model's decode loop) shows as exact repeats of the sequence.
    Only exact repetition counts: a step such as [gemm, relu, square, gemm] stays one step.
    """
    n = len(names)
    if n == 0:
        return 0
    for period in range(1, n):
        if n % period == 0 and names == names[:period] * (n // period):
            return n // period
    return 1


def whole_steps(names: list[str]) -> tuple[int, int]:
    """(period, steps) of a window that may end mid-step (ncu's --launch-count cuts anywhere).

    The smallest period p <= n/2 with names[i] == names[i + p] for every i; the window's first
    `steps * p` launches are whole steps. A window without two repeats is one (maybe partial)
    step: (n, 1).
    """
    n = len(names)
    for period in range(1, n // 2 + 1):
        if all(names[i] == names[i + period] for i in range(n - period)):
            return period, n // period
    return n, 1 if n else 0
