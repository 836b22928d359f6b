"""The kernel families no GEMM covers, each alone at sizes off the evaluation grid: one module per
family, registered here by name (the names `perfbench calibrate --remeasure` takes). Each module has
NAME, CLASSES (the op classes whose samples it fills) and measure(bench)."""

from __future__ import annotations

from perfbench.calibration.kernels import (add_norm, attention_decode, attention_prefill, conv1d, elementwise, rope,
                                           selective_scan, ssd, state_update)

# In the order a calibration measures them.
FAMILIES = {module.NAME: module for module in (ssd, selective_scan, conv1d, state_update, attention_prefill,
                                                attention_decode, rope, elementwise, add_norm)}
KERNEL_FAMILIES = tuple(FAMILIES)
