"""Nsight Compute: per-kernel DRAM bytes and FLOPs inside a point's NVTX range, and how they
compare with the analytic model's bytes and FLOPs for the same point ("predicted vs counted").

Metrics (the one list; Nsight Compute metric names valid on sm_90 / H100):
  gpu__time_duration.sum                            kernel time (ns)
  dram__bytes_read.sum, dram__bytes_write.sum       HBM traffic (bytes)
  smsp__sass_thread_inst_executed_op_{fadd,fmul,ffma}_pred_on.sum   FP32 FLOPs = add + mul + 2 fma
  smsp__sass_thread_inst_executed_op_{hadd,hmul,hfma}_pred_on.sum   FP16/BF16 FLOPs, same weights
  sm__ops_path_tensor_src_bf16_dst_fp32.sum         tensor-core FLOPs, bf16 inputs, fp32 accumulate
      (counts operations, 2 per multiply-add: a 1024^3 bf16 matmul reads 2 * 1024^3)
The per-thread SASS counters are the ones Nsight Compute's own roofline sections weigh this way.
Collected with `--cache-control all` (ncu's default: caches flushed before each replayed kernel,
so every input comes from DRAM, as the model assumes) and `--clock-control none` (the clocks the
timed runs saw). Exported with `ncu --import R.ncu-rep --csv --page raw --print-units base`.

Range filter: the point names contain '/', which ncu's NVTX filter reads as range nesting, so a
child profiles one point at a time and the filter is the whole domain (`regex:perfbench@.+/`,
trailing '/' = push/pop range); `--launch-count` caps the launches profiled, and the per-step
values come from whole repeats of the launch sequence (perfbench.traces.kernels.whole_steps).
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analytic.predict import breakdown as predicted_breakdown
from perfbench.errors import PerfbenchError
from perfbench.traces.kernels import classify_kernel, short_kernel_name, whole_steps
from perfbench.traces.schema import (COMPARISON_COLUMNS, DOMAIN, NCU_KERNEL_COLUMNS, conform, empty,
                                     parse_range_name)

DURATION = "gpu__time_duration.sum"
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"
FP32_FLOPS = {"smsp__sass_thread_inst_executed_op_fadd_pred_on.sum": 1,
              "smsp__sass_thread_inst_executed_op_fmul_pred_on.sum": 1,
              "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum": 2}
FP16_FLOPS = {"smsp__sass_thread_inst_executed_op_hadd_pred_on.sum": 1,
              "smsp__sass_thread_inst_executed_op_hmul_pred_on.sum": 1,
              "smsp__sass_thread_inst_executed_op_hfma_pred_on.sum": 2}
TENSOR_FLOPS = "sm__ops_path_tensor_src_bf16_dst_fp32.sum"
METRICS = (DURATION, DRAM_READ, DRAM_WRITE, *FP32_FLOPS, *FP16_FLOPS, TENSOR_FLOPS)

TOLERANCE = 0.20  # counted vs predicted beyond +-20 % is a mismatch
NEGLIGIBLE = 0.01  # ... unless both sides are under 1 % of the point's total

NVTX_FILTER = f"regex:{DOMAIN}@.+/"
DEFAULT_LAUNCH_COUNT = 200

_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_TIME = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}


def ncu_profile_command(ncu: str, report_base: Path, child: list[str], metrics=METRICS,
                        launch_count: int | None = DEFAULT_LAUNCH_COUNT) -> list[str]:
    """`ncu ... -o <report_base> <child>`: writes <report_base>.ncu-rep."""
    command = [ncu, "--nvtx", "--nvtx-include", NVTX_FILTER, "--clock-control", "none",
               "--metrics", ",".join(metrics), "--force-overwrite", "--export", str(report_base)]
    if launch_count:
        command += ["--launch-count", str(int(launch_count))]
    return command + list(child)


def ncu_export_command(ncu: str, report: Path) -> list[str]:
    """`ncu --import R.ncu-rep --csv --page raw --print-units base` (CSV on stdout)."""
    return [ncu, "--import", str(report), "--csv", "--page", "raw", "--print-units", "base"]


# --------------------------------------------------------------------------- CSV

def _number(text: str, unit: str) -> float:
    text = str(text).strip().strip('"')
    if text in ("", "n/a", "N/A", "nan"):
        return float("nan")
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return float("nan")
    unit = (unit or "").strip()
    if unit in _TIME:
        return value * _TIME[unit]
    match = re.match(r"^([KMGT]?)(byte|inst|B)?", unit)
    prefix = match.group(1) if match and match.group(2) else ""
    return value * _SCALE.get(prefix, 1.0)


def _csv_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise PerfbenchError("ncu CSV: no header row (\"ID\",...); did ncu profile any kernel?")
    return list(csv.reader(io.StringIO("\n".join(lines[start:]))))


def parse_ncu_csv(source) -> pd.DataFrame:
    """One row per profiled launch: launch id, kernel_full and one column per metric (base units).

    Reads both `--page raw` (one row per launch, metric columns, a units row under the header)
    and the long form of `--page details` (one row per metric: Metric Name / Unit / Value).
    """
    text = Path(source).read_text(errors="replace") if isinstance(source, Path) else str(source)
    rows = _csv_rows(text)
    header, body = rows[0], [r for r in rows[1:] if any(cell.strip() for cell in r)]
    col = {name: i for i, name in enumerate(header)}
    if "Kernel Name" not in col:
        raise PerfbenchError("ncu CSV: no 'Kernel Name' column")
    records: dict[int, dict] = {}
    if "Metric Name" in col:  # long form
        for r in body:
            launch = int(r[col["ID"]])
            record = records.setdefault(launch, {"launch": launch, "kernel_full": r[col["Kernel Name"]]})
            record[r[col["Metric Name"]]] = _number(r[col["Metric Value"]], r[col.get("Metric Unit", -1)]
                                                    if "Metric Unit" in col else "")
    else:  # raw page: metric columns, first body row may carry the units
        units = [""] * len(header)
        if body and not body[0][col["ID"]].strip():
            units, body = body[0], body[1:]
        metric_columns = [name for name in header if "__" in name]
        for r in body:
            launch = int(r[col["ID"]])
            record = {"launch": launch, "kernel_full": r[col["Kernel Name"]]}
            for name in metric_columns:
                record[name] = _number(r[col[name]], units[col[name]])
            records[launch] = record
    frame = pd.DataFrame(sorted(records.values(), key=lambda rec: rec["launch"]))
    for metric in METRICS:
        if metric not in frame:
            frame[metric] = np.nan
    return frame


def counted(launches: pd.DataFrame, nvtx_range: str, trace_id: str = "") -> pd.DataFrame:
    """Per-launch bytes and FLOPs of one point, with the step each launch belongs to (-1: the
    launches after the last whole step of the window)."""
    fields = parse_range_name(nvtx_range)
    if fields is None:
        raise PerfbenchError(f"not a point range name: {nvtx_range!r}")
    if launches.empty:
        return empty(NCU_KERNEL_COLUMNS)
    frame = launches.sort_values("launch").reset_index(drop=True)
    frame["kernel"] = frame["kernel_full"].map(short_kernel_name)
    period, steps = whole_steps(frame["kernel"].tolist())
    index = np.arange(len(frame))
    frame["step"] = np.where(index < period * steps, index // max(period, 1), -1)

    def total(weights: dict) -> pd.Series:
        return sum(frame[m].fillna(0.0) * w for m, w in weights.items())

    frame["dram_read_bytes"] = frame[DRAM_READ]
    frame["dram_write_bytes"] = frame[DRAM_WRITE]
    frame["dram_bytes"] = frame[DRAM_READ].fillna(0.0) + frame[DRAM_WRITE].fillna(0.0)
    frame["flops_fp32"] = total(FP32_FLOPS)
    frame["flops_fp16"] = total(FP16_FLOPS)
    frame["flops_tensor"] = frame[TENSOR_FLOPS].fillna(0.0)
    frame["flops"] = frame["flops_fp32"] + frame["flops_fp16"] + frame["flops_tensor"]
    frame["duration_ns"] = frame[DURATION]
    frame["op_class"] = frame["kernel"].map(lambda k: classify_kernel(k, fields["phase"]))
    frame = frame.assign(trace_id=trace_id, nvtx_range=nvtx_range, **fields)
    return conform(frame, NCU_KERNEL_COLUMNS)


def one_step(kernels: pd.DataFrame) -> pd.DataFrame:
    """The launches of one step in order, each counter averaged over the whole steps captured."""
    whole = kernels[kernels["step"] >= 0]
    if whole.empty:
        return whole.assign(position=[])
    n_steps = int(whole["step"].max()) + 1
    whole = whole.assign(position=whole.groupby("step").cumcount())
    numeric = ["dram_bytes", "flops", "flops_tensor", "duration_ns"]
    step = whole.groupby("position").agg(kernel=("kernel", "first"), op_class=("op_class", "first"),
                                         **{c: (c, "sum") for c in numeric}).reset_index()
    step[numeric] = step[numeric] / n_steps
    return step


# --------------------------------------------------------------------------- comparison

def _ratio(counted_value: float, predicted_value: float) -> float:
    if predicted_value > 0:
        return counted_value / predicted_value
    return float("inf") if counted_value > 0 else float("nan")


def _off(counted_value: float, predicted_value: float, total: float) -> bool:
    if max(counted_value, predicted_value) < NEGLIGIBLE * max(total, 1.0):
        return False
    ratio = _ratio(counted_value, predicted_value)
    return not (math.isfinite(ratio) and abs(ratio - 1.0) <= TOLERANCE)


def _groups(ops: pd.DataFrame, launches: pd.DataFrame) -> list[tuple[list[str], pd.DataFrame]]:
    """Pair a class's model ops with its launches, in execution order, where the counts allow it
    (each op's kernel count when the breakdown gives one, else one kernel per op); else one group."""
    sizes = None
    for column in ("kernels", "n_kernels"):
        if column in ops and ops[column].notna().all():
            sizes = [int(v) for v in ops[column]]
    if sizes is None or sum(sizes) != len(launches):
        sizes = [1] * len(ops)
    if len(ops) > 1 and sum(sizes) == len(launches):
        out, start = [], 0
        for op, size in zip(ops["op"], sizes):
            out.append(([str(op)], launches.iloc[start:start + size]))
            start += size
        return out
    return [([str(op) for op in ops["op"]], launches)]


def compare_point(kernels: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """Counted (one step of `kernels`, one point) vs the model's per-operation `predicted`
    (analytic.predict.breakdown: op, op_class, flops, bytes, ...), per operation where the launches
    pair with the ops, per op class otherwise, plus a "total" row; `mismatch` rows name kernels."""
    if kernels.empty:
        return empty(COMPARISON_COLUMNS)
    first = kernels.iloc[0]
    step = one_step(kernels)
    total_flops = max(float(predicted["flops"].sum()), float(step["flops"].sum()) if len(step) else 0.0)
    total_bytes = max(float(predicted["bytes"].sum()), float(step["dram_bytes"].sum()) if len(step) else 0.0)
    classes = list(dict.fromkeys([*predicted["op_class"], *step.get("op_class", [])]))
    rows = []
    for op_class in classes:
        ops = predicted[predicted["op_class"] == op_class]
        launches = step[step["op_class"] == op_class] if len(step) else step
        for names, group in _groups(ops, launches):
            chosen = ops[ops["op"].astype(str).isin(names)]
            rows.append(_row(op_class, names, group, float(chosen["flops"].sum()),
                             float(chosen["bytes"].sum()), total_flops, total_bytes))
    rows.append(_row("total", ["all"], step, float(predicted["flops"].sum()), float(predicted["bytes"].sum()),
                     total_flops, total_bytes))
    frame = pd.DataFrame(rows).assign(trace_id=first["trace_id"], nvtx_range=first["nvtx_range"],
                                      name=first["name"], phase=first["phase"], batch=first["batch"],
                                      seqlen=first["seqlen"])
    return conform(frame, COMPARISON_COLUMNS)


def _row(op_class, names, launches, predicted_flops, predicted_bytes, total_flops, total_bytes) -> dict:
    counted_flops = float(launches["flops"].sum()) if len(launches) else 0.0
    counted_bytes = float(launches["dram_bytes"].sum()) if len(launches) else 0.0
    kernels = list(dict.fromkeys(launches["kernel"])) if len(launches) else []
    flops_off = _off(counted_flops, predicted_flops, total_flops)
    bytes_off = _off(counted_bytes, predicted_bytes, total_bytes)
    notes = []
    if (bytes_off or flops_off) and op_class != "total":
        what = [w for w, off in (("bytes", bytes_off), ("FLOPs", flops_off)) if off]
        if not kernels:
            notes.append(f"{'/'.join(names)}: no kernel counted for this {op_class} work")
        elif predicted_flops == 0 and predicted_bytes == 0:
            notes.append(f"{', '.join(kernels)}: not in the model")
        else:
            ratios = {"bytes": _ratio(counted_bytes, predicted_bytes),
                      "FLOPs": _ratio(counted_flops, predicted_flops)}
            detail = ", ".join(f"{w} x{ratios[w]:.2f}" for w in what)
            notes.append(f"{'/'.join(names)} ({detail} of predicted): {', '.join(kernels)}")
    return {"op_class": op_class, "ops": ",".join(names), "kernels": ",".join(kernels),
            "predicted_flops": predicted_flops, "counted_flops": counted_flops,
            "flops_ratio": _ratio(counted_flops, predicted_flops),
            "predicted_bytes": predicted_bytes, "counted_bytes": counted_bytes,
            "bytes_ratio": _ratio(counted_bytes, predicted_bytes),
            "mismatch": bool(bytes_off or flops_off), "note": "; ".join(notes)}


Breakdown = Callable[..., pd.DataFrame]


def analytic_breakdown(target, phase: str, batch: int, seqlen: int, gpu: str) -> pd.DataFrame:
    """analytic.predict.breakdown for one point of a target name or registry Target."""
    return predicted_breakdown(target, phase, int(batch), int(seqlen), gpu, "none")


def compare_with_model(kernels: pd.DataFrame, gpu: str = "h100",
                       breakdown: Breakdown | None = None) -> pd.DataFrame:
    """`compare_point` for every point in `kernels` against `breakdown(name, phase, B, L, gpu)`."""
    breakdown = breakdown or analytic_breakdown
    frames = []
    for rng, group in kernels.groupby("nvtx_range", sort=False):
        row = group.iloc[0]
        predicted = breakdown(row["name"], row["phase"], int(row["batch"]), int(row["seqlen"]), gpu)
        frames.append(compare_point(group, predicted))
    return pd.concat(frames, ignore_index=True) if frames else empty(COMPARISON_COLUMNS)
