"""The depthwise causal conv1d (the causal_conv1d package: `causal_conv1d_fn` in prefill,
`causal_conv1d_update` in decode) on both Mamba layers' channel counts."""

from __future__ import annotations

from analytic.ops import CONV1D
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn, rotation
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench

NAME = "conv1d"
CLASSES = (CONV1D,)


def measure(bench: KernelBench) -> None:
    from causal_conv1d import causal_conv1d_fn, causal_conv1d_update

    torch, timer = bench.torch, bench.timer
    m2, m1 = BUILTIN_LAYERS["mamba2"], BUILTIN_LAYERS["mamba"]
    for layer, spec, dim in (("mamba2", m2, m2.conv_dim), ("mamba", m1, m1.d_inner)):
        w = randn(torch, dim, spec.d_conv)
        bias = randn(torch, dim)
        for b, L in PREFILL_SIZES[:5]:
            x = randn(torch, b, dim, L)
            t = timer(lambda: causal_conv1d_fn(x, w, bias, activation="silu"), graph=False)
            bench.keep(CONV1D, {"layer": layer, "phase": "prefill", "batch": b, "seqlen": L,
                                "ops": ["conv1d"], "time_s": t})
        for b in (1, 3, 12, 48, 96):
            def make(b=b, dim=dim, w=w, bias=bias, d_conv=spec.d_conv):
                x, state = randn(torch, b, dim), randn(torch, b, dim, d_conv)
                return lambda: causal_conv1d_update(x, state, w, bias, "silu")
            run_all, copies = rotation(make, 2 * b * dim * (spec.d_conv + 2))
            t = timer(run_all) / copies
            bench.keep(CONV1D, {"layer": layer, "phase": "decode", "batch": b, "seqlen": 1024,
                                "ops": ["conv1d_update"], "time_s": t})
    bench.log(f"  conv1d: {bench.count(CONV1D)} samples")
