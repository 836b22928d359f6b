"""causal_conv1d over channel counts: the conv of the scan and SSD spreads' specs (Mamba-1's d_inner,
Mamba-2's d_inner + 2 * groups * d_state), prefill and decode."""

from __future__ import annotations

from perfbench.calibration.bench import randn, rotation
from perfbench.calibration.kernels.selective_scan_shapes import SPECS as SCAN_SPECS
from perfbench.calibration.kernels.ssd_shapes import SPECS as SSD_SPECS
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench

NAME = "conv1d_shapes"
CLASSES = (NAME,)
SPECS = (*SCAN_SPECS[4:], *(s for s in SSD_SPECS if s.ngroups == 1))
PREFILL = PREFILL_SIZES[:3]
BATCHES = (1, 12, 96)


def channels(spec) -> int:
    return spec.conv_dim if spec.kind == "mamba2" else spec.d_inner


def measure(bench: KernelBench) -> None:
    from causal_conv1d import causal_conv1d_fn, causal_conv1d_update

    torch, timer = bench.torch, bench.timer
    for spec in SPECS:
        dim, width = channels(spec), spec.d_conv
        w, bias = randn(torch, dim, width), randn(torch, dim)
        for b, L in PREFILL:
            x = randn(torch, b, dim, L)
            t = timer(lambda: causal_conv1d_fn(x, w, bias, activation="silu"), graph=False)
            bench.add_spec(NAME, spec, {"phase": "prefill", "batch": b, "seqlen": L, "ops": ["conv1d"], "time_s": t})
        for b in BATCHES:
            def make(b=b):
                x, state = randn(torch, b, dim), randn(torch, b, dim, width)
                return lambda: causal_conv1d_update(x, state, w, bias, "silu")
            run_all, copies = rotation(make, 2 * b * dim * (width + 2))
            t = timer(run_all) / copies
            bench.add_spec(NAME, spec, {"phase": "decode", "batch": b, "seqlen": 1024, "ops": ["conv1d_update"],
                                        "time_s": t})
        bench.log(f"  conv1d {dim} channels: {len(PREFILL) + len(BATCHES)} samples")


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [sample for spec in SPECS for sample in
            [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": ["conv1d"], "mode": "eager"}
             for b, L in PREFILL]
            + [{"spec": spec, "phase": "decode", "batch": b, "seqlen": 1024, "ops": ["conv1d_update"], "mode": "graph"}
               for b in BATCHES]]
