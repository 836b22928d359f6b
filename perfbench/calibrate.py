"""`perfbench calibrate`: microbenchmarks that fill a calibration file for the cost model.

Measured on the GPU, each alone (never the layer sweep that `compare` evaluates against):
  (i)   device-to-device copy bandwidth over sizes (bytes read + written per second);
  (ii)  bf16 GEMM time over M for every (N, K) the built-in layers use, plus generic square shapes,
        and for those laid out with M as an unaligned leading dimension (perfbench/unaligned_gemm.py);
  (iii) the kernels no GEMM covers, each alone, at sizes chosen off the evaluation grid:
        Mamba-2 SSD (`mamba_chunk_scan_combined`), Mamba-1 `selective_scan_fn`, `causal_conv1d_fn`
        and `causal_conv1d_update`, `selective_state_update` (both layer forms), SDPA attention
        prefill (causal) and decode (one query against a cache), elementwise passes;
  (iv)  per-kernel cost inside a CUDA graph replay, and per eager PyTorch op; what a decode step's
        graph adds to its kernels when the GPU is the bottleneck (perfbench/step_overhead.py);
  (v)   board power (NVML energy counter): idle, each prefill kernel family back to back, and how
        much faster a big GEMM runs between idle gaps than back to back at the power limit.
Small kernels and weight-streaming GEMMs are timed as CUDA-graph replays of many launches (the way a
decode step runs); compute-bound GEMMs and FlashAttention's prefill after a rest and a stretch at the
power limit (`time_power_limited`);
attention decode, whose plain kernel is power-limited, the way `perfbench run` times a decode point
(`Timer.point`: a rest, then the harness's short window);
each sample's median over trials is kept in the file, so `--refit` can refit on a CPU later, and
`--refit FILE --remeasure FAMILY` re-measures one kernel family (KERNEL_FAMILIES) into it first.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import time
from dataclasses import replace
from typing import Callable

from analytic.calibration import FORMAT, VERSION, from_dict
from analytic.efficiency import ceilings
from analytic.fit import fit_class, sample_ops, spec_fields
from analytic.hardware import get_gpu, gpu_key_from_name
from analytic.ops import (ADD_NORM, ATTN_DECODE, ATTN_PREFILL, CONV1D, ELEMENTWISE, GEMM, ROPE, SELECTIVE_SCAN,
                          SSD, SSU_MAMBA1, STATE_UPDATE)
from models.registry import BUILTIN_LAYERS, VOCAB
from models.specs import SpecError
from perfbench.errors import PerfbenchError, exception_line, require
from perfbench.host_chain import host_figures, measure_host_chains, with_host_samples
from perfbench.relu_input_gemm import measure_relu_input_gemms
from perfbench.step_overhead import fit_step_overhead, measure_step_overhead
from perfbench.sustained_clock import measure_sustained
from perfbench.unaligned_gemm import measure_unaligned_gemms
from perfbench.timing import TimingOptions, l2_flusher, measure

M_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
GENERIC_NK = ((1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192), (3072, 1024), (1024, 3072))
TARGET_TIMED_S = 0.05  # timed work per trial
WARM_S = 0.05  # sustained warm-up before timing
# In a decode step every kernel finds its inputs out of L2: the weight streams between two uses of
# any buffer (hundreds of MB) evict it. Timed alone, a kernel would find its last call's inputs in
# the 50 MB L2 (and a streaming read keeps part of L2 across a rotation about its size), so the
# microbenchmarks rotate through copies of their inputs that together span ~5x the L2.
ROTATE_BYTES = 256e6
MAX_COPIES = 64
# The plain (unsplit) FlashAttention decode kernel holds the board at its power limit: back to back
# for a few tenths of a second its clock drops ~10-15 %. `perfbench run` rests before each point and
# times it in a window of ~0.1-0.2 s, before the limiter bites, so attention decode samples are
# timed the same way: a rest, then the harness's own timing loop.
POINT_REST_S = 0.3  # `perfbench run --rest-ms` defaults to the same rest
POINT_TIMING = TimingOptions(warmup=2, min_repeats=5, max_repeats=100, target_s=0.1, nvtx=False, rest_s=POINT_REST_S)
POINT_WINDOWS = 2  # rested windows per sample: the clock right after a rest varies by a few %
POINT_REPLAY_S = 0.5e-3
# A FlashAttention prefill call this long holds the board at its power limit back to back and is timed
# power-capped; shorter ones keep the short warm-up (timed eagerly after a rest, a 384-token call's host
# dispatch read 2-3x its time, H100 2026-11-24T10:48Z).
POWER_LIMITED_MIN_S = 0.5e-3
CAP_S = 0.25  # back to back before a compute-bound GEMM is timed: a rested board reaches its power limit in ~0.1 s
DEFAULT_RIDGE = 250.0  # FLOP/byte, between the H100's 295 and the H200's 206


def rotation_copies(footprint_bytes: float) -> int:
    """How many copies of inputs this size span ROTATE_BYTES (at most MAX_COPIES)."""
    return max(1, min(MAX_COPIES, math.ceil(ROTATE_BYTES / max(footprint_bytes, 1.0))))


def rotated_calls(make_call: Callable[[], Callable[[], object]], footprint_bytes: float) -> list:
    """One call per independent input set, enough sets to span ROTATE_BYTES."""
    return [make_call() for _ in range(rotation_copies(footprint_bytes))]


def run_each(calls: list) -> Callable[[], None]:
    def run_all():
        for call in calls:
            call()
    return run_all


def rotation(make_call: Callable[[], Callable[[], object]], footprint_bytes: float):
    """(run_all, copies): one call on each of `copies` independent input sets, enough to span
    ROTATE_BYTES; time run_all and divide by copies for the per-call time with a cold L2."""
    calls = rotated_calls(make_call, footprint_bytes)
    return run_each(calls), len(calls)


def builtin_gemm_ops() -> list:
    """Every GEMM op the built-in layers run, prefill and decode (one small point: their N, K and
    layout do not depend on the batch or length)."""
    import numpy as np

    from analytic.costs import layer_ops

    return [op for spec in BUILTIN_LAYERS.values() for phase in ("prefill", "decode")
            for op in layer_ops(spec, phase, np.array([1.0]), np.array([512.0])) if op.op_class == GEMM]


def gemm_shapes() -> list[tuple[int, int]]:
    """(N, K) of every GEMM the built-in layers and the LM head run (weights are K x N)."""
    shapes = set(GENERIC_NK) | {(op.shape["n"], op.shape["k"]) for op in builtin_gemm_ops()}
    shapes.add((VOCAB, 4096))
    return sorted(shapes)


class PowerMeter:
    """The board's energy counter and enforced power limit through NVML (None where unavailable)."""

    def __init__(self):
        self.handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.handle, self._nvml = handle, pynvml
        except Exception:  # no NVML or no energy counter on this board: no power figures
            pass

    def _query(self, read: Callable[[object], float]) -> float | None:
        """One NVML reading, or None where the board or driver does not give it."""
        if self.handle is None:
            return None
        try:
            return read(self._nvml)
        except Exception:
            return None

    def energy_j(self) -> float | None:
        return self._query(lambda nvml: nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3)

    def sm_clock_hz(self) -> float | None:
        """The SM clock now (read while a kernel runs, it is the clock that kernel gets)."""
        return self._query(lambda nvml: nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_SM) * 1e6)

    def max_sm_clock_hz(self) -> float | None:
        return self._query(lambda nvml: nvml.nvmlDeviceGetMaxClockInfo(self.handle, nvml.NVML_CLOCK_SM) * 1e6)

    def limit_w(self) -> float | None:
        return self._query(lambda nvml: nvml.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1e3)


class Timer:
    """CUDA-event timing of a callable: graph replay of `reps` launches when capturable, else eager."""

    def __init__(self, torch):
        self.torch = torch

    last_mode = "graph"

    def __call__(self, fn: Callable[[], object], est_s: float | None = None, graph: bool = True,
                 trials: int = 3) -> float:
        torch = self.torch
        # Warm up for a sustained stretch, as the layer sweep runs its points: long compute-bound
        # kernels then see the power-capped clock they will see in a layer, not a cold burst.
        warm_start = time.perf_counter()
        for i in range(200):
            fn()
            if i >= 2 and i % 4 == 3:
                torch.cuda.synchronize()
                if time.perf_counter() - warm_start > WARM_S:
                    break
        torch.cuda.synchronize()
        if est_s is None:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            est_s = max(start.elapsed_time(end) / 1e3, 1e-6)
        reps = int(min(200, max(1 if est_s > TARGET_TIMED_S else 3, TARGET_TIMED_S / est_s)))
        runner = None
        if graph:
            try:
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    fn()
                torch.cuda.current_stream().wait_stream(stream)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(reps):
                        fn()
                g.replay()
                runner = g.replay
            except Exception:  # not capturable: time eagerly
                torch.cuda.synchronize()
                runner = None
        self.last_mode = "graph" if runner is not None else "eager"
        if runner is None:
            def runner():
                for _ in range(reps):
                    fn()
        times = []
        for _ in range(trials):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            runner()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / reps)
        return statistics.median(times)

    def point(self, fn: Callable[[], object], options: TimingOptions = POINT_TIMING,
              windows: int = POINT_WINDOWS) -> float:
        """Seconds per call of `fn` timed as `perfbench run` times a decode point: CUDA-graph replays
        after the board rested (`options.rest_s`), in the harness's short window; the median over `windows`
        such windows. A replay holds enough calls to last POINT_REPLAY_S, so the replay's own launch
        latency (the layer model adds it once per step) stays out of the per-call time."""
        torch = self.torch
        from perfbench.timing import capture_graph

        calls = 1
        try:
            replay, graph = capture_graph(fn)
            per_call = measure(replay, TimingOptions(warmup=1, min_repeats=3, max_repeats=3, nvtx=False),
                               cuda=True).median_ms / 1e3
            calls = max(1, min(64, math.ceil(POINT_REPLAY_S / max(per_call, 1e-7))))
            if calls > 1:
                del graph

                def repeated():
                    for _ in range(calls):
                        fn()
                replay, graph = capture_graph(repeated, warmup=1)
            self.last_mode = "graph"
        except Exception:  # not capturable: time eagerly
            torch.cuda.synchronize()
            replay, graph = fn, None
            self.last_mode = "eager"
        times: list[float] = []
        for _ in range(windows):  # each window after its own rest (measure rests first)
            times += measure(replay, options, cuda=True).times_ms
        del graph
        return statistics.median(times) / 1e3 / calls


def _randn(torch, *shape, dtype=None, device="cuda", scale=1.0):
    dtype = dtype or torch.bfloat16
    return (torch.randn(*shape, device=device, dtype=torch.float32) * scale).to(dtype)


def measure_copy(torch, timer: Timer, log) -> tuple[float, list]:
    curve = []
    for mib in (1, 4, 16, 64, 256, 1024, 2048):
        n = mib * 1024 * 1024 // 2
        src = _randn(torch, n)
        dst = torch.empty_like(src)
        t = timer(lambda: dst.copy_(src))
        curve.append({"bytes": 2 * src.numel() * 2, "time_s": t})
        log(f"copy {mib:5d} MiB: {2 * src.numel() * 2 / t / 1e12:.3f} TB/s")
        del src, dst
    best = max(c["bytes"] / c["time_s"] for c in curve if c["bytes"] >= 256 * 2**20)
    return best, curve


def device_ridge(torch) -> float:
    """FLOP per byte where a bf16 GEMM on this GPU turns compute-bound: the datasheet's peak over its
    HBM bandwidth (DEFAULT_RIDGE for a GPU without a datasheet entry)."""
    try:
        gpu = get_gpu(gpu_key_from_name(torch.cuda.get_device_properties(0).name))
    except SpecError:
        return DEFAULT_RIDGE
    return gpu.peak_bf16_flops / gpu.mem_bw_bytes_s


def gemm_compute_bound(m: int, n: int, k: int, ridge: float) -> bool:
    """Whether a bf16 GEMM's FLOPs per byte (operands and output moved once) reach the ridge."""
    return 2.0 * m * n * k / (2.0 * (m * k + n * k + m * n)) >= ridge


def time_power_limited(timer: Timer, run_all: Callable[[], object], graph: bool = True) -> float:
    """Seconds per run_all of a kernel that holds the board at its power limit (a compute-bound GEMM,
    FlashAttention's prefill): after a rest (as `perfbench run` rests before a point), back to back
    for CAP_S so the limiter has bitten, then timed. The power model takes these times as
    power-capped ones (and the shared-clock model, analytic.efficiency.clock_scales, takes each such
    kernel's clock alone at the limit as its reference). FlashAttention's prefill samples timed so
    came out within -6 to +5 % of the short warm-up's (H100, 2026-11-24T10:48Z)."""
    timer.torch.cuda.synchronize()
    time.sleep(POINT_REST_S)
    started = time.perf_counter()
    while time.perf_counter() - started < CAP_S:
        run_all()
        timer.torch.cuda.synchronize()
    return timer(run_all, graph=graph)


def time_gemm(timer: Timer, run_all: Callable[[], object], compute_bound: bool) -> float:
    """Seconds per run_all. A compute-bound GEMM holds the board at its power limit, and the clock
    that limit allows falls as the board heats. Timed back to back right after the grid's earlier
    shapes, the board ran hot and the samples came out 3 % slower in the median (up to 13 %) than
    after a rest (H100 fc1/fc2 at M >= 4K: 640-716 against 652-736 TFLOP/s), and the MLP's prefill was
    predicted 5 % slow on every rested set. So each one is timed power-capped after a rest
    (time_power_limited). Weight-streaming ones barely draw power: graph replays back to back."""
    if not compute_bound:
        return timer(run_all)
    return time_power_limited(timer, run_all)


def measure_gemms(torch, timer: Timer, log, mem_budget_bytes: float, ridge: float | None = None) -> list:
    import torch.nn.functional as F

    ridge = device_ridge(torch) if ridge is None else ridge
    out = []
    for n, k in gemm_shapes():
        w_bytes = 2 * n * k
        copies = rotation_copies(w_bytes)
        weights = [_randn(torch, n, k, scale=0.02) for _ in range(copies)]
        m_values = [m for m in M_GRID if m <= (256 if n >= 100_000 else 65536)]
        for m in m_values:
            need = 2 * (m * k + m * n) * 2
            if need > mem_budget_bytes or 2.0 * m * n * k > 4e13:
                continue
            x = _randn(torch, m, k)

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


# Even lengths (a multiple of the chunk their thread configuration walks) take the vectorised
# loads; the others the slower uneven path. Both cover 1 to 16 chunks per block.
SCAN_EVEN_LENGTHS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
SCAN_UNEVEN_LENGTHS = (200, 384, 768, 1536, 3000, 6000, 12000, 24000)
SCAN_BATCHES = (1, 3, 6, 12, 24, 48, 96, 192, 384, 768, 1536, 3072)
ADD_NORM_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536)  # decode batches to prefill tokens
ADD_NORM_COLD_ROWS = 256  # up to this many rows (decode batches) the norm is timed with its inputs out of L2


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


def ssd_sizes() -> list[tuple[int, int]]:
    """(batch, length) of the SSD microbenchmark: off the evaluation grid, 384 to ~200K tokens.
    (mamba_ssm 2.3's Triton SSD indexes x with 32-bit offsets: ~290K tokens of the 8B layer (b*L*H*P
    past 2**31) is an illegal memory access that poisons the CUDA context.)"""
    return [(1, 384), (1, 1536), (3, 1024), (1, 6144), (3, 3072), (6, 6144), (1, 24576), (12, 1536),
            (2, 640), (24, 768), (48, 1536), (6, 12288), (3, 40960), (64, 3072), (8, 24576)]


KERNEL_FAMILIES = ("ssd", "selective_scan", "conv1d", "state_update", "attention_prefill", "attention_decode",
                   "rope", "elementwise", "add_norm")  # in measure_kernels' order


# Measurements that fill their own section of the file (the GEMM grid, the power figures, the L2
# write-back pairs, the decode-step chains, GEMMs with an unaligned leading dimension or a ReLU's output
# as input, the sustained clock), re-measurable like the kernel families; and the layers' host chains ("host"), whose figures
# go into `launch` and their windows into `host_samples` (perfbench/host_chain.py).
SECTIONS = ("gemm", "power", "writeback", "step", "gemm_unaligned", "gemm_relu_input", "sustained")
REMEASURABLE = KERNEL_FAMILIES + SECTIONS + ("host",)


def check_kernel_families(names) -> None:
    """A one-line error naming any requested kernel family that measure_kernels does not have."""
    unknown = sorted(set(names) - set(REMEASURABLE))
    if unknown:
        raise PerfbenchError(f"unknown kernel family {', '.join(unknown)} (known: {', '.join(REMEASURABLE)})")


def measure_kernels(torch, timer: Timer, log, only: set[str] | None = None) -> dict:
    """Kernel families alone at off-grid sizes (`only`: just these families, by KERNEL_FAMILIES
    name); each sample names the layer ops it stands for."""
    samples: dict[str, list] = {c: [] for c in (SSD, SELECTIVE_SCAN, CONV1D, STATE_UPDATE, SSU_MAMBA1,
                                                   ATTN_PREFILL, ATTN_DECODE, ELEMENTWISE, ROPE, ADD_NORM)}
    failures: dict[str, str] = {}

    def add(op_class: str, sample: dict) -> None:
        """Keep a sample with how it was timed and the exact spec it ran, for later refits."""
        sample["mode"] = timer.last_mode
        if "layer" in sample:
            sample["kind"] = BUILTIN_LAYERS[sample["layer"]].kind
            sample["spec"] = spec_fields(BUILTIN_LAYERS[sample["layer"]])
        samples[op_class].append(sample)

    def guarded(name, fn):
        try:
            fn()
        except Exception as exc:  # record and go on: one missing kernel must not lose the rest
            failures[name] = exception_line(exc, width=200)
            log(f"  {name}: FAILED {failures[name]}")
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception as exc:  # a device fault (illegal address) poisons the context for good
            raise PerfbenchError(f"calibration aborted: the CUDA context is unusable after {name} failed "
                                 f"({failures.get(name, type(exc).__name__)})") from None

    m2 = BUILTIN_LAYERS["mamba2"]
    m1 = BUILTIN_LAYERS["mamba"]
    # Off-grid sizes: token counts between the sweep's powers of two.
    prefill_sizes = ((1, 384), (1, 1536), (3, 1024), (1, 6144), (3, 3072), (6, 6144), (1, 24576), (12, 1536))

    def ssd():
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        H, P, G, N = m2.nheads, m2.headdim, m2.ngroups, m2.d_state
        A = -torch.rand(H, device="cuda", dtype=torch.float32) * 4 - 0.5
        D = torch.randn(H, device="cuda", dtype=torch.float32)
        dt_bias = torch.randn(H, device="cuda", dtype=torch.float32) * 0.1
        for b, L in ssd_sizes():
            x = _randn(torch, b, L, H, P)
            dtt = _randn(torch, b, L, H, scale=0.5)
            B = _randn(torch, b, L, G, N)
            C = _randn(torch, b, L, G, N)
            t = timer(lambda: mamba_chunk_scan_combined(x, dtt, A, B, C, m2.chunk_size, D=D, dt_bias=dt_bias,
                                                        dt_softplus=True), graph=False)
            add(SSD, {"layer": "mamba2", "phase": "prefill", "batch": b, "seqlen": L,
                                 "ops": ["ssd_chunk_cumsum", "ssd_chunk_state", "ssd_state_passing",
                                         "ssd_bmm_chunk", "ssd_chunk_scan"], "time_s": t})
            log(f"  ssd b={b} L={L}: {t * 1e3:.3f} ms")

    def scan():
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        di, N = m1.d_inner, m1.d_state
        A = -torch.rand(di, N, device="cuda", dtype=torch.float32) - 0.5
        D = torch.randn(di, device="cuda", dtype=torch.float32)
        bias = torch.randn(di, device="cuda", dtype=torch.float32) * 0.1
        # The rate table's grid (analytic.efficiency.table_rate): per length, batches off the
        # evaluation grid spreading the total tokens from a few thousand (short, cool bursts) to
        # ~300K (long, power-capped runs).
        for b, L in scan_sizes():
            u = _randn(torch, b, di, L)
            delta = _randn(torch, b, di, L, scale=0.5)
            z = _randn(torch, b, di, L)
            B = _randn(torch, b, 1, N, L)
            C = _randn(torch, b, 1, N, L)
            t = timer(lambda: selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True),
                      graph=False)
            add(SELECTIVE_SCAN, {"layer": "mamba", "phase": "prefill", "batch": b, "seqlen": L,
                                            "ops": ["selective_scan"], "time_s": t})
            log(f"  selective_scan b={b} L={L}: {t * 1e3:.3f} ms")

    def conv():
        from causal_conv1d import causal_conv1d_fn, causal_conv1d_update

        for layer, spec, dim in (("mamba2", m2, m2.conv_dim), ("mamba", m1, m1.d_inner)):
            w = _randn(torch, dim, spec.d_conv)
            bias = _randn(torch, dim)
            for b, L in prefill_sizes[:5]:
                x = _randn(torch, b, dim, L)
                t = timer(lambda: causal_conv1d_fn(x, w, bias, activation="silu"), graph=False)
                samples[CONV1D].append({"layer": layer, "phase": "prefill", "batch": b, "seqlen": L,
                                        "ops": ["conv1d"], "time_s": t})
            for b in (1, 3, 12, 48, 96):
                def make(b=b, dim=dim, w=w, bias=bias, d_conv=spec.d_conv):
                    x, state = _randn(torch, b, dim), _randn(torch, b, dim, d_conv)
                    return lambda: causal_conv1d_update(x, state, w, bias, "silu")
                run_all, copies = rotation(make, 2 * b * dim * (spec.d_conv + 2))
                t = timer(run_all) / copies
                samples[CONV1D].append({"layer": layer, "phase": "decode", "batch": b, "seqlen": 1024,
                                        "ops": ["conv1d_update"], "time_s": t})
        log(f"  conv1d: {len(samples[CONV1D])} samples")

    def state_update():
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update

        H, P, G, N = m2.nheads, m2.headdim, m2.ngroups, m2.d_state
        A = (-torch.rand(H, device="cuda", dtype=torch.float32) - 0.5)[:, None, None].expand(H, P, N)
        D = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)
        dt_bias = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)
        for b in (1, 3, 12, 48, 96):
            def make(b=b):
                state, x = _randn(torch, b, H, P, N), _randn(torch, b, H, P)
                dtt = _randn(torch, b, H, scale=0.5)[:, :, None].expand(b, H, P)
                B, C = _randn(torch, b, G, N), _randn(torch, b, G, N)
                return lambda: selective_state_update(state, x, dtt, A, B, C, D, dt_bias=dt_bias, dt_softplus=True)
            run_all, copies = rotation(make, 2 * b * H * P * N)
            for graph in (True, False):
                t = timer(run_all, graph=graph) / copies
                add(STATE_UPDATE, {"layer": "mamba2", "phase": "decode", "batch": b, "seqlen": 1024,
                                   "ops": ["selective_state_update"], "time_s": t})
            log(f"  mamba2 state_update b={b}: {t * 1e6:.1f} us")
        di, N1 = m1.d_inner, m1.d_state
        A1 = -torch.rand(di, N1, device="cuda", dtype=torch.float32) - 0.5
        D1 = torch.randn(di, device="cuda", dtype=torch.float32)
        bias1 = torch.randn(di, device="cuda", dtype=torch.float32)
        for b in (1, 3, 12, 48, 96):
            def make1(b=b):
                state = _randn(torch, b, di, N1)
                x, dtt, z = _randn(torch, b, di), _randn(torch, b, di, scale=0.5), _randn(torch, b, di)
                B, C = _randn(torch, b, N1), _randn(torch, b, N1)
                return lambda: selective_state_update(state, x, dtt, A1, B, C, D1, z=z, dt_bias=bias1, dt_softplus=True)
            run_all, copies = rotation(make1, 2 * b * di * N1)
            t = timer(run_all) / copies
            add(SSU_MAMBA1, {"layer": "mamba", "phase": "decode", "batch": b, "seqlen": 1024,
                             "ops": ["selective_state_update"], "time_s": t})

    def attention_prefill():
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for layer in ("attention", "attention-mha"):
            spec = BUILTIN_LAYERS[layer]
            H, Hkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
            gqa = Hkv != H
            for b, L in prefill_sizes[:7]:
                q = _randn(torch, b, H, L, hd)
                k = _randn(torch, b, Hkv, L, hd)
                v = _randn(torch, b, Hkv, L, hd)
                def flash():
                    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
                t = timer(flash, graph=False)
                if t > POWER_LIMITED_MIN_S:  # long enough to draw the board's limit, as GEMMs do
                    t = time_power_limited(timer, flash, graph=False)
                add(ATTN_PREFILL, {"layer": layer, "phase": "prefill", "batch": b, "seqlen": L,
                                              "ops": ["flash_attention"], "time_s": t})
                log(f"  {layer} prefill b={b} L={L}: {t * 1e3:.3f} ms")

    def attention_decode():
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for layer in ("attention", "attention-mha"):
            spec = BUILTIN_LAYERS[layer]
            H, Hkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
            # Batch x KV heads spans the split-KV regime (few CTAs) to several waves of plain CTAs;
            # 2100 and 4200 keys make FlashAttention pick many splits (33 at 4200 for 8 KV heads at
            # B <= 2 and for 32 heads at B = 1), so the combine kernel is measured on both layers.
            # 9, 34 and 44 put samples between one and two waves of 2 CTAs per SM (264 on 132 SMs)
            # for both layers (288 MHA CTAs; 272 and 352 GQA CTAs), where 192 and 384 left a gap.
            for b in (1, 2, 3, 6, 9, 12, 24, 34, 44, 48, 96):
                for ctx in (768, 1536, 2100, 3072, 4200, 6144, 12288):
                    kv_bytes = b * (ctx + 1) * Hkv * hd * 2 * 2
                    if kv_bytes > 4e9:
                        continue

                    def make(b=b, ctx=ctx):
                        # As models.torch_layers runs it: the G query heads of a KV head as G query rows.
                        q = _randn(torch, b, Hkv, H // Hkv, hd)
                        k, v = _randn(torch, b, Hkv, ctx + 1, hd), _randn(torch, b, Hkv, ctx + 1, hd)

                        def call():
                            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                                return F.scaled_dot_product_attention(q, k, v)
                        return call
                    run_all, copies = rotation(make, kv_bytes)
                    t = timer.point(run_all) / copies
                    add(ATTN_DECODE, {"layer": layer, "phase": "decode", "batch": b, "seqlen": ctx,
                                      "ops": ["attention_decode"], "time_s": t, "timing": "point"})
            log(f"  {layer} decode: {len(samples[ATTN_DECODE])} samples")

    def rope():
        from models.reference import apply_rope, rope_tables

        spec = BUILTIN_LAYERS["attention-mha"]
        # The layer's own rotate-half code on q and k laid out as its QKV projection leaves them.
        for b, L in prefill_sizes[:7] + ((1, 1), (3, 1), (12, 1), (48, 1)):
            qkv = _randn(torch, b, L, spec.qkv_dim)
            q, k, _ = torch.split(qkv, [spec.q_dim, spec.kv_dim, spec.kv_dim], dim=-1)
            q = q.unflatten(-1, (spec.n_heads, spec.head_dim))
            k = k.unflatten(-1, (spec.n_kv_heads, spec.head_dim))
            cos, sin = rope_tables(spec, torch.arange(L, device="cuda"), torch.bfloat16)
            t = timer(lambda: (apply_rope(q, cos, sin), apply_rope(k, cos, sin)))
            phase = "prefill" if L > 1 else "decode"
            add(ROPE, {"layer": "attention-mha", "phase": phase, "batch": b, "seqlen": L if L > 1 else 1024,
                       "ops": ["rope"], "time_s": t})
        log(f"  rope: {len(samples[ROPE])} samples")

    def elementwise():
        for elems in (1 << 12, 1 << 16, 1 << 20, 3 << 20, 1 << 23, 1 << 25, 3 << 25):
            x = _randn(torch, elems)
            y = _randn(torch, elems)
            t = timer(lambda: torch.add(x, y))
            add(ELEMENTWISE, {"class": ELEMENTWISE, "name": "add", "flops": elems,
                                         "bytes": 3 * 2 * elems, "kernels": 1, "time_s": t})
            t = timer(lambda: torch.relu(x))
            add(ELEMENTWISE, {"class": ELEMENTWISE, "name": "relu", "flops": elems,
                                         "bytes": 2 * 2 * elems, "kernels": 1, "time_s": t})
        log(f"  elementwise: {len(samples[ELEMENTWISE])} samples")

    def add_norm():
        """The models' fused residual add + RMSNorm (models.stack.AddNorm: mamba_ssm's Triton layer_norm_fn,
        prenorm) over decode-step to prefill row counts of the 8B width. In a decode step each block's
        norm finds its inputs and weight evicted by the layer before (its weights stream through L2), and
        the kernel's few programs wait on HBM latency: so up to ADD_NORM_COLD_ROWS rows it is timed right
        after the harness's L2 flush (timing.l2_flusher), minus the flush alone (H200: 1.7 us warm at
        1 row, 4.4 us in a mamba-8b step)."""
        import numpy as np
        from mamba_ssm.ops.triton.layer_norm import layer_norm_fn

        from analytic.composition import add_norm as add_norm_op

        d = BUILTIN_LAYERS["mlp"].d_model
        weight = torch.ones(d, device="cuda", dtype=torch.bfloat16)
        evict = l2_flusher(torch.cuda.get_device_properties(0).L2_cache_size)
        evict_s = None
        for rows in ADD_NORM_ROWS:
            x, residual = _randn(torch, rows, d), _randn(torch, rows, d)
            norm = lambda: layer_norm_fn(x, weight, None, residual=residual, eps=1e-5, prenorm=True,  # noqa: E731
                                         is_rms_norm=True)
            if rows <= ADD_NORM_COLD_ROWS:
                evict_s = evict_s or timer(evict)
                t = max(timer(lambda: (evict(), norm())) - evict_s, 1e-7)
            else:
                t = timer(norm)
            op = add_norm_op("add_rmsnorm", d, "rmsnorm", np.array([float(rows)]), 2)
            add(ADD_NORM, {"class": ELEMENTWISE, "family": ADD_NORM, "name": "add_rmsnorm", "rows": rows,
                           "cold": rows <= ADD_NORM_COLD_ROWS, "flops": float(op.flops[0]),
                           "bytes": float(op.bytes_[0]), "kernels": 1, "time_s": t})
        del evict
        log(f"  add_norm: {len(samples[ADD_NORM])} samples, {samples[ADD_NORM][0]['time_s'] * 1e6:.2f} us at 1 row (cold)")

    check_kernel_families(only or ())
    measurements = (ssd, scan, conv, state_update, attention_prefill, attention_decode, rope, elementwise, add_norm)
    for name, fn in zip(KERNEL_FAMILIES, measurements):
        if only is not None and name not in only:
            continue
        log(f"kernels: {name}")
        guarded(name, fn)
    if only is not None:  # a partial run: only the classes it measured
        samples = {c: v for c, v in samples.items() if v}
    return {"samples": samples, "failures": failures}


BURST_SHAPE = (8192, 16384, 4096)  # (M, N, K): the 8B MLP's fc1 at 8K tokens, ~1 ms of tensor-core work
POWER_WINDOW_S = 1.0  # NVML's energy counter moves in coarse steps: average over a second or more


def _rope_load(torch) -> Callable[[], object]:
    """MHA's RoPE on q and k as its QKV projection leaves them (6 x 6144 tokens), as the layer runs it."""
    from models.reference import apply_rope, rope_tables

    spec = BUILTIN_LAYERS["attention-mha"]
    qkv = _randn(torch, 6, 6144, spec.qkv_dim)
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
    q = _randn(torch, 6, a.n_heads, 6144, a.head_dim)
    k, v = _randn(torch, 6, a.n_kv_heads, 6144, a.head_dim), _randn(torch, 6, a.n_kv_heads, 6144, a.head_dim)

    def attention():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    loads[ATTN_PREFILL] = attention
    big = _randn(torch, 256 << 20)
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
    x, dtt = _randn(torch, 6, 6144, H, P), _randn(torch, 6, 6144, H, scale=0.5)
    B2, C2 = _randn(torch, 6, 6144, G, N), _randn(torch, 6, 6144, G, N)
    A2 = -torch.rand(H, device="cuda", dtype=torch.float32) * 4 - 0.5
    loads[SSD] = lambda: mamba_chunk_scan_combined(x, dtt, A2, B2, C2, m2.chunk_size, dt_softplus=True)
    di, N1 = m1.d_inner, m1.d_state
    u, delta, z = _randn(torch, 12, di, 2048), _randn(torch, 12, di, 2048, scale=0.5), _randn(torch, 12, di, 2048)
    B1, C1 = _randn(torch, 12, 1, N1, 2048), _randn(torch, 12, 1, N1, 2048)
    A1 = -torch.rand(di, N1, device="cuda", dtype=torch.float32) - 0.5
    loads[SELECTIVE_SCAN] = lambda: selective_scan_fn(u, delta, A1, B1, C1, None, z=z, delta_softplus=True)
    xc, wc = _randn(torch, 6, m2.conv_dim, 6144), _randn(torch, m2.conv_dim, m2.d_conv)
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
    x, w = _randn(torch, m, k), _randn(torch, n, k, scale=0.02)
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


def measure_launch(torch, log) -> dict:
    x = torch.zeros(1, device="cuda")
    n = 400
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x.add_(1)
    torch.cuda.synchronize()
    with torch.cuda.graph(g):
        for _ in range(n):
            x.add_(1)
    g.replay()
    torch.cuda.synchronize()
    graph_s = statistics.median(_one_replay_s(torch, g) / n for _ in range(5))
    # A decode step is one graph replay timed between two events: the replay's own launch latency
    # (graph launch to first kernel) is paid once per step, whatever the graph holds.
    g1 = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g1):
        x.add_(1)
    g1.replay()
    torch.cuda.synchronize()
    per_replay = [_back_to_back_replay_s(torch, g1, 50) for _ in range(5)]
    # The host's best sustained period (other load on the host only makes it longer).
    replay_s = max(min(per_replay) - graph_s, 0.0)
    try:
        gap_s = _replay_gap(torch)
    except Exception as exc:  # keep the rest of the calibration; the model then adds the host figure
        log(f"launch: device gap per replay not measured ({type(exc).__name__}: {exc})")
        gap_s = None
    eager = []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            x.add_(1)
        torch.cuda.synchronize()
        eager.append((time.perf_counter() - t0) / n)
    eager_s = statistics.median(eager)
    log(f"launch: graph {graph_s * 1e6:.2f} us/kernel, replays every {(replay_s + graph_s) * 1e6:.2f} us "
        f"(host-bound), {(gap_s or 0.0) * 1e6:.2f} us device gap per replay, eager {eager_s * 1e6:.2f} us/op")
    out = {"graph_kernel_s": graph_s, "eager_kernel_s": eager_s, "graph_replay_s": replay_s}
    if gap_s is not None:
        out.update(graph_launch_period_s=replay_s + graph_s, graph_replay_gap_s=gap_s)
    return out


def _one_replay_s(torch, graph) -> float:
    """Seconds of one replay between two CUDA events, synchronized."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


def _back_to_back_replay_s(torch, graph, n: int) -> float:
    """Median seconds per replay, each between its own events, n replays queued without a sync
    (as the harness times a decode step)."""
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for start, end in events:
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) / 1e3 for start, end in events)


def _replay_gap(torch, n_bytes: int = 256 << 20) -> float:
    """GPU time a graph replay adds when the host is ahead: a one-kernel graph whose kernel (a
    256 MiB copy, ~0.2 ms) outlasts the host's launch, replayed back to back between events, minus
    that kernel's time inside a graph of many. A short graph instead waits on the host's launch
    (graph_launch_period_s); a decode step pays whichever is longer."""
    src = torch.empty(n_bytes // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        dst.copy_(src)
    torch.cuda.current_stream().wait_stream(stream)
    one, many, n_many = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph(), 20
    with torch.cuda.graph(one):
        dst.copy_(src)
    with torch.cuda.graph(many):
        for _ in range(n_many):
            dst.copy_(src)
    for _ in range(3):
        one.replay()
        many.replay()
    torch.cuda.synchronize()
    inside, per_replay = [], []
    for _ in range(5):
        inside.append(_one_replay_s(torch, many) / n_many)
        per_replay.append(_back_to_back_replay_s(torch, one, 20))
    del src, dst, one, many
    torch.cuda.empty_cache()
    return max(statistics.median(per_replay) - statistics.median(inside), 0.0)


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
    x = _randn(torch, m, k)
    gemvs = rotated_calls(lambda: (lambda w=_randn(torch, n, k, scale=0.02): F.linear(x, w)), 2 * n * k)
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
    import numpy as np

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


def samples_by_family(samples: dict) -> dict:
    """Samples regrouped by the ceilings their ops run at: a layer sample whose op names a kernel
    family (e.g. Mamba-1's state update, filed under its class by calibrations before 2026-11-24)
    fits that family's ceilings, not its class's."""
    grouped: dict[str, list] = {}
    for key, items in samples.items():
        for sample in items:
            family = None
            if "layer" in sample:
                ops = sample_ops(sample)
                family = ops[0].shape.get("family") if ops and ops[0].shape else None
            grouped.setdefault(family or key, []).append(sample)
    return grouped


def fit_calibration(data: dict, log=print) -> dict:
    """Fill `op_classes` of a calibration dict from its `samples` (runs on a CPU too: --refit)."""
    gpu = get_gpu(data["gpu"]) if data["gpu"] in ("h100", "h200", "a100") else None
    if gpu is None:
        raise PerfbenchError(f"no datasheet entry for GPU {data['gpu']!r} to start the fit from")
    data = dict(data)
    data.setdefault("op_classes", {})
    cal = from_dict({**data, "op_classes": {}}, "fit")
    base = ceilings(gpu, cal)
    classes = {}
    for op_class, samples in samples_by_family(data.get("samples", {})).items():
        if op_class == ELEMENTWISE:  # the class models a launch floor and HBM: drop L2-resident sizes
            samples = [s for s in samples if s["bytes"] <= 1 << 20 or s["bytes"] >= 192 << 20]
        if not samples:
            continue
        classes[op_class] = fit_class(op_class, samples, base)
        c = classes[op_class]
        log(f"fit {op_class:18s} n={c['n_samples']:3d} t0={c['t0_s'] * 1e6:6.2f} us "
            f"host={c.get('host_s', float('nan')) * 1e6:5.1f} us "
            f"bw={c['bw_bytes_s'] / 1e12:6.3f} TB/s rate={c['flops_s'] / 1e12:7.1f} TFLOP/s "
            f"median|err|={c['fit_median_abs_err']:.3f} max={c['fit_max_abs_err']:.3f}")
    # The GEMM class's roofline is the fallback for shapes off the measured table: fit it without the table.
    gemm_samples = [{"class": GEMM, **g} for g in data["gemm"]]
    classes[GEMM] = fit_class(GEMM, gemm_samples, replace(base, gemm_table={}))
    data["op_classes"] = classes
    if data.get("writeback", {}).get("samples"):
        data["writeback"] = {**data["writeback"], **fit_writeback(data["writeback"]["samples"])}
        log(f"fit write-back: {data['writeback']['dirty_bytes'] / 1e6:.1f} MB dirty at most, paid at "
            f"{data['writeback']['bw_bytes_s'] / 1e12:.2f} TB/s")
    if data.get("step", {}).get("samples"):
        data["step"] = {**data["step"], **fit_step_overhead(data["step"]["samples"])}
        log(f"fit decode step: {data['step']['base_s'] * 1e6:.2f} us per replay, {data['step']['kernel_s'] * 1e6:.2f} us "
            f"per further kernel, {data['step']['cold_kernel_s'] * 1e6:.2f} us per further cold one")
    return data


def remeasure(data: dict, families: list[str], log=print) -> dict:
    """Re-measure some kernel families of an existing calibration on this GPU, replace their samples
    and refit: one family measured in another machine state (a hot board after the GEMM grid) can be
    redone without a whole calibration. The file records when each family was re-measured."""
    torch = _cuda_torch()
    props = torch.cuda.get_device_properties(0)
    if gpu_key_from_name(props.name) != data.get("gpu"):
        raise PerfbenchError(f"this GPU is {props.name}; the calibration file is for {data.get('gpu')!r}")
    torch.manual_seed(0)
    data = dict(data)
    kernel_families = set(families) & set(KERNEL_FAMILIES)
    if kernel_families:
        kernels = measure_kernels(torch, Timer(torch), log, only=kernel_families)
        if kernels["failures"]:
            raise PerfbenchError(f"re-measuring failed, file left as it was: {kernels['failures']}")
        data["samples"] = {**data.get("samples", {}), **kernels["samples"]}
    measure_section = {"gemm": lambda *a: measure_gemms(*a, mem_budget_bytes=0.5 * props.total_memory),
                       "power": lambda torch, timer, log: measure_power(torch, timer, PowerMeter(), log),
                       "writeback": measure_writeback, "step": measure_step_overhead,
                       "gemm_unaligned": measure_unaligned_gemms, "gemm_relu_input": measure_relu_input_gemms,
                       "sustained": measure_sustained}
    if "host" in families:  # the launch chains: figures in `launch`, windows in `host_samples`
        samples = measure_host_chains(torch, log)
        if not samples:
            raise PerfbenchError("re-measuring host gave nothing on this GPU, file left as it was")
        data = with_host_samples(data, samples)
    for section in SECTIONS:
        if section in families:
            measured = measure_section[section](torch, Timer(torch), log)
            if not measured:  # measure_power without an NVML energy counter
                raise PerfbenchError(f"re-measuring {section} gave nothing on this GPU, file left as it was")
            data[section] = measured
    if "gemm" in families:
        data["gemm_peak_flops"] = gemm_peak(data["gemm"])
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    provenance = dict(data.get("provenance", {}))
    provenance["remeasured"] = {**provenance.get("remeasured", {}),
                                **{f: {"created": when, **{k: str(v) for k, v in _versions(torch).items()}}
                                   for f in families}}
    data["provenance"] = provenance
    return fit_calibration(data, log)


def gemm_peak(gemm: list[dict]) -> float:
    """The fastest rate any GEMM sample reached (FLOP/s)."""
    return max(2 * g["m"] * g["n"] * g["k"] / g["time_s"] for g in gemm)


def _cuda_torch():
    torch = require("torch", "perfbench calibrate")
    if not torch.cuda.is_available():
        raise PerfbenchError("calibrate needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
    return torch


def calibrate(log=print, skip_kernels: bool = False) -> dict:
    """Run every microbenchmark on the current CUDA device; return the calibration dict."""
    torch = _cuda_torch()
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    gpu_key = gpu_key_from_name(props.name)
    timer = Timer(torch)
    started = time.perf_counter()
    copy_bw, copy_curve = measure_copy(torch, timer, log)
    launch = measure_launch(torch, log)
    gemm = measure_gemms(torch, timer, log, mem_budget_bytes=0.5 * props.total_memory)
    gemm_unaligned = measure_unaligned_gemms(torch, timer, log)
    gemm_relu_input = measure_relu_input_gemms(torch, timer, log)
    power = measure_power(torch, timer, PowerMeter(), log)
    writeback = measure_writeback(torch, timer, log)
    step = measure_step_overhead(torch, timer, log)
    sustained = measure_sustained(torch, timer, log)
    kernels = {"samples": {}, "failures": {}} if skip_kernels else measure_kernels(torch, timer, log)
    host_samples = {} if skip_kernels else measure_host_chains(torch, log)
    peak = gemm_peak(gemm)
    env = _versions(torch)
    data = {
        "format": FORMAT, "version": VERSION, "gpu": gpu_key, "gpu_name": props.name,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "provenance": {**{k: str(v) for k, v in env.items()}, "sm_count": props.multi_processor_count,
                       "total_memory_bytes": props.total_memory, "duration_s": time.perf_counter() - started,
                       "kernel_failures": kernels["failures"]},
        "copy_bandwidth_bytes_s": copy_bw, "copy_curve": copy_curve, "gemm_peak_flops": peak,
        "gemm": gemm, "gemm_unaligned": gemm_unaligned, "gemm_relu_input": gemm_relu_input, "launch": {**launch, **host_figures(host_samples)},
        **({"host_samples": host_samples} if host_samples else {}),
        "op_classes": {}, "samples": kernels["samples"], **({"power": power} if power else {}),
        "writeback": writeback, "step": step, "sustained": sustained,
    }
    if torch.cuda.device_count() >= 2:  # tensor parallelism: ring all-reduce bus bandwidth (issue 9)
        from perfbench.distributed import measure_allreduce

        torch.cuda.empty_cache()
        try:
            data["allreduce"] = measure_allreduce(log=log)
        except PerfbenchError as exc:
            log(f"all-reduce benchmark failed, no allreduce entry: {exc}")
    log(f"copy {copy_bw / 1e12:.3f} TB/s, GEMM peak {peak / 1e12:.0f} TFLOP/s, "
        f"{len(gemm)} GEMM shapes, {sum(len(v) for v in kernels['samples'].values())} kernel samples "
        f"in {time.perf_counter() - started:.0f} s")
    return fit_calibration(data, log)


def _versions(torch) -> dict:
    from importlib import metadata

    out = {"torch": torch.__version__, "cuda": torch.version.cuda or ""}
    for dist in ("mamba-ssm", "causal-conv1d", "triton", "flash-attn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = ""
    try:
        import pynvml

        pynvml.nvmlInit()
        out["driver"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # telemetry is best effort
        out["driver"] = ""
    return out

