"""What a decode step's CUDA graph costs beyond its kernels' calibrated times, when the GPU is the bottleneck.

A decode step is one graph replay timed between two events (`perfbench run`). Its kernels are
calibrated alone, back to back in a graph; inside a step three things add to their sum:
  base_s         the replay boundary: a graph of two weight-streaming GEMVs (the MLP's fc1 and fc2 at
                 decode M) against the two GEMVs alone, each on rotated copies (H100: ~4 us; the
                 one-kernel replay figure, graph_replay_s, also holds the host's launch and is 2x that),
                 taken as the intercept of the warm chains' line;
  kernel_s       each further kernel of the step: a small elementwise pass on the activation the
                 previous kernel wrote (still in L2), vs the same pass alone;
  cold_kernel_s  each further kernel that reads or writes a tensor living across steps (a parameter,
                 a cache, a state) after the weight stream has evicted it from L2: the same pass on
                 its own never-reused buffer. Calibrated alone it found its data in L2; in a step it
                 waits on HBM latency (H100: ~0.5 us per kernel vs ~0.15 warm).
The chains are the measurement, not a layer: chains of 1-16 such kernels between the two GEMVs.
"""

from __future__ import annotations

import statistics

from perfbench.calibration.bench import randn, rotated_calls, run_each, timed_seconds
from perfbench.measure.timing import TimingOptions, capture_graph, measure

SECTION = "step"

STEP_M = 16  # decode rows of the two GEMVs (a batch of 16)
STEP_GEMVS = ((16384, 4096), (4096, 16384))  # (N, K): the 8B MLP's fc1 and fc2, 134 MB of weights each
STEP_SMALL = (1, 2, 4, 8, 16)  # small kernels between the GEMVs, per chain
STEP_TIMING = TimingOptions(warmup=2, min_repeats=5, max_repeats=200, target_s=0.1, nvtx=False, rest_s=0.1)


def measure_step_overhead(torch, timer, log) -> dict:
    """{"samples": [{chain, kernels, cold_kernels, sum_s, step_s}], base_s, kernel_s, cold_kernel_s}."""
    import torch.nn.functional as F

    (n1, k1), (n2, k2) = STEP_GEMVS
    x = randn(torch, STEP_M, k1)
    h = torch.empty(STEP_M, n1, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(STEP_M, n2, device="cuda", dtype=torch.bfloat16)
    w1, w2 = randn(torch, n1, k1, scale=0.02), randn(torch, n2, k2, scale=0.02)
    cold = [randn(torch, STEP_M * n2) for _ in range(max(STEP_SMALL))]  # one buffer per kernel: never reused
    fc1 = lambda: torch.matmul(x, w1.t(), out=h)  # noqa: E731
    fc2 = lambda: torch.matmul(h, w2.t(), out=y)  # noqa: E731
    warm = lambda: y.add_(1.0)  # noqa: E731  (the previous kernel's output, still in L2)
    colds = [lambda t=t: t.mul_(0.999) for t in cold]

    def gemv_alone(n, k, rows):
        calls = rotated_calls(lambda: (lambda w=randn(torch, n, k, scale=0.02): F.linear(rows, w)), 2 * n * k)
        t = timer(run_each(calls)) / len(calls)
        del calls
        torch.cuda.empty_cache()
        return t

    alone = {"fc1": gemv_alone(n1, k1, x), "fc2": gemv_alone(n2, k2, h), "warm": timer(warm), "cold": timer(colds[0])}

    def step_s(calls):
        replay, graph = capture_graph(lambda: [call() for call in calls])
        t = statistics.median(measure(replay, STEP_TIMING, cuda=True).times_ms) / 1e3
        del graph
        return t

    chains = [("gemv2", [], 0)] + [(f"warm{j}", [warm] * j, 0) for j in STEP_SMALL] + \
             [(f"cold{j}", colds[:j], j) for j in STEP_SMALL]
    samples = []
    for name, small, n_cold in chains:
        total = alone["fc1"] + alone["fc2"] + len(small) * alone["cold" if n_cold else "warm"]
        measured = step_s([fc1, *small, fc2])
        samples.append({"chain": name, "kernels": 2 + len(small), "cold_kernels": n_cold,
                        "sum_s": total, "step_s": measured})
        log(f"  step: {name:6s} {2 + len(small):2d} kernels, {measured * 1e6:7.2f} us, "
            f"+{(measured - total) * 1e6:.2f} us over its kernels alone")
    del w1, w2, cold
    torch.cuda.empty_cache()
    return {"samples": samples, **fit_step_overhead(samples)}


def fit_step_overhead(samples: list[dict]) -> dict:
    """base_s and kernel_s: a least-squares line through the warm chains' excess over their added kernels
    (the two-GEMV chain at 0; one chain's excess moves by ~0.5 us between runs, a line over six does
    not); cold_kernel_s: the cold chains' slope over the same base. Never negative."""
    warm = [(s["kernels"] - 2, s["step_s"] - s["sum_s"]) for s in samples if not s["cold_kernels"]]
    cold = [(s["kernels"] - 2, s["step_s"] - s["sum_s"]) for s in samples if s["cold_kernels"]]
    if len({n for n, _ in warm}) < 2:
        raise ValueError("step samples need warm chains of at least two lengths")
    n_mean = sum(n for n, _ in warm) / len(warm)
    e_mean = sum(e for _, e in warm) / len(warm)
    kernel_s = max(sum((n - n_mean) * (e - e_mean) for n, e in warm) / sum((n - n_mean) ** 2 for n, _ in warm), 0.0)
    base = max(e_mean - kernel_s * n_mean, 0.0)
    cold_s = (sum(n * (e - base) for n, e in cold) / sum(n * n for n, _ in cold)) if cold else kernel_s
    return {"base_s": base, "kernel_s": kernel_s, "cold_kernel_s": max(cold_s, 0.0)}


def measure_section(torch, timer, log) -> dict:
    return measure_step_overhead(torch, timer, log)


def refit_section(section: dict) -> dict:
    """The section with its figures refitted from its samples."""
    return {**section, **fit_step_overhead(section["samples"])}


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of the decode-step chains: four kernels alone, then each chain's rested window."""
    chains = 1 + 2 * len(STEP_SMALL)
    return 4 * timed_seconds(1e-5) + chains * (STEP_TIMING.rest_s + STEP_TIMING.target_s + 0.05)
