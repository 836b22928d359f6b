"""Predictions as tidy rows, all read off `analytic.pipeline.step_time`'s record.

`predict`: one row per (batch, seqlen) point: time, FLOPs, bytes, bound, tokens/s and memory.
`breakdown`: one row per op of one point, plus one "step" row for what the CUDA graph or the
host's launch chain adds, so the rows add up to `predict`'s time. `predict_tp`, `breakdown_tp`
and `tp_scaling`: the same for one rank of a tensor-parallel group (per GPU), with the collectives.
The grid is vectorised: each quantity is one numpy array over the outer product batch x seqlen,
and each distinct layer type's op list is evaluated once per call. For decode, `seqlen` is the
context length (the caches hold that many tokens before the new one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analytic.calibration import Calibration, resolve
from analytic.efficiency import BOUND_LABELS
from analytic.hardware import get_gpu
from analytic.memory import fits_in_memory, footprint_bytes, max_batch
from analytic.ops import COLLECTIVE_CLASSES, NEW_MIXER_FAMILIES
from analytic.pipeline import OP_BOUNDS, StepTime, resolve_target, step_time
from analytic.provenance import labels
from analytic.uncertainty import record_interval, record_terms, shares, step_term, term_bounds
from models.specs import SpecError

COLUMNS = ["target_kind", "name", "phase", "batch", "seqlen", "gpu", "calibrated", "mode", "tp",
           "time_ms", "time_lo_ms", "time_hi_ms", "provenance", "flops", "bytes", "bound", "intensity", "n_kernels", "tokens_per_s",
           "memory_bytes", "fits"]
TP_COLUMNS = ["allreduce_ms", "allreduce_share"]  # added where tp > 1 (always by predict_tp)
SCALING_COLUMNS = ["name", "phase", "batch", "seqlen", "gpu", "tp", "time_ms", "allreduce_ms",
                   "allreduce_share", "speedup", "memory_per_gpu_bytes", "max_batch", "tokens_per_s",
                   "reason"]
POINT_BOUNDS = (*BOUND_LABELS, "host")
STEP_GROUP = "step"
SHARE_PREFIX = "share:"  # predict(..., with_shares=True): one column per term class, its share of time_ms


def predict(target, phase: str, batch: Sequence[int], seqlen: Sequence[int], gpu: str = "h100",
            calibration="default", tp: int = 1, graphs: bool = True, allreduce: dict | None = None,
            with_shares: bool = False) -> pd.DataFrame:
    """One row per (batch, seqlen) point; see COLUMNS (and TP_COLUMNS where tp > 1).
    `calibration`: 'default', 'none', path or object. Per GPU where tp > 1 (`predict_tp`).

    time_lo_ms / time_hi_ms: the interval the measured time should fall in ~80 % of the time, and
    provenance: calibrated / interpolated / extrapolated / datasheet (analytic/uncertainty.py,
    analytic/provenance.py). `with_shares`: also each term class's share of time_ms (SHARE_PREFIX
    columns, what perfbench/calibration/uncertainty.py attributes residuals by)."""
    record = step_time(target, phase, batch, seqlen, gpu, calibration, tp, graphs, allreduce)
    frame = _points(record, with_collectives=record.tp > 1)
    if with_shares:
        for key, share in shares(record_terms(record)).items():
            frame[SHARE_PREFIX + key] = np.broadcast_to(share, frame.shape[:1])
    return frame


def predict_tp(target, phase: str, batch: Sequence[int], seqlen: Sequence[int], gpu: str = "h100",
               calibration="default", tp: int = 2, graphs: bool = True, allreduce: dict | None = None
               ) -> pd.DataFrame:
    """`predict`'s rows for one rank of a `tp`-way sharded layer or model, with allreduce_ms (all
    collectives of the step) and allreduce_share (of time_ms) at every degree. flops, bytes,
    n_kernels and memory_bytes are per GPU; tokens_per_s is the group's throughput. `allreduce`
    ({bus_bw_bytes_s, latency_s}) overrides the calibration's interconnect figures."""
    return _points(step_time(target, phase, batch, seqlen, gpu, calibration, tp, graphs, allreduce),
                   with_collectives=True)


def _points(record: StepTime, with_collectives: bool) -> pd.DataFrame:
    b, L, time_s = record.batch, record.seqlen, record.total_s
    flops = sum(o.op.flops * o.count for o in record.ops)
    bytes_ = sum(o.op.bytes_ * o.count for o in record.ops)
    n_kernels = sum(o.op.kernels * o.count for o in record.ops)
    memory = footprint_bytes(record.target_kind, record.spec, record.phase, b, L, record.tp)
    tokens = b * L if record.phase == "prefill" else b
    lo_s, hi_s, provenance = record_interval(record)
    columns = {
        "target_kind": record.target_kind, "name": record.name, "phase": record.phase, "batch": b.astype(int),
        "seqlen": L.astype(int), "gpu": record.gpu, "calibrated": record.calibrated, "mode": record.mode,
        "tp": record.tp, "time_ms": time_s * 1e3, "time_lo_ms": lo_s * 1e3, "time_hi_ms": hi_s * 1e3,
        "provenance": labels(provenance), "flops": flops, "bytes": bytes_,
        "bound": point_bound(record), "intensity": flops / bytes_,
        "n_kernels": np.broadcast_to(n_kernels, b.shape).astype(int), "tokens_per_s": tokens / time_s,
        "memory_bytes": memory, "fits": fits_in_memory(memory, get_gpu(record.gpu)),
    }
    if with_collectives:
        columns.update(allreduce_ms=record.collectives_s * 1e3, allreduce_share=record.collectives_s / time_s)
    frame = pd.DataFrame(columns, columns=COLUMNS + (TP_COLUMNS if with_collectives else []))
    frame["bound"] = frame["bound"].astype(str)
    return frame


def point_bound(record: StepTime) -> pd.Categorical:
    """What limits each point: the bound holding most of its kernels' calibrated time (compute,
    memory, launch), or "host" where the host's launch chain outlasts the GPU's work (small eager
    points, whose time is the Python path's, not the kernels')."""
    by_bound = np.zeros((len(BOUND_LABELS), record.batch.size))
    for o in record.ops:
        if o.op_class not in COLLECTIVE_CLASSES:
            for label in range(len(BOUND_LABELS)):
                by_bound[label] += np.where(o.bound == label, o.calibrated_s, 0.0)
    codes = np.where(record.host_bound, len(BOUND_LABELS), np.argmax(by_bound, axis=0))
    return pd.Categorical.from_codes(codes, categories=list(POINT_BOUNDS))


def breakdown(target, phase: str, batch: int, seqlen: int, gpu: str = "h100", calibration="default",
              graphs: bool | None = None, tp: int = 1, allreduce: dict | None = None) -> pd.DataFrame:
    """Per-operation rows for one point: group, op, op_class, count, kernels, flops, bytes, time_ms,
    bound, share (and, where tp > 1, tp and message_bytes: `breakdown_tp`).

    `graphs` None: the GPU's ops alone (what a kernel trace shows). True / False: also one "step"
    row for what `predict` adds on top of them, so the rows add up to its time: what a decode step's
    CUDA graph adds (True), or the host's launch chain where it outlasts the GPU (False; prefill)."""
    record = step_time(target, phase, [batch], [seqlen], gpu, calibration, tp,
                       True if graphs is None else graphs, allreduce)
    return _op_rows(record, with_step=graphs is not None, with_collectives=record.tp > 1)


def breakdown_tp(target, phase: str, batch: int, seqlen: int, gpu: str = "h100", calibration="default",
                 tp: int = 2, allreduce: dict | None = None, graphs: bool | None = None) -> pd.DataFrame:
    """One rank's per-operation rows for one point, collectives included (tp and message_bytes columns)."""
    record = step_time(target, phase, [batch], [seqlen], gpu, calibration, tp,
                       True if graphs is None else graphs, allreduce)
    return _op_rows(record, with_step=graphs is not None, with_collectives=True)


def _op_rows(record: StepTime, with_step: bool, with_collectives: bool) -> pd.DataFrame:
    """The record's first point as one row per op, and one step row where it adds time."""
    tp_columns = {"tp": record.tp} if with_collectives else {}
    rows = []
    for o in record.ops:
        message = o.op.shape.get("message_bytes") if o.op.shape else None
        rows.append({"name": record.name, **tp_columns, "group": o.group, "op": o.op.name, "op_class": o.op_class,
                     "count": o.count, "kernels": int(np.asarray(o.op.kernels).ravel()[0]) * o.count,
                     "flops": float(o.op.flops[0]) * o.count, "bytes": float(o.op.bytes_[0]) * o.count,
                     **({"message_bytes": 0.0 if message is None else float(message[0]) * o.count}
                        if with_collectives else {}),
                     "time_ms": float(o.seconds[0]) * 1e3, "bound": OP_BOUNDS[int(o.bound[0])]})
    step_s = float(record.step_s[0])
    if with_step and step_s > 0:
        op, bound = (("CUDA-graph step overhead", "launch") if record.mode == "graph"
                     else ("host launch chain beyond the GPU", "host"))  # "host": predict's point_bound
        rows.append({"name": record.name, **tp_columns, "group": STEP_GROUP, "op": op, "op_class": "host",
                     "count": 1, "kernels": 0, "flops": 0.0, "bytes": 0.0,
                     **({"message_bytes": 0.0} if with_collectives else {}), "time_ms": step_s * 1e3, "bound": bound})
    frame = pd.DataFrame(rows)
    frame["share"] = frame["time_ms"] / frame["time_ms"].sum()
    terms = record_terms(record)[:len(record.ops)] + ([step_term(record)] if len(rows) > len(record.ops) else [])
    _with_op_intervals(frame, terms, record.calibration)
    return frame


def _with_op_intervals(frame: pd.DataFrame, terms: list, cal) -> None:
    """Each breakdown row's own interval and provenance: its term class's quantiles widened by its
    provenance (analytic.uncertainty.term_bounds), about its time (the record's first point)."""
    bounds = [term_bounds(term, cal) for term in terms]
    lo = np.array([float(np.ravel(lo)[0]) for lo, _hi in bounds])
    hi = np.array([float(np.ravel(hi)[0]) for _lo, hi in bounds])
    frame["time_lo_ms"] = frame["time_ms"] * np.exp(np.minimum(lo, 0.0))
    frame["time_hi_ms"] = frame["time_ms"] * np.exp(np.maximum(hi, 0.0))
    frame["provenance"] = labels([int(np.ravel(term.provenance)[0]) for term in terms])


def tp_scaling(target, phase: str, batch: int, seqlen: int, gpu: str = "h100", tps=(1, 2, 4, 8),
               calibration="default", graphs: bool = True, allreduce: dict | None = None) -> pd.DataFrame:
    """Tidy rows (one per TP degree) for TP-scaling plots: time, communication, memory, capacity.

    A degree that cannot shard the target (heads/groups/vocabulary not divisible) gives a row with
    NaN numbers and the one-line reason, so a plot can show where the split stops. speedup is
    time at the smallest valid degree in `tps` (tp=1 when listed) over time at this degree.
    max_batch (model targets) is the largest decode/prefill batch that fits each GPU at `seqlen`.
    """
    kind, name, spec = resolve_target(target)
    rows = []
    for tp in tps:
        row = {"name": name, "phase": phase, "batch": int(batch), "seqlen": int(seqlen), "gpu": gpu,
               "tp": int(tp)}
        try:
            point = predict_tp(target, phase, [batch], [seqlen], gpu, calibration, tp, graphs, allreduce).iloc[0]
        except SpecError as exc:
            rows.append({**row, "time_ms": np.nan, "allreduce_ms": np.nan, "allreduce_share": np.nan,
                         "memory_per_gpu_bytes": np.nan, "max_batch": pd.NA, "tokens_per_s": np.nan,
                         "reason": str(exc)})
            continue
        capacity = max_batch(spec, int(seqlen), get_gpu(gpu), phase, tp) if kind == "model" else pd.NA
        rows.append({**row, "time_ms": point["time_ms"], "allreduce_ms": point["allreduce_ms"],
                     "allreduce_share": point["allreduce_share"], "memory_per_gpu_bytes": point["memory_bytes"],
                     "max_batch": capacity, "tokens_per_s": point["tokens_per_s"], "reason": ""})
    frame = pd.DataFrame(rows)
    valid = frame["time_ms"].notna()
    base = frame.loc[valid, "time_ms"].iloc[0] if valid.any() else np.nan
    frame["speedup"] = base / frame["time_ms"]
    frame["max_batch"] = frame["max_batch"].astype("Int64")
    return frame[SCALING_COLUMNS]


def describe_calibration(gpu: str, calibration="default") -> str:
    cal: Calibration | None = resolve(calibration, gpu)
    if cal is None:
        return f"datasheet roofline ({get_gpu(gpu).name})"
    fallback = uncalibrated_families(cal)
    note = f"; {', '.join(fallback)} uncalibrated: their class's ceilings" if fallback else ""
    return f"calibrated ({cal.source or 'in memory'}, {cal.gpu_name}, {cal.created}){note}"


def uncalibrated_families(cal: Calibration | None) -> list[str]:
    """The newer mixers' kernel families a calibration has not measured: their ops run at their op
    class's ceilings (the SSD or state-update roofline), as a datasheet prediction runs every op."""
    measured = cal.op_classes if cal is not None else {}
    return [family for family in NEW_MIXER_FAMILIES if family not in measured]
