"""Mamba-2's SSD prefill (mamba_ssm `mamba_chunk_scan_combined`: the five Triton chunk kernels together)."""

from __future__ import annotations

from analytic.ops import SSD
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import KernelBench

NAME = "ssd"
CLASSES = (SSD,)
SETUP_S = 10.0  # the Triton autotuning of the layer's configuration on its first call (time estimate)


def ssd_sizes() -> list[tuple[int, int]]:
    """(batch, length) of the SSD microbenchmark: off the evaluation grid, 384 to ~200K tokens.
    (mamba_ssm 2.3's Triton SSD indexes x with 32-bit offsets: ~290K tokens of the 8B layer (b*L*H*P
    past 2**31) is an illegal memory access that poisons the CUDA context.)"""
    return [(1, 384), (1, 1536), (3, 1024), (1, 6144), (3, 3072), (6, 6144), (1, 24576), (12, 1536),
            (2, 640), (24, 768), (48, 1536), (6, 12288), (3, 40960), (64, 3072), (8, 24576)]


def measure(bench: KernelBench) -> None:
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    torch, timer, m2 = bench.torch, bench.timer, BUILTIN_LAYERS["mamba2"]
    H, P, G, N = m2.nheads, m2.headdim, m2.ngroups, m2.d_state
    A = -torch.rand(H, device="cuda", dtype=torch.float32) * 4 - 0.5
    D = torch.randn(H, device="cuda", dtype=torch.float32)
    dt_bias = torch.randn(H, device="cuda", dtype=torch.float32) * 0.1
    for b, L in ssd_sizes():
        x = randn(torch, b, L, H, P)
        dtt = randn(torch, b, L, H, scale=0.5)
        B = randn(torch, b, L, G, N)
        C = randn(torch, b, L, G, N)
        t = timer(lambda: mamba_chunk_scan_combined(x, dtt, A, B, C, m2.chunk_size, D=D, dt_bias=dt_bias,
                                                    dt_softplus=True), graph=False)
        bench.add(SSD, {"layer": "mamba2", "phase": "prefill", "batch": b, "seqlen": L,
                        "ops": ["ssd_chunk_cumsum", "ssd_chunk_state", "ssd_state_passing",
                                "ssd_bmm_chunk", "ssd_chunk_scan"], "time_s": t})
        bench.log(f"  ssd b={b} L={L}: {t * 1e3:.3f} ms")
