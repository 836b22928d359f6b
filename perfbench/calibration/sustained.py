"""How much slower compute-bound work runs the longer a point keeps the board at its power limit.

After a rest a big GEMM first runs at burst clocks; within ~0.1 s the power limiter holds the board at
its limit, the power-capped state the GEMM grid is calibrated in (bench.time_gemm). Kept there,
the die heats, leakage grows and the clock the limit allows keeps falling for seconds: in the H100
layer sweep (2026-11-24, rested points) the points whose median timed call came 1-3 s into the point
were predicted 5-11 % fast, whatever the layer. A point's timed calls come later the longer each call
is (`perfbench run`: a first call, warm-up, then at least 5 repeats), so the cost model scales
compute-bound time by this curve at the point's median call (analytic.efficiency.sustained_slowdown).

Measured: one compute-bound GEMM (the MLP's fc1 at 32K tokens) back to back for SUSTAIN_S after a rest,
each call between CUDA events; per window of elapsed time, the median call over the median call of the
first window (0.3-0.6 s in: the state the GEMM grid is timed in).
"""

from __future__ import annotations

import statistics
import time

from perfbench.calibration.bench import POINT_REST_S, randn

SECTION = "sustained"

SUSTAIN_S = 8.0
WINDOWS_S = ((0.3, 0.6), (0.6, 1.0), (1.0, 1.5), (1.5, 2.5), (2.5, 4.0), (4.0, 6.0), (6.0, 8.0))
SUSTAIN_SHAPE = (32768, 16384, 4096)  # (M, N, K): fc1 of the 8B MLP at 32K tokens, ~6 ms a call


def fit_sustained(elapsed_s: list[float], call_s: list[float]) -> dict:
    """{"elapsed_s": window midpoints, "slowdown": median call per window over the first window's,
    never below 1 and never falling with time (a clock the heat has taken does not come back while
    the load goes on)}. Windows with no call are left out."""
    medians = []
    for lo, hi in WINDOWS_S:
        inside = [c for e, c in zip(elapsed_s, call_s) if lo <= e < hi]
        if inside:
            medians.append(((lo + hi) / 2, statistics.median(inside)))
    if len(medians) < 2:
        raise ValueError("sustained-clock samples cover fewer than two windows")
    reference = medians[0][1]
    slowdown, worst = [], 1.0
    for _mid, median in medians:
        worst = max(worst, median / reference)
        slowdown.append(worst)
    return {"elapsed_s": [m for m, _ in medians], "slowdown": slowdown}


def measure_sustained(torch, timer, log) -> dict:
    """{"elapsed_s", "slowdown", "call_s"}: the fitted curve and the reference call time."""
    import torch.nn.functional as F

    m, n, k = SUSTAIN_SHAPE
    x, w = randn(torch, m, k), randn(torch, n, k, scale=0.02)
    F.linear(x, w)
    torch.cuda.synchronize()
    time.sleep(POINT_REST_S)
    pairs = []
    started = time.perf_counter()
    while time.perf_counter() - started < SUSTAIN_S:
        for _ in range(16):  # enqueue in small batches so the host never runs far ahead of the GPU
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            F.linear(x, w)
            end.record()
            pairs.append((start, end))
        pairs[-1][1].synchronize()
    torch.cuda.synchronize()
    first = pairs[0][0]
    elapsed = [first.elapsed_time(s) / 1e3 for s, _ in pairs]
    calls = [s.elapsed_time(e) / 1e3 for s, e in pairs]
    fit = fit_sustained(elapsed, calls)
    log("sustained clock: " + ", ".join(f"{e:.2f} s x{s:.3f}" for e, s in zip(fit["elapsed_s"], fit["slowdown"]))
        + f" ({2 * m * n * k / statistics.median(calls[:50]) / 1e12:.0f} TFLOP/s at first)")
    del x, w
    torch.cuda.empty_cache()
    return {**fit, "call_s": statistics.median(c for e, c in zip(elapsed, calls) if e < WINDOWS_S[0][1])}


def measure_section(torch, timer, log) -> dict:
    return measure_sustained(torch, timer, log)


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of the sustained-clock run: a rest, then SUSTAIN_S back to back."""
    return POINT_REST_S + SUSTAIN_S
