"""The bf16 GEMM grid (`gemm`): time over M for every (N, K) the built-in layers and the LM head use,
plus generic square shapes; compute-bound shapes power-capped after a rest (bench.time_gemm), weight
streams as graph replays on rotated weight copies. Also the GEMM class's roofline, fitted without the
table, which prices shapes off the grid."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from analytic.costs import layer_ops
from analytic.efficiency import Ceilings
from analytic.fit import fit_class
from analytic.ops import GEMM
from models.registry import BUILTIN_LAYERS, VOCAB
from perfbench.calibration.bench import Timer, device_ridge, gemm_compute_bound, randn, rotation_copies, time_gemm

SECTION = "gemm"
M_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
GENERIC_NK = ((1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192), (3072, 1024), (1024, 3072))


def builtin_gemm_ops() -> list:
    """Every GEMM op the built-in layers run, prefill and decode (one small point: their N, K and
    layout do not depend on the batch or length)."""
    return [op for spec in BUILTIN_LAYERS.values() for phase in ("prefill", "decode")
            for op in layer_ops(spec, phase, np.array([1.0]), np.array([512.0])) if op.op_class == GEMM]


def gemm_shapes() -> list[tuple[int, int]]:
    """(N, K) of every GEMM the built-in layers and the LM head run (weights are K x N)."""
    shapes = set(GENERIC_NK) | {(op.shape["n"], op.shape["k"]) for op in builtin_gemm_ops()}
    shapes.add((VOCAB, 4096))
    return sorted(shapes)


def measure_gemms(torch, timer: Timer, log, mem_budget_bytes: float, ridge: float | None = None) -> list:
    import torch.nn.functional as F

    ridge = device_ridge(torch) if ridge is None else ridge
    out = []
    for n, k in gemm_shapes():
        w_bytes = 2 * n * k
        copies = rotation_copies(w_bytes)
        weights = [randn(torch, n, k, scale=0.02) for _ in range(copies)]
        m_values = [m for m in M_GRID if m <= (256 if n >= 100_000 else 65536)]
        for m in m_values:
            need = 2 * (m * k + m * n) * 2
            if need > mem_budget_bytes or 2.0 * m * n * k > 4e13:
                continue
            x = randn(torch, m, k)

            # Rotate weight copies so small weights come from HBM, not L2, as in a real step.
            def run_all():
                for w in weights:
                    F.linear(x, w)
            t = time_gemm(timer, run_all, gemm_compute_bound(m, n, k, ridge)) / copies
            out.append({"m": m, "n": n, "k": k, "time_s": t})
            del x
        log(f"gemm N={n:6d} K={k:5d}: M=1 {out[-len(m_values)]['time_s'] * 1e6:.1f} us, "
            f"best {max(2 * g['m'] * g['n'] * g['k'] / g['time_s'] for g in out if g['n'] == n and g['k'] == k) / 1e12:.0f} TFLOP/s")
        del weights
        torch.cuda.empty_cache()
    return out


def measure_section(torch, timer: Timer, log) -> list:
    """The grid, inputs within half of this GPU's memory."""
    return measure_gemms(torch, timer, log, mem_budget_bytes=0.5 * torch.cuda.get_device_properties(0).total_memory)


def gemm_peak(gemm: list[dict]) -> float:
    """The fastest rate any GEMM sample reached (FLOP/s)."""
    return max(2 * g["m"] * g["n"] * g["k"] / g["time_s"] for g in gemm)


def fit_gemm_class(gemm: list[dict], base: Ceilings) -> dict:
    """The GEMM class's roofline, the fallback for shapes off the measured table: fitted without the table."""
    return fit_class(GEMM, [{"class": GEMM, **g} for g in gemm], replace(base, gemm_table={}))
