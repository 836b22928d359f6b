"""Time of a tensor-parallel step's collectives: ring algorithms over the GPUs' interconnect.

nccl-tests' bus-bandwidth definitions (https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md):
    all-reduce  t = latency + 2(N-1)/N * bytes / bus_bw
    all-gather  t = latency + (N-1)/N * bytes_out / bus_bw
with bus_bw and latency from the calibration's `allreduce` entry when present (fitted by
`fit_allreduce` to `perfbench calibrate`'s all-reduce samples), else the GPU's NVLink figure
(`GPUSpec.nvlink_bw_bytes_s`, `allreduce_latency_s`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytic.calibration import Calibration
from analytic.hardware import GPUSpec
from analytic.ops import ALLGATHER, ALLREDUCE, Op
from models.sharding import check_tp
from models.specs import SpecError

# Bus-bandwidth factor of each ring collective (nccl-tests PERFORMANCE.md).
RING_FACTOR = {ALLREDUCE: lambda n: 2.0 * (n - 1) / n, ALLGATHER: lambda n: (n - 1) / n}


@dataclass(frozen=True)
class Interconnect:
    """Ring bus bandwidth and per-call latency of the collectives, and where they came from."""

    bus_bw_bytes_s: float
    latency_s: float
    source: str  # "calibration" | "given" | "datasheet"


def interconnect(gpu: GPUSpec, calibration: Calibration | None, allreduce: dict | None = None) -> Interconnect:
    """Collective figures: `allreduce` (a calibration-style dict, for what-ifs and fresh
    measurements) over the calibration's `allreduce` entry over the GPU's datasheet NVLink."""
    if allreduce and "bus_bw_bytes_s" in allreduce:
        measured, source = allreduce, "given"
    else:
        measured = (calibration.allreduce or {}) if calibration is not None else {}
        source = "calibration"
    if "bus_bw_bytes_s" in measured:
        return Interconnect(float(measured["bus_bw_bytes_s"]),
                            float(measured.get("latency_s", gpu.allreduce_latency_s)), source)
    return Interconnect(gpu.nvlink_bw_bytes_s, gpu.allreduce_latency_s, "datasheet")


def collective_time_s(op: Op, tp: int, link: Interconnect) -> np.ndarray:
    """Ring all-reduce / all-gather time for `op` among `tp` ranks (0 for one rank)."""
    if tp == 1:
        return 0.0 * op.shape["message_bytes"]
    factor = RING_FACTOR[op.op_class](tp)
    return op.kernels * link.latency_s + factor * op.shape["message_bytes"] / link.bus_bw_bytes_s


def fit_allreduce(samples: Sequence[dict], n_gpus: int) -> dict:
    """{bus_bw_bytes_s, latency_s, n_gpus} from all-reduce samples [{bytes, time_s}, ...].

    Least squares of time = latency + 2(N-1)/N * bytes / bus_bw, each sample weighted by 1/time
    (relative error), so the small decode-sized messages fix the latency and the large ones the
    bandwidth. Samples timed between GEMVs (mode "between": what a decode step pays per call, less
    than back to back) then set the latency alone, as their median time less the bandwidth term;
    `latency_back_to_back_s` keeps the other. Used by `perfbench calibrate` through
    `perfbench.tp.distributed.measure_allreduce`.
    """
    n = check_tp(n_gpus)
    if n < 2:
        raise SpecError("an all-reduce fit needs at least 2 GPUs")
    between = [(float(s["bytes"]), float(s["time_s"])) for s in samples if s.get("mode") == "between"]
    fit = _fit_back_to_back([s for s in samples if s.get("mode") != "between"], n)
    if between:
        ring = RING_FACTOR[ALLREDUCE](n)
        paid = float(np.median([t - ring * b / fit["bus_bw_bytes_s"] for b, t in between]))
        fit = {**fit, "latency_back_to_back_s": fit["latency_s"], "latency_s": max(paid, 0.0)}
    return fit


def _fit_back_to_back(samples: Sequence[dict], n: int) -> dict:
    pts = [(float(s["bytes"]), float(s["time_s"])) for s in samples if float(s["time_s"]) > 0]
    if len(pts) < 2:
        raise SpecError("an all-reduce fit needs at least 2 samples")
    x = np.array([p[0] for p in pts]) * RING_FACTOR[ALLREDUCE](n)
    t = np.array([p[1] for p in pts])
    w = 1.0 / t
    design = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (latency, inv_bw), *_ = np.linalg.lstsq(design, t * w, rcond=None)
    if inv_bw <= 0:  # all messages latency-bound: take the best bus bandwidth seen
        inv_bw = 1.0 / float(np.max(x / t))
    latency = max(float(latency), 0.0)
    return {"bus_bw_bytes_s": float(1.0 / inv_bw), "latency_s": latency, "n_gpus": n}
