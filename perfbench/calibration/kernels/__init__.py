"""The kernel families no GEMM covers, each alone at sizes off the evaluation grid: one module per
family, registered here by name (the names `perfbench calibrate --remeasure` takes). Each module has
NAME, CLASSES (the keys of the file's `samples` it fills) and measure(bench). The `*_shapes` families run the kernels at other hyper-parameters
than the paper's layers (d_state, head dim, groups, chunk size, channels, query/KV-head ratio): their
samples record the exact spec they ran, and the fit reads the kernels' physics from them; their
plan() lists the samples measure() takes, for the time estimate (perfbench/calibration/estimate.py)."""

from __future__ import annotations

from perfbench.calibration.kernels import (add_norm, attention_decode, attention_decode_shapes, attention_prefill,
                                           attention_prefill_shapes, conv1d, conv1d_shapes, elementwise, gdn, gdn_shapes,
                                           mamba3, mamba3_shapes, rope, selective_scan, selective_scan_shapes, ssd,
                                           ssd_shapes, state_update, state_update_shapes)

# In the order a calibration measures them (the newer mixers' last: a calibration without their
# libraries records them as failed and keeps the rest; their ops then take their class's ceilings).
FAMILIES = {module.NAME: module for module in (ssd, selective_scan, conv1d, state_update, attention_prefill,
                                                attention_decode, rope, elementwise, add_norm, selective_scan_shapes,
                                                ssd_shapes, state_update_shapes, conv1d_shapes,
                                                attention_prefill_shapes, attention_decode_shapes, mamba3, gdn,
                                                mamba3_shapes, gdn_shapes)}
KERNEL_FAMILIES = tuple(FAMILIES)
