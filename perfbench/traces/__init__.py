"""Traces: Nsight Systems / torch.profiler kernel breakdowns and Nsight Compute counters per
measured point, as tidy frames (schema.py documents them). `perfbench trace` drives it
(capture.py); nothing here imports torch at import time.

Readers for compare and the dashboard: `load_breakdowns(path)`, `load_comparisons(path)`.
"""

from perfbench.traces.schema import load_breakdowns, load_comparisons, parse_range_name

__all__ = ["load_breakdowns", "load_comparisons", "parse_range_name"]
