"""L2 write-back (`writeback`): how many stored bytes L2 still holds dirty after a kernel, and the rate at
which a following weight-streaming GEMM writes them back (analytic.efficiency.step_op_times)."""

from __future__ import annotations

import numpy as np

from perfbench.calibration.bench import Timer, randn, rotated_calls, run_each, timed_seconds

SECTION = "writeback"


# L2 write-back (analytic.efficiency.step_op_times): a store-only kernel of W bytes, then a weight-streaming
# GEMV (the decode out_proj's shape), each on rotated copies so both start from a cold L2. The GEMV's extra
# time over the two alone is the stores it had to write back. A store-only producer leaves as much dirty as
# Mamba's state update does in a decode step (H100: out_proj +6.9 us in situ after a 33.5 MB state update,
# +7.1 us here after 32 MB of stores; an in-place elementwise leaves less, +2.6 us).
WRITEBACK_MB = (0.5, 1, 2, 4, 8, 16, 24, 32, 48, 64, 128)
WRITEBACK_GEMV = (16, 4096, 8192)  # (M, N, K)


def measure_writeback(torch, timer: Timer, log) -> dict:
    """{"samples": [{written_bytes, excess_s}], dirty_bytes, bw_bytes_s}: the fitted figures too."""
    import torch.nn.functional as F

    m, n, k = WRITEBACK_GEMV
    x = randn(torch, m, k)
    gemvs = rotated_calls(lambda: (lambda w=randn(torch, n, k, scale=0.02): F.linear(x, w)), 2 * n * k)
    t_gemv = timer(run_each(gemvs)) / len(gemvs)
    samples = []
    for mb in WRITEBACK_MB:
        nbytes = int(mb * (1 << 20))
        stores = rotated_calls(lambda: (lambda b=torch.empty(nbytes // 2, device="cuda", dtype=torch.bfloat16):
                                        b.fill_(1.0)), nbytes)
        t_store = timer(run_each(stores)) / len(stores)
        pairs = max(len(stores), len(gemvs))
        t_pair = timer(run_each([call for i in range(pairs) for call in (stores[i % len(stores)],
                                                                          gemvs[i % len(gemvs)])])) / pairs
        samples.append({"written_bytes": float(nbytes), "excess_s": t_pair - t_store - t_gemv})
        log(f"  write-back: {mb:5.1f} MB stored, then the GEMV: +{samples[-1]['excess_s'] * 1e6:.2f} us")
        del stores
        torch.cuda.empty_cache()
    del gemvs
    torch.cuda.empty_cache()
    return {"samples": samples, **fit_writeback(samples)}


def fit_writeback(samples: list[dict]) -> dict:
    """Least-squares excess = min(W, dirty_bytes) / bw_bytes_s over the samples (cap on a grid of the
    measured sizes and between them; the rate in closed form for each cap)."""
    w = np.array([s["written_bytes"] for s in samples], dtype=np.float64)
    x = np.array([s["excess_s"] for s in samples], dtype=np.float64)
    best = None
    for cap in np.exp(np.linspace(np.log(w.min()), np.log(w.max()), 200)):
        m = np.minimum(w, cap)
        slope = max(float(m @ x) / float(m @ m), 1e-30)  # seconds per byte
        sse = float(((slope * m - x) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, cap, slope)
    _sse, cap, slope = best
    if slope <= 1e-30:  # no measurable write-back: a zero cap turns the term off
        return {"dirty_bytes": 0.0, "bw_bytes_s": 1.0}
    return {"dirty_bytes": float(cap), "bw_bytes_s": 1.0 / slope}


def measure_section(torch, timer: Timer, log) -> dict:
    return measure_writeback(torch, timer, log)


def refit_section(section: dict) -> dict:
    """The section with its figures refitted from its samples."""
    return {**section, **fit_writeback(section["samples"])}


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of the write-back pairs: per size the stores, the pair, and the GEMV once (short kernels)."""
    return (2 * len(WRITEBACK_MB) + 1) * timed_seconds(1e-5)
