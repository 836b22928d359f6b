"""Mamba-1's prefill scan (mamba_ssm `selective_scan_fn`, the CUDA kernel in csrc/selective_scan)."""

from __future__ import annotations

from analytic.ops import SELECTIVE_SCAN
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import KernelBench

NAME = "selective_scan"
CLASSES = (SELECTIVE_SCAN,)
# Even lengths (a multiple of the chunk their thread configuration walks) take the vectorised
# loads; the others the slower uneven path. Both cover 1 to 16 chunks per block.
SCAN_EVEN_LENGTHS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
SCAN_UNEVEN_LENGTHS = (200, 384, 768, 1536, 3000, 6000, 12000, 24000)
SCAN_BATCHES = (1, 3, 6, 12, 24, 48, 96, 192, 384, 768, 1536, 3072)


def scan_sizes(min_tokens: int = 2500, max_tokens: int = 300_000) -> list[tuple[int, int]]:
    """(batch, length) of the selective-scan microbenchmark: for each length, every other batch of
    SCAN_BATCHES whose token count falls in [min_tokens, max_tokens], and the largest one that does."""
    out = []
    for L in SCAN_EVEN_LENGTHS + SCAN_UNEVEN_LENGTHS:
        fitting = [b for b in SCAN_BATCHES if min_tokens <= b * L <= max_tokens]
        if not fitting:
            fitting = [1]
        chosen = fitting[::2]
        if fitting[-1] not in chosen:
            chosen.append(fitting[-1])
        out.extend((b, L) for b in chosen)
    return out


def measure(bench: KernelBench) -> None:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    torch, timer, m1 = bench.torch, bench.timer, BUILTIN_LAYERS["mamba"]
    di, N = m1.d_inner, m1.d_state
    A = -torch.rand(di, N, device="cuda", dtype=torch.float32) - 0.5
    D = torch.randn(di, device="cuda", dtype=torch.float32)
    bias = torch.randn(di, device="cuda", dtype=torch.float32) * 0.1
    # The rate table's grid (analytic.efficiency.table_rate): per length, batches off the
    # evaluation grid spreading the total tokens from a few thousand (short, cool bursts) to
    # ~300K (long, power-capped runs).
    for b, L in scan_sizes():
        u = randn(torch, b, di, L)
        delta = randn(torch, b, di, L, scale=0.5)
        z = randn(torch, b, di, L)
        B = randn(torch, b, 1, N, L)
        C = randn(torch, b, 1, N, L)
        t = timer(lambda: selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True),
                  graph=False)
        bench.add(SELECTIVE_SCAN, {"layer": "mamba", "phase": "prefill", "batch": b, "seqlen": L,
                                   "ops": ["selective_scan"], "time_s": t})
        bench.log(f"  selective_scan b={b} L={L}: {t * 1e3:.3f} ms")
