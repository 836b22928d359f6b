"""One timing loop for every measured point (the habit of `triton.testing.do_bench`).

- Optional rest first (`rest_s`, the GPU synchronised and idle): a power-limited kernel (a big GEMM,
  FlashAttention's plain decode kernel) runs 10-15 % slower once the board has sat at its power
  limit for a few tenths of a second, so without a rest a point inherits the previous point's state.
- A first call outside the numbers (module load, Triton compilation and autotuning, cuBLAS
  handles), then warm-up calls until `warmup` were made or half the time budget was spent
  (warmup 0: the first call is the only warm-up, and its time sets the repeats; for long points).
- Repeats chosen from the warm-up estimate: enough for `target_s` of timed work, at least
  `min_repeats`, at most `max_repeats`.
- CUDA: one pair of CUDA events around each call, read after one synchronize at the end, so the
  host never stalls the stream between repeats; CPU: `time.perf_counter` around each call.
- Optional L2 flush before each call (a write over twice the L2 size, outside the events).
- Each timed call sits in an NVTX range (`perfbench.measure.nvtx_ranges`), warm-up calls do not.
- Decode steps can be captured into a CUDA graph first (`capture_graph`) and timed as replays.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

from perfbench.measure import nvtx_ranges


@dataclass(frozen=True)
class TimingOptions:
    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 200
    target_s: float = 0.2
    l2_flush: bool = False
    nvtx: bool = True
    rest_s: float = 0.0


@dataclass(frozen=True)
class Timing:
    """Per-call times of one point and their summary (milliseconds)."""

    times_ms: tuple[float, ...]
    first_call_ms: float

    @property
    def n(self) -> int:
        return len(self.times_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.times_ms)

    @property
    def std_ms(self) -> float:
        return statistics.stdev(self.times_ms) if self.n > 1 else 0.0

    @property
    def p10_ms(self) -> float:
        return quantile(self.times_ms, 0.10)

    @property
    def p90_ms(self) -> float:
        return quantile(self.times_ms, 0.90)


def quantile(values, q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def choose_repeats(estimate_s: float, options: TimingOptions) -> int:
    """Enough repeats for target_s of timed work, clamped to [min_repeats, max_repeats]."""
    if estimate_s <= 0:
        return options.max_repeats
    wanted = math.ceil(options.target_s / estimate_s)
    return max(options.min_repeats, min(options.max_repeats, wanted))


class _Clock:
    """Host clock (CPU) or CUDA events (GPU) behind one interface."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        if cuda:
            import torch

            self._torch = torch

    def once_s(self, fn: Callable[[], object]) -> float:
        """Wall time of one synchronized call (used for the first call and estimates)."""
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def sync(self) -> None:
        if self.cuda:
            self._torch.cuda.synchronize()

    def timed(self, fn, repeats: int, flush, range_name: str | None, nvtx: bool) -> list[float]:
        if not self.cuda:
            out = []
            for _ in range(repeats):
                if flush is not None:
                    flush()
                with nvtx_ranges.measured_range(range_name, enabled=nvtx and range_name is not None):
                    start = time.perf_counter()
                    fn()
                    out.append((time.perf_counter() - start) * 1e3)
            return out
        torch = self._torch
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        self.sync()
        for i in range(repeats):
            if flush is not None:
                flush()
            with nvtx_ranges.measured_range(range_name, enabled=nvtx and range_name is not None):
                starts[i].record()
                fn()
                ends[i].record()
        self.sync()
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def measure(fn: Callable[[], object], options: TimingOptions, *, cuda: bool,
            range_name: str | None = None, flush: Callable[[], object] | None = None) -> Timing:
    """Time `fn` as the module docstring says; returns every timed call."""
    clock = _Clock(cuda)
    if options.rest_s > 0:
        clock.sync()
        time.sleep(options.rest_s)
    first_s = clock.once_s(fn)
    spent, estimate_s, done = 0.0, first_s, 0
    while done < options.warmup and (done == 0 or spent < options.target_s / 2):
        estimate_s = clock.once_s(fn)
        spent += estimate_s
        done += 1
    repeats = choose_repeats(estimate_s, options)
    times = clock.timed(fn, repeats, flush if options.l2_flush else None, range_name, options.nvtx)
    return Timing(times_ms=tuple(times), first_call_ms=first_s * 1e3)


def capture_graph(fn: Callable[[], object], warmup: int = 2, capture_error_mode: str = "global"):
    """Capture one call of `fn` into a CUDA graph after `warmup` calls on a side stream.

    Returns (replay, graph); keep the graph alive while replaying. As mamba_ssm's
    `utils/generation.py` captures its decode step. `capture_error_mode` is torch.cuda.graph's.
    """
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode=capture_error_mode):
        fn()
    torch.cuda.synchronize()
    return graph.replay, graph


def l2_flusher(l2_bytes: int):
    """A callable that overwrites 2 x L2 bytes on the GPU, evicting what the last call left there."""
    import torch

    buffer = torch.empty(max(2 * int(l2_bytes), 1 << 20), dtype=torch.uint8, device="cuda")

    def flush() -> None:
        buffer.fill_(1)

    return flush
