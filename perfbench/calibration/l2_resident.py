"""A decode step whose whole working set fits in L2 (`l2_resident`): replayed back to back, as
`perfbench run` times a CUDA-graph step, it finds its weights, caches and states still in L2.

The GEMM table's decode samples rotate through copies spanning ~5x the L2, as a whole model's step
finds its weights (the weight stream evicts everything between two uses). A layer timed alone is
different when its step touches less than the L2 holds: the H100 what-if layers at d_model 1536-2048
(14-33 MB a step at B=2) decoded 7-12 us faster than predicted, those at 4096 (85-350 MB) within 2 %.
So this section times a decode-shaped GEMV (M = 2, K = 2048) of W bytes of weights over working sets
W, each twice in one CUDA graph of R calls replayed back to back: on one weight tensor (every call and
every replay re-reads W: resident while W fits) and on R copies spanning ROTATE_BYTES (cold, the
table's regime); per call, the graph's time over R. The model (analytic.efficiency.l2_resident_saving_s)
takes a streaming op's saving from these samples at its bytes and scales it by how resident the step's
whole working set stays (`resident`: the saving at W over the saving of the small working sets).
"""

from __future__ import annotations

import statistics

import numpy as np

from perfbench.calibration.bench import randn, rotation_copies, timed_seconds
from perfbench.measure.timing import TimingOptions, capture_graph, measure

SECTION = "l2_resident"
L2_RESIDENT_MB = (2, 4, 8, 12, 16, 24, 32, 40, 48, 64, 96)
L2_RESIDENT_MK = (2, 2048)  # decode rows and the weight's inner dimension
L2_TIMING = TimingOptions(warmup=2, min_repeats=5, max_repeats=200, target_s=0.05, nvtx=False, rest_s=0.05)


def measure_l2_resident(torch, timer, log) -> dict:
    """{"samples": [{bytes, warm_s, cold_s}], plus the fitted `resident` fractions}."""
    m, k = L2_RESIDENT_MK
    x = randn(torch, m, k)
    samples = []
    for mb in L2_RESIDENT_MB:
        n = max(int(mb * (1 << 20)) // (2 * k), 8)
        copies = rotation_copies(2.0 * n * k)
        weights = [randn(torch, n, k, scale=0.02) for _ in range(copies)]
        out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        warm = _per_call_s(torch, [lambda w=weights[0]: torch.matmul(x, w.t(), out=out)] * copies)
        cold = _per_call_s(torch, [lambda w=w: torch.matmul(x, w.t(), out=out) for w in weights])
        samples.append({"bytes": 2.0 * n * k, "warm_s": warm, "cold_s": cold})
        log(f"  l2 resident: {mb:4d} MB of weights, {warm * 1e6:6.2f} us resident, {cold * 1e6:6.2f} us cold")
        del weights, out
        torch.cuda.empty_cache()
    return {"samples": samples, **fit_l2_resident(samples)}


def _per_call_s(torch, calls: list) -> float:
    replay, graph = capture_graph(lambda: [call() for call in calls])
    seconds = statistics.median(measure(replay, L2_TIMING, cuda=True).times_ms) / 1e3 / len(calls)
    del graph
    return seconds


def fit_l2_resident(samples: list[dict]) -> dict:
    """`resident`: per sample, its relative saving (cold - warm) / cold over the largest relative saving
    of the samples, clipped to [0, 1]: 1 while W stays in L2, falling to 0 once replays thrash it."""
    rel = np.array([max(s["cold_s"] - s["warm_s"], 0.0) / s["cold_s"] for s in samples])
    top = float(rel.max()) if len(rel) else 0.0
    resident = [float(np.clip(r / top, 0.0, 1.0)) if top > 0 else 0.0 for r in rel]
    return {"resident": resident}


def measure_section(torch, timer, log) -> dict:
    return measure_l2_resident(torch, timer, log)


def refit_section(section: dict) -> dict:
    return {**section, **fit_l2_resident(section["samples"])}


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds: per size two graphs of ~64 GEMVs of up to a few tens of microseconds, timed ~0.05 s each."""
    return len(L2_RESIDENT_MB) * 2 * (L2_TIMING.rest_s + L2_TIMING.target_s + 0.3)
