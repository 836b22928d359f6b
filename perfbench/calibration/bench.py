"""The calibration's shared timing core: every microbenchmark times its kernels through these.

`Timer` times a callable as CUDA-graph replays of many launches (the way a decode step runs) or eagerly;
`Timer.point` the way `perfbench run` times a decode point; `time_power_limited` after a rest and a
stretch at the board's power limit (compute-bound GEMMs, FlashAttention's prefill); `rotation` spreads
a kernel over copies of its inputs so each call finds them out of L2, as in a layer. `PowerMeter`
reads the board's energy counter, clocks and power limit through NVML.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

from analytic.hardware import get_gpu, gpu_key_from_name
from models.specs import SpecError
from perfbench.errors import PerfbenchError, require
from perfbench.measure.timing import TimingOptions, capture_graph, measure

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


def randn(torch, *shape, dtype=None, device="cuda", scale=1.0):
    dtype = dtype or torch.bfloat16
    return (torch.randn(*shape, device=device, dtype=torch.float32) * scale).to(dtype)


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


def cuda_torch():
    torch = require("torch", "perfbench calibrate")
    if not torch.cuda.is_available():
        raise PerfbenchError("calibrate needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
    return torch


def versions(torch) -> dict:
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



def timed_seconds(call_s: float, protocol: str = "timer") -> float:
    """Wall seconds one sample of a kernel taking `call_s` costs under a protocol ("timer": Timer's
    warm-up and three trials; "power_limited": a rest and CAP_S at the limit first; "point": Timer.point's
    rested windows), for the calibration's time estimate."""
    reps = min(200.0, max(1.0 if call_s > TARGET_TIMED_S else 3.0, TARGET_TIMED_S / max(call_s, 1e-7)))
    timer_s = max(WARM_S, 4 * call_s) + call_s + 3 * reps * call_s + 0.05  # a call sizes reps; capture, inputs
    if protocol == "point":
        return POINT_WINDOWS * (POINT_REST_S + max(POINT_TIMING.target_s, POINT_TIMING.min_repeats * call_s)) + 0.05
    if protocol == "power_limited":
        return POINT_REST_S + CAP_S + timer_s
    return timer_s
