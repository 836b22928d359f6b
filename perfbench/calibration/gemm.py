"""The bf16 GEMM grid (`gemm`): time over M for every (N, K) the built-in layers and the LM head use,
plus generic square shapes, plus a design-space grid (N x K x M products spanning the models people
build: analytic/gemm_model.py interpolates between its points); compute-bound shapes power-capped
after a rest (bench.time_gemm), weight streams as graph replays on rotated weight copies. Also the
GEMM class's roofline, fitted without the table, which prices shapes off the grid."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from analytic.calibration import default_calibration
from analytic.costs import layer_ops
from analytic.efficiency import Ceilings, ceilings, op_time
from analytic.fit import fit_class
from analytic.hardware import get_gpu, gpu_key_from_name
from analytic.ops import GEMM, gemm as gemm_op
from models.registry import BUILTIN_LAYERS, VOCAB
from perfbench.calibration.bench import (DEFAULT_RIDGE, Timer, device_ridge, gemm_compute_bound, randn, rotation_copies,
                                         time_gemm, timed_seconds)

SECTION = "gemm"
M_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
GENERIC_NK = ((1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192), (3072, 1024), (1024, 3072))
# The design space (d_model 1024-8192): N covers x_proj's dt_rank + 2 d_state (128-640), every width,
# the attention qkv (up to 3 d), in_proj (2 d_inner + heads, up to ~8 d), FFN widths up to 6 d and gated
# fc1 (2 x FFN: ~98K at d 8192) and vocabularies 32K-256K; K covers dt_rank (64-512, dt_proj's K), d_model,
# d_inner (2 d) and FFN widths up to 6 x 8192. Factor-2 steps in N where shapes are common; M in
# factor-4 steps from a decode step of one sequence to 64K prefill tokens.
DESIGN_N = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)
DESIGN_K = (64, 256, 1024, 2048, 4096, 8192, 16384, 49152)
DESIGN_M = (1, 16, 64, 256, 1024, 4096, 16384, 65536)
LM_HEAD_MIN_N = 100_000  # vocab-wide GEMMs run only at the LM head's M (batch rows): up to 256
LM_HEAD_MAX_M = 256
MAX_CALL_FLOPS = 1.5e14  # one call at most ~0.2 s on an H100
MAX_WEIGHT_BYTES = 4.3e9  # a 256K vocabulary at d_model 8192 in bf16


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


def paper_grid() -> list[tuple[int, int, int]]:
    """(M, N, K) of the built-in layers' and LM head's shapes over M_GRID (what calibrations have measured
    since the start: the paper's layers are predicted on their own shapes)."""
    return [(m, n, k) for n, k in gemm_shapes() for m in M_GRID if m <= (LM_HEAD_MAX_M if n >= LM_HEAD_MIN_N else 65536)]


def design_grid() -> list[tuple[int, int, int]]:
    """(M, N, K) of the design-space product DESIGN_N x DESIGN_K x DESIGN_M, without the calls no model
    makes or that take too long: vocab-wide N past the LM head's M, weights over MAX_WEIGHT_BYTES, a
    call over MAX_CALL_FLOPS."""
    return [(m, n, k) for n in DESIGN_N for k in DESIGN_K for m in DESIGN_M
            if not (n >= LM_HEAD_MIN_N and m > LM_HEAD_MAX_M) and 2 * n * k <= MAX_WEIGHT_BYTES
            and 2.0 * m * n * k <= MAX_CALL_FLOPS]


def grid_points() -> list[tuple[int, int, int]]:
    """Every (M, N, K) the default calibration measures: the paper's shapes and the design space."""
    return sorted(set(paper_grid()) | set(design_grid()))


def call_seconds(m: int, n: int, k: int, ceil) -> float:
    """One rotation of a sample (its weight copies, each called once) as `ceil` predicts it."""
    return rotation_copies(2 * n * k) * float(op_time(gemm_op("g", np.array([float(m)]), n, k), ceil)[0][0])


def sample_seconds(call_s: float, compute_bound: bool) -> float:
    """Wall seconds one grid sample keeps the GPU busy under bench.time_gemm (bench.timed_seconds: a
    compute-bound one first rests and runs capped)."""
    return timed_seconds(call_s, "power_limited" if compute_bound else "timer")


def estimate_seconds(points, ceil, ridge: float = DEFAULT_RIDGE) -> float:
    """GPU seconds measuring these (M, N, K) takes, each call timed at what `ceil` (a calibration's
    ceilings for the same GPU kind) predicts."""
    return sum(sample_seconds(call_seconds(m, n, k, ceil), gemm_compute_bound(m, n, k, ridge)) for m, n, k in points)


def measure_gemms(torch, timer: Timer, log, mem_budget_bytes: float, ridge: float | None = None,
                  points=None) -> list:
    """[{m, n, k, time_s}] of `points` ((M, N, K); default grid_points()), shape by shape."""
    import torch.nn.functional as F

    ridge = device_ridge(torch) if ridge is None else ridge
    by_shape: dict = {}
    for m, n, k in sorted(grid_points() if points is None else points, key=lambda p: (p[1], p[2], p[0])):
        by_shape.setdefault((n, k), []).append(m)
    out = []
    for (n, k), m_values in by_shape.items():
        w_bytes = 2 * n * k
        copies = rotation_copies(w_bytes)
        weights = [randn(torch, n, k, scale=0.02) for _ in range(copies)]
        measured = 0
        for m in m_values:
            need = 2 * (m * k + m * n) * 2
            if need > mem_budget_bytes or 2.0 * m * n * k > MAX_CALL_FLOPS:
                continue
            x = randn(torch, m, k)

            # Rotate weight copies so small weights come from HBM, not L2, as in a real step.
            def run_all():
                for w in weights:
                    F.linear(x, w)
            t = time_gemm(timer, run_all, gemm_compute_bound(m, n, k, ridge)) / copies
            out.append({"m": m, "n": n, "k": k, "time_s": t})
            measured += 1
            del x
        if measured:
            log(f"gemm N={n:6d} K={k:5d}: M={out[-measured]['m']} {out[-measured]['time_s'] * 1e6:.1f} us, "
                f"best {max(2 * g['m'] * g['n'] * g['k'] / g['time_s'] for g in out[-measured:]) / 1e12:.0f} TFLOP/s")
        del weights
        torch.cuda.empty_cache()
    return out


def measure_section(torch, timer: Timer, log, points=None) -> list:
    """The grid (or `points`), inputs within half of this GPU's memory; logs its estimated time first,
    from the bundled calibration of this GPU kind where there is one."""
    points = grid_points() if points is None else list(points)
    props = torch.cuda.get_device_properties(0)
    estimate = estimated_section_seconds(points, gpu_key_from_name(props.name))
    log(f"gemm: {len(points)} samples" + (f", about {estimate / 60:.1f} min" if estimate else ""))
    return measure_gemms(torch, timer, log, mem_budget_bytes=0.5 * props.total_memory, points=points)


def estimated_section_seconds(points, gpu: str) -> float | None:
    """estimate_seconds against the bundled calibration of `gpu` (None without one)."""
    cal = default_calibration(gpu)
    if cal is None:
        return None
    return estimate_seconds(points, ceilings(get_gpu(gpu), cal), get_gpu(gpu).peak_bf16_flops / get_gpu(gpu).mem_bw_bytes_s)


def gemm_peak(gemm: list[dict]) -> float:
    """The fastest rate any GEMM sample reached (FLOP/s)."""
    return max(2 * g["m"] * g["n"] * g["k"] / g["time_s"] for g in gemm)


def fit_gemm_class(gemm: list[dict], base: Ceilings) -> dict:
    """The GEMM class's roofline, the fallback for shapes off the measured table: fitted without the table."""
    return fit_class(GEMM, [{"class": GEMM, **g} for g in gemm], replace(base, gemm_table={}))


def gemm_call_seconds(entry: dict, ridge: float) -> float:
    """Wall seconds of re-measuring one stored entry: its rotated calls at the stored time."""
    m, n, k = int(entry["m"]), int(entry["n"]), int(entry["k"])
    return sample_seconds(float(entry["time_s"]) * rotation_copies(2 * n * k), gemm_compute_bound(m, n, k, ridge))


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of the default grid (grid_points()) at the times `ceil` predicts."""
    return estimate_seconds(grid_points(), ceil, ridge)
