"""causal_conv1d over channel counts: the conv of the scan and SSD spreads' specs (Mamba-1's d_inner,
Mamba-2's d_inner + 2 * groups * d_state), prefill and decode."""

from __future__ import annotations

from perfbench.calibration.bench import randn, rotation
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench, spec_sample
from perfbench.calibration.kernels.selective_scan_shapes import SPECS as SCAN_SPECS
from perfbench.calibration.kernels.ssd_shapes import SPECS as SSD_SPECS

NAME = "conv1d_shapes"
CLASSES = (NAME,)
SPECS = (*SCAN_SPECS[4:], *(s for s in SSD_SPECS if s.ngroups == 1))
PREFILL = PREFILL_SIZES[:3]
BATCHES = (1, 12, 96)


def channels(spec) -> int:
    """The conv's channels: Mamba-2 convolves x, B and C together, Mamba-1 x alone."""
    return spec.conv_dim if spec.kind == "mamba2" else spec.d_inner


def measure(bench: KernelBench) -> None:
    """Kept without a timing mode, as the 8B conv1d samples are, so the class fits both alike."""
    from causal_conv1d import causal_conv1d_fn, causal_conv1d_update

    torch, timer = bench.torch, bench.timer
    for spec in SPECS:
        dim, width = channels(spec), spec.d_conv
        w, bias = randn(torch, dim, width), randn(torch, dim)
        for b, L in PREFILL:
            x = randn(torch, b, dim, L)
            t = timer(lambda: causal_conv1d_fn(x, w, bias, activation="silu"), graph=False)
            bench.keep(NAME, spec_sample(spec, {"phase": "prefill", "batch": b, "seqlen": L, "ops": ["conv1d"],
                                                "time_s": t}))
        for b in BATCHES:
            def make(b=b):
                x, state = randn(torch, b, dim), randn(torch, b, dim, width)
                return lambda: causal_conv1d_update(x, state, w, bias, "silu")
            run_all, copies = rotation(make, 2 * b * dim * (width + 2))
            t = timer(run_all) / copies
            bench.keep(NAME, spec_sample(spec, {"phase": "decode", "batch": b, "seqlen": 1024,
                                                "ops": ["conv1d_update"], "time_s": t}))
        bench.log(f"  conv1d {dim} channels: {len(PREFILL) + len(BATCHES)} samples")


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [sample for spec in SPECS for sample in
            [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": ["conv1d"]}
             for b, L in PREFILL]
            + [{"spec": spec, "phase": "decode", "batch": b, "seqlen": 1024, "ops": ["conv1d_update"]}
               for b in BATCHES]]
