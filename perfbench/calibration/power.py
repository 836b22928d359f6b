"""The board's power figures (`power`) for the cost model's power limit (analytic.efficiency.power_capped_s):
idle power, the enforced limit, each prefill kernel family's power and SM clock back to back, and how
much faster a big GEMM runs between idle gaps than back to back at the limit."""

from __future__ import annotations

import statistics
import time
from typing import Callable

from analytic.ops import ATTN_PREFILL, CONV1D, ELEMENTWISE, ROPE, SELECTIVE_SCAN, SSD
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import PowerMeter, Timer, randn, timed_seconds

SECTION = "power"
BURST_SHAPE = (8192, 16384, 4096)  # (M, N, K): the 8B MLP's fc1 at 8K tokens, ~1 ms of tensor-core work
POWER_WINDOW_S = 1.0  # NVML's energy counter moves in coarse steps: average over a second or more


def _rope_load(torch) -> Callable[[], object]:
    """MHA's RoPE on q and k as its QKV projection leaves them (6 x 6144 tokens), as the layer runs it."""
    from models.reference import apply_rope, rope_tables  # torch

    spec = BUILTIN_LAYERS["attention-mha"]
    qkv = randn(torch, 6, 6144, spec.qkv_dim)
    q, k, _ = torch.split(qkv, [spec.q_dim, spec.kv_dim, spec.kv_dim], dim=-1)
    q, k = q.unflatten(-1, (spec.n_heads, spec.head_dim)), k.unflatten(-1, (spec.n_kv_heads, spec.head_dim))
    cos, sin = rope_tables(spec, torch.arange(6144, device="cuda"), torch.bfloat16)
    return lambda: (apply_rope(q, cos, sin), apply_rope(k, cos, sin))


def family_power_loads(torch) -> dict:
    """One large call per kernel family that prefill runs besides GEMMs (8B shapes, inputs off the
    sweep grid): {class: callable}. Families whose library is missing are left out."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    loads = {}
    a = BUILTIN_LAYERS["attention"]
    q = randn(torch, 6, a.n_heads, 6144, a.head_dim)
    k, v = randn(torch, 6, a.n_kv_heads, 6144, a.head_dim), randn(torch, 6, a.n_kv_heads, 6144, a.head_dim)

    def attention():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    loads[ATTN_PREFILL] = attention
    big = randn(torch, 256 << 20)
    loads[ELEMENTWISE] = lambda: torch.relu_(big)
    loads[ROPE] = _rope_load(torch)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
        from causal_conv1d import causal_conv1d_fn
    except ImportError:
        return loads
    m2, m1 = BUILTIN_LAYERS["mamba2"], BUILTIN_LAYERS["mamba"]
    H, P, G, N = m2.nheads, m2.headdim, m2.ngroups, m2.d_state
    x, dtt = randn(torch, 6, 6144, H, P), randn(torch, 6, 6144, H, scale=0.5)
    B2, C2 = randn(torch, 6, 6144, G, N), randn(torch, 6, 6144, G, N)
    A2 = -torch.rand(H, device="cuda", dtype=torch.float32) * 4 - 0.5
    loads[SSD] = lambda: mamba_chunk_scan_combined(x, dtt, A2, B2, C2, m2.chunk_size, dt_softplus=True)
    di, N1 = m1.d_inner, m1.d_state
    u, delta, z = randn(torch, 12, di, 2048), randn(torch, 12, di, 2048, scale=0.5), randn(torch, 12, di, 2048)
    B1, C1 = randn(torch, 12, 1, N1, 2048), randn(torch, 12, 1, N1, 2048)
    A1 = -torch.rand(di, N1, device="cuda", dtype=torch.float32) - 0.5
    loads[SELECTIVE_SCAN] = lambda: selective_scan_fn(u, delta, A1, B1, C1, None, z=z, delta_softplus=True)
    xc, wc = randn(torch, 6, m2.conv_dim, 6144), randn(torch, m2.conv_dim, m2.d_conv)
    loads[CONV1D] = lambda: causal_conv1d_fn(xc, wc, None, activation="silu")
    return loads


def measure_power(torch, timer: Timer, meter: PowerMeter, log) -> dict:
    """The board's power figures for the cost model's power limit (analytic.efficiency.power_capped_s):
    idle power, the enforced limit, each prefill kernel family's power run back to back, and the GEMM
    burst speedup: a big GEMM between idle gaps (a one-thread sleep kernel three times its length)
    against the same GEMM back to back, where the limit holds the clock down. Empty without NVML."""
    import torch.nn.functional as F

    limit = meter.limit_w()
    if not limit or meter.energy_j() is None:
        log("power: no NVML energy counter; calibrating without the power model")
        return {}

    clocks: dict = {}

    def average_w(fn, seconds: float = POWER_WINDOW_S, clock_key: str | None = None) -> float:
        """Average board power over `seconds` of fn back to back; with clock_key, also the median SM
        clock read while its kernels run (into `clocks`)."""
        fn()
        torch.cuda.synchronize()
        e0, w0, readings = meter.energy_j(), time.perf_counter(), []
        while time.perf_counter() - w0 < seconds:
            fn()
            readings.append(meter.sm_clock_hz() if clock_key else None)  # queued work still running
            torch.cuda.synchronize()
        watts = (meter.energy_j() - e0) / (time.perf_counter() - w0)
        readings = [r for r in readings[len(readings) // 2:] if r]  # the settled half
        if clock_key and readings:
            clocks[clock_key] = statistics.median(readings)
        return watts

    torch.cuda.synchronize()
    time.sleep(0.5)  # let the last benchmark's clocks settle
    idle = average_w(lambda: time.sleep(0.05))
    m, n, k = BURST_SHAPE
    x, w = randn(torch, m, k), randn(torch, n, k, scale=0.02)
    gemm = lambda: [F.linear(x, w) for _ in range(8)]  # noqa: E731
    gemm_w = average_w(gemm, 2 * POWER_WINDOW_S, "gemm")  # also brings the board to its power-capped clock
    sustained = timer(lambda: F.linear(x, w))
    cycles_per_s = meter.max_sm_clock_hz() or 1.98e9  # the sleep kernel counts SM cycles

    def between_gaps(idle_ratio: float) -> tuple[float, float]:
        """(median GEMM time, board power while the GEMMs run) with `idle_ratio` x its length idle after
        each. The gaps (a one-thread sleep kernel) are taken to draw idle power."""
        pairs, w0, e0 = [], time.perf_counter(), meter.energy_j()
        while time.perf_counter() - w0 < POWER_WINDOW_S:
            for _ in range(8):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                F.linear(x, w)
                end.record()
                torch.cuda._sleep(int(idle_ratio * sustained * cycles_per_s))
                pairs.append((start, end))
            torch.cuda.synchronize()
        wall = time.perf_counter() - w0
        average = (meter.energy_j() - e0) / wall
        busy = sum(a.elapsed_time(b) / 1e3 for a, b in pairs) / wall
        burst_w = idle + (average - idle) / max(busy, 1e-3)
        return statistics.median(a.elapsed_time(b) / 1e3 for a, b in pairs[len(pairs) // 2:]), burst_w  # settled half

    burst, burst_w = between_gaps(3.0)
    speedup = max(1.0, sustained / burst)
    families = {}
    try:
        loads = family_power_loads(torch)
    except Exception as exc:  # the model then assumes no headroom beside GEMMs
        log(f"power: kernel families not measured ({type(exc).__name__}: {str(exc)[:120]})")
        loads = {}
    for op_class, fn in loads.items():
        try:
            families[op_class] = average_w(fn, clock_key=op_class)
        except Exception as exc:  # one family's kernel failing leaves it at the limit (no headroom)
            log(f"power: {op_class} not measured ({type(exc).__name__})")
        torch.cuda.empty_cache()
    log(f"power: idle {idle:.0f} W, limit {limit:.0f} W; GEMM back to back {gemm_w:.0f} W, "
        f"{2 * m * n * k / sustained / 1e12:.0f} TFLOP/s; between idle gaps {2 * m * n * k / burst / 1e12:.0f} "
        f"TFLOP/s (x{speedup:.3f}, {burst_w:.0f} W while running); "
        + ", ".join(f"{c} {p:.0f} W" for c, p in families.items())
        + "; SM clocks " + ", ".join(f"{c} {hz / 1e6:.0f} MHz" for c, hz in clocks.items()))
    return {"idle_w": idle, "limit_w": limit, "gemm_burst_speedup": speedup, "gemm_w": gemm_w,
            "gemm_burst_w": burst_w, **{f"{c}_w": p for c, p in families.items()},
            **{f"{c}_clock_hz": hz for c, hz in clocks.items()}}


def measure_section(torch, timer: Timer, log) -> dict:
    return measure_power(torch, timer, PowerMeter(), log)


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of the power figures: a settling rest, idle, the GEMM back to back (two windows),
    between idle gaps, and one window per kernel family."""
    return 0.5 + POWER_WINDOW_S * (1 + 2 + 1 + 6) + timed_seconds(1e-3)
