"""The models' fused residual add + RMSNorm (models.stack.AddNorm: mamba_ssm's Triton layer_norm_fn,
prenorm) over decode-step to prefill row counts of the 8B width."""

from __future__ import annotations

import numpy as np

from analytic.ops import ADD_NORM, ELEMENTWISE
from analytic.ops import add_norm as add_norm_op
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import KernelBench
from perfbench.measure.timing import l2_flusher

NAME = "add_norm"
CLASSES = (ADD_NORM,)
ADD_NORM_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536)  # decode batches to prefill tokens
ADD_NORM_COLD_ROWS = 256  # up to this many rows (decode batches) the norm is timed with its inputs out of L2


def measure(bench: KernelBench) -> None:
    """In a decode step each block's norm finds its inputs and weight evicted by the layer before (its
    weights stream through L2), and the kernel's few programs wait on HBM latency: so up to
    ADD_NORM_COLD_ROWS rows it is timed right after the harness's L2 flush (timing.l2_flusher), minus
    the flush alone (H200: 1.7 us warm at 1 row, 4.4 us in a mamba-8b step)."""
    from mamba_ssm.ops.triton.layer_norm import layer_norm_fn

    torch, timer = bench.torch, bench.timer
    d = BUILTIN_LAYERS["mlp"].d_model
    weight = torch.ones(d, device="cuda", dtype=torch.bfloat16)
    evict = l2_flusher(torch.cuda.get_device_properties(0).L2_cache_size)
    evict_s = None
    for rows in ADD_NORM_ROWS:
        x, residual = randn(torch, rows, d), randn(torch, rows, d)
        norm = lambda: layer_norm_fn(x, weight, None, residual=residual, eps=1e-5, prenorm=True,  # noqa: E731
                                     is_rms_norm=True)
        if rows <= ADD_NORM_COLD_ROWS:
            evict_s = evict_s or timer(evict)
            t = max(timer(lambda: (evict(), norm())) - evict_s, 1e-7)
        else:
            t = timer(norm)
        op = add_norm_op("add_rmsnorm", d, "rmsnorm", np.array([float(rows)]), 2)
        bench.add(ADD_NORM, {"class": ELEMENTWISE, "family": ADD_NORM, "name": "add_rmsnorm", "rows": rows,
                             "cold": rows <= ADD_NORM_COLD_ROWS, "flops": float(op.flops[0]),
                             "bytes": float(op.bytes_[0]), "kernels": 1, "time_s": t})
    del evict
    bench.log(f"  add_norm: {bench.count(ADD_NORM)} samples, "
              f"{bench.samples[ADD_NORM][0]['time_s'] * 1e6:.2f} us at 1 row (cold)")
