"""Kernels inside NVTX ranges -> the per-point kernel breakdown (schema: perfbench.traces.schema).

Both trace sources reduce to the same two tables before this runs:
  ranges:  tid, start_ns, end_ns, text            (NVTX / record_function ranges, CPU clock)
  kernels: tid, launch_ns, start_ns, end_ns, kernel_full[, kernel]
A kernel belongs to the range that was open on its launching thread when it was launched (its
launch call's CPU time, found through the correlation id), as Nsight Systems projects NVTX ranges
onto the GPU: GPU execution is asynchronous, so the kernel's own start may fall after the range
closed. A kernel with no known launch thread (tid NaN) is matched on time alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfbench.traces.kernels import classify_kernel, short_kernel_name, steps_in
from perfbench.traces.schema import BREAKDOWN_COLUMNS, conform, empty, parse_range_name


def point_ranges(ranges: pd.DataFrame) -> pd.DataFrame:
    """The ranges named like measured points, one row per instance, with the parsed fields."""
    rows = []
    for row in ranges.itertuples(index=False):
        fields = parse_range_name(row.text)
        if fields is None or pd.isna(row.end_ns):
            continue
        rows.append({"tid": row.tid, "start_ns": int(row.start_ns), "end_ns": int(row.end_ns),
                     "nvtx_range": str(row.text).strip(), **fields})
    frame = pd.DataFrame(rows, columns=["tid", "start_ns", "end_ns", "nvtx_range", "name", "phase",
                                        "batch", "seqlen"])
    frame = frame.sort_values("start_ns", kind="stable").reset_index(drop=True)
    frame["instance"] = np.arange(len(frame))
    return frame


def assign_instances(points: pd.DataFrame, kernels: pd.DataFrame) -> np.ndarray:
    """For each kernel, the instance of the innermost point range open at its launch (-1: none)."""
    launch = kernels["launch_ns"].to_numpy(dtype=np.float64)
    tids = pd.array(kernels["tid"], dtype="Int64")  # thread ids exceed float precision
    tid_known = ~np.asarray(tids.isna())
    tid = np.asarray(tids.fillna(-1), dtype=np.int64)
    owner = np.full(len(kernels), -1, dtype=np.int64)
    for row in points.itertuples(index=False):  # by start: a later (inner) range overwrites
        inside = (launch >= row.start_ns) & (launch <= row.end_ns)
        if not pd.isna(row.tid):
            inside &= ~tid_known | (tid == int(row.tid))
        owner[inside] = row.instance
    return owner


def build_breakdown(ranges: pd.DataFrame, kernels: pd.DataFrame, *, source: str, trace_id: str = "",
                    device: str = "cuda", results_run_id: str = "") -> pd.DataFrame:
    """One row per (point range, kernel name): counts, GPU time, per-step values and share."""
    points = point_ranges(ranges)
    if points.empty or kernels.empty:
        return empty(BREAKDOWN_COLUMNS)
    kernels = kernels.copy()
    if "kernel" not in kernels:
        kernels["kernel"] = kernels["kernel_full"].map(short_kernel_name)
    kernels["instance"] = assign_instances(points, kernels)
    kernels = kernels[kernels["instance"] >= 0].sort_values("start_ns", kind="stable")
    if kernels.empty:
        return empty(BREAKDOWN_COLUMNS)
    kernels["dur_ns"] = (kernels["end_ns"] - kernels["start_ns"]).clip(lower=0)
    kernels = kernels.merge(points[["instance", "nvtx_range"]], on="instance")

    steps = {rng: 0 for rng in points["nvtx_range"]}
    for (instance, rng), group in kernels.groupby(["instance", "nvtx_range"], sort=False):
        steps[rng] += steps_in(group["kernel"].tolist())
    per_range = points.assign(wall_ns=points["end_ns"] - points["start_ns"]).groupby("nvtx_range").agg(
        range_instances=("instance", "size"), range_ns=("wall_ns", "sum"))

    rows = []
    for (rng, kernel), group in kernels.groupby(["nvtx_range", "kernel"], sort=False):
        fields = parse_range_name(rng)
        time_ns = float(group["dur_ns"].sum())
        count = len(group)
        n_steps = max(steps[rng], 1)
        rows.append({
            "nvtx_range": rng, **fields, "kernel": kernel,
            "kernel_full": group["kernel_full"].mode().iloc[0],
            "op_class": classify_kernel(kernel, fields["phase"]),
            "count": count, "steps": n_steps, "count_per_step": count / n_steps,
            "gpu_time_ms": time_ns / 1e6, "gpu_time_ms_per_step": time_ns / 1e6 / n_steps,
            "mean_us": time_ns / 1e3 / count,
            "range_instances": int(per_range.loc[rng, "range_instances"]),
            "range_ms": float(per_range.loc[rng, "range_ns"]) / 1e6,
        })
    frame = pd.DataFrame(rows)
    totals = frame.groupby("nvtx_range")["gpu_time_ms"].transform("sum")
    frame["share"] = np.where(totals > 0, frame["gpu_time_ms"] / totals.where(totals > 0, 1.0), 0.0)
    frame = frame.assign(trace_id=trace_id, source=source, device=device, results_run_id=results_run_id)
    frame = frame.sort_values(["nvtx_range", "gpu_time_ms"], ascending=[True, False], kind="stable")
    return conform(frame, BREAKDOWN_COLUMNS)
