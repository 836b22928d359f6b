"""GEMMs that lay the tokens out as a leading dimension, timed where it is not 16-byte aligned.

Mamba-1's prefill (mamba_simple) computes in_proj as W @ x^T and dt_proj as W @ x_dbl^T: the outputs are
(N, B*L) with leading dimension B*L, so the scan reads (B, N, L) without a transpose. The scan writes its
output in the same (d_inner, B*L) order, so out_proj reads it as a transposed (B*L, d_inner) view with
leading dimension B*L again (H100 layer points with B*L a multiple of 8 but L not, B=10-40 x L=2500, ran
as predicted with no penalty on out_proj). Unless B*L is a multiple of 8 (bf16), cuBLAS cannot use its
16-byte-aligned Hopper kernels and runs sm80 CUTLASS align2 ones: on the H100, B=3 x L=2500 ran 24.5 ms
against 21.2 ms at L=3000 (the same scan chunks), and in_proj alone at M=16385 ran 6.5x its aligned time.
The calibration times each such (N, K) as the layer calls it, at M aligned to 16, 8, 4 and 2 bytes over
1K-64K tokens; the model scales its aligned GEMM time by the ratio to the same call aligned
(analytic.efficiency.unaligned_ratio).
"""

from __future__ import annotations

from analytic.ops import LD_A_T
from perfbench.calibration.bench import device_ridge, gemm_compute_bound, randn, rotated_calls, run_each, time_gemm
from perfbench.calibration.gemm import builtin_gemm_ops, gemm_call_seconds

SECTION = "gemm_unaligned"

UNALIGNED_BASE_M = (1024, 4096, 16384, 65536)
ALIGN_OFFSET = {16: 0, 8: 4, 4: 2, 2: 1}  # ld = base + offset: 2 * ld bytes aligned to exactly this (16: the
# same call aligned, the baseline each ratio is taken against)


def unaligned_gemm_shapes() -> list[tuple[int, int, str]]:
    """(N, K, layout) of the built-in layers' GEMMs that lay the tokens out as a leading dimension."""
    return sorted({(op.shape["n"], op.shape["k"], op.shape["ld_layout"]) for op in builtin_gemm_ops()
                   if "ld_alignment" in op.shape})


def _call(torch, n: int, k: int, layout: str, ld: int):
    """One GEMM call as the layer makes it, on its own weight and input (rotated copies keep them out of L2)."""
    import torch.nn.functional as F

    w = randn(torch, n, k, scale=0.02)
    if layout == LD_A_T:  # A = a (K, M) buffer read transposed: (M, K) with leading dimension M
        y = randn(torch, k, ld)
        return lambda: F.linear(y.t(), w)
    x = randn(torch, ld, k)
    return lambda: w @ x.t()


def measure_unaligned_gemms(torch, timer, log, ridge: float | None = None) -> list[dict]:
    """[{m, n, k, layout, align_bytes, time_s}], each GEMM on rotated weight copies, timed as the
    aligned grid times the same shape (bench.time_gemm), so each ratio compares like with like."""
    ridge = device_ridge(torch) if ridge is None else ridge
    out = []
    for n, k, layout in unaligned_gemm_shapes():
        for align, offset in ALIGN_OFFSET.items():
            for base in UNALIGNED_BASE_M:
                ld = base + offset
                calls = rotated_calls(lambda: _call(torch, n, k, layout, ld), 2 * n * k)
                t = time_gemm(timer, run_each(calls), gemm_compute_bound(ld, n, k, ridge)) / len(calls)
                out.append({"m": ld, "n": n, "k": k, "layout": layout, "align_bytes": align, "time_s": t})
                del calls
                torch.cuda.empty_cache()
            log(f"  unaligned gemm N={n} K={k} {layout} ({align}-byte ld): "
                + ", ".join(f"M={g['m']} {g['time_s'] * 1e3:.3f} ms" for g in out[-len(UNALIGNED_BASE_M):]))
    return out


def measure_section(torch, timer, log) -> list[dict]:
    return measure_unaligned_gemms(torch, timer, log)


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of re-measuring the unaligned GEMMs `data` holds, at their stored times."""
    return sum(gemm_call_seconds(g, ridge) for g in data.get("gemm_unaligned", []))
