"""Documented schemas of the trace frames, and the NVTX range names they are keyed by.

Every trace or counter export becomes one of these tidy frames before anything else reads it
(the HolisticTraceAnalysis habit): `compare`, the dashboard and the tests see only these columns.

Kernel breakdown (`traces/<trace_id>/breakdown.parquet`, and `breakdown-<trace_id>.parquet` in the
`--store` directory when one is given), one row per (NVTX range, kernel name):

  trace_id str        the `perfbench trace` run that captured it
  source str          "nsys" | "torch_profiler"
  device str          "cuda" (GPU kernels) | "cpu" (torch.profiler CPU ops, where no GPU ran)
  results_run_id str  run_id of the `perfbench run` results measured under the trace ("" if none)
  nvtx_range str      e.g. "mamba2/decode/B=64/L=4096" (perfbench.measure.nvtx_ranges naming)
  name, phase str; batch, seqlen int   parsed from nvtx_range
  kernel str          short kernel name (nsys `shortName`; templates and arguments stripped)
  kernel_full str     demangled name as the tool reports it
  op_class str        analytic op class the kernel counts toward (perfbench.traces.kernels)
  count int           launches inside all instances of the range
  steps int           timed steps those instances cover (repeats of one forward / decode step)
  count_per_step float, gpu_time_ms float (total), gpu_time_ms_per_step float, mean_us float
  share float         the kernel's fraction of the range's kernel time (sums to 1 per range)
  range_instances int times the range was entered; range_ms float: their summed CPU wall time

Nsight Compute counters per launch (`ncu_kernels.parquet`) and the comparison with the analytic
model per op class (`ncu_vs_model.parquet`): see NCU_KERNEL_COLUMNS and COMPARISON_COLUMNS below
and perfbench/traces/ncu.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from perfbench.errors import PerfbenchError, file_errors
from perfbench.measure.nvtx_ranges import DOMAIN, range_name  # the harness's spelling, one source

# `<name>/<phase>/B=<batch>/L=<seqlen>`, the harness's range names (contracts: NVTX).
_RANGE = re.compile(r"^(?P<name>[^/]+)/(?P<phase>prefill|decode)/B=(?P<batch>\d+)/L=(?P<seqlen>\d+)$")

BREAKDOWN_COLUMNS = {
    "trace_id": "string", "source": "string", "device": "string", "results_run_id": "string",
    "nvtx_range": "string", "name": "string", "phase": "string", "batch": "int64", "seqlen": "int64",
    "kernel": "string", "kernel_full": "string", "op_class": "string",
    "count": "int64", "steps": "int64", "count_per_step": "float64",
    "gpu_time_ms": "float64", "gpu_time_ms_per_step": "float64", "mean_us": "float64",
    "share": "float64", "range_instances": "int64", "range_ms": "float64",
}

NCU_KERNEL_COLUMNS = {
    "trace_id": "string", "nvtx_range": "string", "name": "string", "phase": "string",
    "batch": "int64", "seqlen": "int64", "launch": "int64", "step": "int64",
    "kernel": "string", "kernel_full": "string", "op_class": "string",
    "dram_read_bytes": "float64", "dram_write_bytes": "float64", "dram_bytes": "float64",
    "flops_fp32": "float64", "flops_fp16": "float64", "flops_tensor": "float64", "flops": "float64",
    "duration_ns": "float64",
}

COMPARISON_COLUMNS = {
    "trace_id": "string", "nvtx_range": "string", "name": "string", "phase": "string",
    "batch": "int64", "seqlen": "int64", "op_class": "string", "ops": "string", "kernels": "string",
    "predicted_flops": "float64", "counted_flops": "float64", "flops_ratio": "float64",
    "predicted_bytes": "float64", "counted_bytes": "float64", "bytes_ratio": "float64",
    "mismatch": "bool", "note": "string",
}


__all__ = ["DOMAIN", "range_name", "parse_range_name", "load_breakdowns", "load_comparisons"]


def parse_range_name(text: str) -> dict | None:
    """'mamba2/decode/B=64/L=4096' -> {name, phase, batch, seqlen}; None for any other range
    (the inverse of perfbench.measure.nvtx_ranges.range_name)."""
    match = _RANGE.match(str(text).strip())
    if not match:
        return None
    fields = match.groupdict()
    return {"name": fields["name"], "phase": fields["phase"], "batch": int(fields["batch"]),
            "seqlen": int(fields["seqlen"])}


def empty(columns: dict) -> pd.DataFrame:
    return conform(pd.DataFrame({column: [] for column in columns}), columns)


def conform(frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """Exactly `columns`, in order, with their dtypes (missing text -> "", counts -> 0, flags ->
    False, measurements -> NaN)."""
    fill = {"string": "", "bool": False, "int64": 0, "float64": float("nan")}
    out = pd.DataFrame(index=frame.index)
    for column, dtype in columns.items():
        values = frame[column] if column in frame else pd.Series(fill[dtype], index=frame.index)
        if dtype != "float64":
            values = values.astype(object).where(values.notna(), fill[dtype])
        if dtype == "string":
            values = values.astype(str)
        out[column] = values.astype(dtype)
    return out.reset_index(drop=True)


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    with file_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
    return path


def load_frames(path: Path, pattern: str, columns: dict) -> pd.DataFrame:
    """All `pattern` Parquet files under `path` (recursively), conformed; empty frame if none."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob(pattern)) if path.is_dir() else []
    frames = []
    for file in files:
        try:
            frames.append(conform(pd.read_parquet(file), columns))
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise PerfbenchError(f"{file}: not a readable breakdown file ({type(exc).__name__})") from None
    if not frames:
        return empty(columns)
    frame = pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates().reset_index(drop=True)  # a store copy beside its original


def load_breakdowns(path: Path = Path("traces")) -> pd.DataFrame:
    """Every kernel breakdown under `path` (breakdown*.parquet), for `compare` and the dashboard."""
    return load_frames(path, "breakdown*.parquet", BREAKDOWN_COLUMNS)


def load_comparisons(path: Path = Path("traces")) -> pd.DataFrame:
    """Every "predicted vs counted" table under `path` (ncu_vs_model*.parquet)."""
    return load_frames(path, "ncu_vs_model*.parquet", COMPARISON_COLUMNS)
