"""GEMMs fed a ReLU's output, timed against the same GEMM on the grid's dense input.

The MLP's fc2 reads relu(fc1(x))**2, half of whose elements are zero. The tensor cores toggle less on
zeros and draw less power per cycle, so at the board's power limit the clock is allowed higher and the
GEMM runs faster. The cycles do not change, so a weight-streaming (memory-bound) GEMM runs as fast with
either input. H100, 2026-11-24T14:19Z, fc2 (N 4096, K 16384) power-capped after a rest: the layer's
own input took 0.93-0.98 of the grid's dense time at 4K-64K tokens, at 1455-1500 MHz against 1410-1470.
Meanwhile the MLP's prefill was predicted 3-6 % slow on every fresh set. The input's zeros account for
that; fc1, whose input is the block's dense input, ran as the grid does.

The calibration times each built-in GEMM with such an input at compute-bound M. Dense and ReLU input
are interleaved round by round, each timed as the grid times a shape (bench.time_gemm). The model
scales the grid's time by their ratio where the GEMM is power-limited
(analytic.efficiency.relu_input_ratio), and lets that GEMM's clock alone at the limit be that much
higher in the shared clock (efficiency.clock_ratio).
"""

from __future__ import annotations

import math
import statistics

from perfbench.calibration.bench import device_ridge, gemm_compute_bound, randn, time_gemm, timed_seconds
from perfbench.calibration.gemm import builtin_gemm_ops

SECTION = "gemm_relu_input"

RELU_INPUT_M = (2048, 4096, 8192, 16384, 32768, 65536)
RELU_INPUT_ROUNDS = 3  # dense and ReLU input alternate, so a board warming or cooling moves both alike


def relu_input_gemm_shapes() -> list[tuple[int, int]]:
    """(N, K) of the built-in layers' GEMMs whose input is a ReLU's output (the MLP's fc2)."""
    return sorted({(op.shape["n"], op.shape["k"]) for op in builtin_gemm_ops() if op.shape.get("relu_input")})


def relu_input(torch, m: int, n: int, k: int, device: str = "cuda"):
    """(m, k) bf16 as the MLP's fc2 receives it: squared ReLU of a GEMM with nn.Linear's own initial
    weights (kaiming-uniform, bound 1/sqrt(fan_in)) on the harness's randn input, d_model = n."""
    producer = torch.empty(k, n, device=device, dtype=torch.bfloat16)
    torch.nn.init.kaiming_uniform_(producer, a=math.sqrt(5))
    hidden = torch.nn.functional.linear(randn(torch, m, n, device=device), producer)
    return torch.relu_(hidden).square_()


def measure_relu_input_gemms(torch, timer, log, ridge: float | None = None) -> list[dict]:
    """[{m, n, k, dense_s, relu_s}]: per shape and M, the median over rounds of the GEMM on the grid's
    dense randn input and on a ReLU-squared input, the same weights (the grid's) for both."""
    import torch.nn.functional as F

    ridge = device_ridge(torch) if ridge is None else ridge
    out = []
    for n, k in relu_input_gemm_shapes():
        weight = randn(torch, n, k, scale=0.02)
        for m in RELU_INPUT_M:
            inputs = {"dense": randn(torch, m, k), "relu": relu_input(torch, m, n, k)}
            bound = gemm_compute_bound(m, n, k, ridge)
            times: dict[str, list[float]] = {"dense": [], "relu": []}
            for _ in range(RELU_INPUT_ROUNDS):
                for name, a in inputs.items():
                    times[name].append(time_gemm(timer, lambda a=a: F.linear(a, weight), bound))
            out.append({"m": m, "n": n, "k": k, "dense_s": statistics.median(times["dense"]),
                        "relu_s": statistics.median(times["relu"])})
            del inputs
            torch.cuda.empty_cache()
        log(f"  relu-input gemm N={n} K={k}: " + ", ".join(
            f"M={g['m']} x{g['relu_s'] / g['dense_s']:.3f}" for g in out[-len(RELU_INPUT_M):]))
        del weight
    return out


def measure_section(torch, timer, log) -> list[dict]:
    return measure_relu_input_gemms(torch, timer, log)


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of re-measuring the ReLU-input GEMMs `data` holds: each round times both inputs."""
    return sum(RELU_INPUT_ROUNDS * (timed_seconds(g["dense_s"], protocol) + timed_seconds(g["relu_s"], protocol))
               for g in data.get("gemm_relu_input", [])
               for protocol in ["power_limited" if gemm_compute_bound(g["m"], g["n"], g["k"], ridge) else "timer"])
