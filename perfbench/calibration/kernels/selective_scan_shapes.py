"""Mamba-1's selective scan over its hyper-parameters: d_state 16-256 at the 8B's d_inner, and the
d_inner of the public Mamba family (130M: 1536, 1.4B: 4096, 2.8B: 5120) at d_state 16. These fit the
scan's per-channel share and block waves (analytic.families.selective_scan); the 8B's own samples
(`selective_scan`) keep the rate table."""

from __future__ import annotations

from models.specs import MambaSpec
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import KernelBench

NAME = "selective_scan_shapes"
CLASSES = (NAME,)
SPECS = (*(MambaSpec(d_model=4096, d_state=n, dt_rank=256) for n in (16, 32, 64, 256)),
         MambaSpec(d_model=768, d_state=16, dt_rank=48), MambaSpec(d_model=2048, d_state=16, dt_rank=128),
         MambaSpec(d_model=2560, d_state=16, dt_rank=160), MambaSpec(d_model=1536, d_state=64, dt_rank=96))
# (batch, length): even and uneven lengths, batches off the evaluation grid, 2K-36K tokens.
SIZES = ((1, 2048), (3, 4096), (12, 1024), (2, 3000), (1, 12000))


def measure(bench: KernelBench) -> None:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    torch, timer = bench.torch, bench.timer
    for spec in SPECS:
        di, N = spec.d_inner, spec.d_state
        A = -torch.rand(di, N, device="cuda", dtype=torch.float32) - 0.5
        D = torch.randn(di, device="cuda", dtype=torch.float32)
        bias = torch.randn(di, device="cuda", dtype=torch.float32) * 0.1
        for b, L in SIZES:
            u, delta, z = randn(torch, b, di, L), randn(torch, b, di, L, scale=0.5), randn(torch, b, di, L)
            B, C = randn(torch, b, 1, N, L), randn(torch, b, 1, N, L)
            t = timer(lambda: selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True),
                      graph=False)
            bench.add_spec(NAME, spec, {"phase": "prefill", "batch": b, "seqlen": L, "ops": ["selective_scan"],
                                        "time_s": t})
            bench.log(f"  selective_scan d_inner={di} d_state={N} b={b} L={L}: {t * 1e3:.3f} ms")
            del u, delta, z, B, C


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": ["selective_scan"], "mode": "eager"}
            for spec in SPECS for b, L in SIZES]
