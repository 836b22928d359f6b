"""Parse a torch.profiler Chrome trace (the `--torch-profiler` fallback) into the kernel breakdown.

The child process wraps every harness range in `torch.profiler.record_function(<NVTX name>)`
(perfbench/traces/child.py), so the trace carries the same range names as an nsys capture.
Chrome trace events used (Kineto's export; opens in Perfetto / chrome://tracing):
  ph "X", cat "user_annotation"           the record_function ranges (CPU thread, ts/dur in us)
  ph "X", cat "kernel"                    GPU kernels, args.correlation
  ph "X", cat "cuda_runtime"/"cuda_driver" launch calls (cudaLaunchKernel, cuLaunchKernel,
                                          cudaGraphLaunch), args.correlation, on the CPU thread
  ph "X", cat "cpu_op"                    aten ops; with no GPU kernels in the trace (a CPU run),
                                          the outermost ops inside a range stand in for kernels
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd

from perfbench.errors import PerfbenchError
from perfbench.traces.breakdown import build_breakdown

LAUNCH_CATEGORIES = ("cuda_runtime", "cuda_driver")


def load_chrome_trace(path: Path) -> list[dict]:
    """The trace's events (a `{"traceEvents": [...]}` object or a bare list; .gz accepted)."""
    path = Path(path)
    if not path.is_file():
        raise PerfbenchError(f"torch profiler trace not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PerfbenchError(f"{path}: not a Chrome trace JSON ({type(exc).__name__})") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise PerfbenchError(f"{path}: no traceEvents list")
    return events


def _ns(value) -> int:
    return int(round(float(value) * 1000.0))  # Chrome trace times are microseconds


def trace_tables(events: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(ranges, kernels, device) in the shape perfbench.traces.breakdown expects."""
    threads: dict[tuple, int] = {}

    def thread(event: dict) -> int:
        return threads.setdefault((event.get("pid"), event.get("tid")), len(threads) + 1)

    complete = [e for e in events if e.get("ph") == "X" and "ts" in e]
    ranges = pd.DataFrame(
        [{"tid": thread(e), "start_ns": _ns(e["ts"]), "end_ns": _ns(e["ts"]) + _ns(e.get("dur", 0)),
          "text": e.get("name", "")} for e in complete if e.get("cat") == "user_annotation"],
        columns=["tid", "start_ns", "end_ns", "text"])
    launches = {}
    for e in complete:
        corr = (e.get("args") or {}).get("correlation")
        if e.get("cat") in LAUNCH_CATEGORIES and corr is not None:
            launches.setdefault(corr, (thread(e), _ns(e["ts"])))
    rows = []
    for e in complete:
        if e.get("cat") != "kernel":
            continue
        tid, launch = launches.get((e.get("args") or {}).get("correlation"), (None, _ns(e["ts"])))
        rows.append({"tid": tid, "launch_ns": launch, "start_ns": _ns(e["ts"]),
                     "end_ns": _ns(e["ts"]) + _ns(e.get("dur", 0)), "kernel_full": e.get("name", "")})
    device = "cuda"
    if not rows:  # a CPU run: outermost aten ops play the kernels
        device = "cpu"
        rows = _top_cpu_ops([e for e in complete if e.get("cat") == "cpu_op"], thread)
    kernels = pd.DataFrame(rows, columns=["tid", "launch_ns", "start_ns", "end_ns", "kernel_full"])
    kernels["tid"] = pd.array(kernels["tid"], dtype="Int64")
    return ranges, kernels, device


def _top_cpu_ops(ops: list[dict], thread) -> list[dict]:
    """cpu_op events not nested in another cpu_op (aten::linear, not its addmm and copies).

    The outermost ops are the operations the model counts, and nothing is counted twice.
    """
    spans = sorted(((thread(e), _ns(e["ts"]), _ns(e["ts"]) + _ns(e.get("dur", 0)), e.get("name", ""))
                    for e in ops), key=lambda s: (s[0], s[1], -s[2]))
    rows, open_tid, open_end = [], None, -1
    for tid, start, end, name in spans:
        if tid == open_tid and start < open_end:
            continue  # inside the current outermost op
        open_tid, open_end = tid, end
        rows.append({"tid": tid, "launch_ns": start, "start_ns": start, "end_ns": end, "kernel_full": name})
    return rows


def parse_torch_trace(path: Path, *, trace_id: str = "", results_run_id: str = "") -> pd.DataFrame:
    """The kernel breakdown of every perfbench point range in a torch.profiler Chrome trace."""
    ranges, kernels, device = trace_tables(load_chrome_trace(path))
    return build_breakdown(ranges, kernels, source="torch_profiler", trace_id=trace_id, device=device,
                           results_run_id=results_run_id)


def range_names(path: Path) -> list[str]:
    ranges, _, _ = trace_tables(load_chrome_trace(path))
    return sorted(set(ranges["text"].astype(str)))
