"""One prediction pipeline: a layer or model step's time over a (batch, seqlen) grid, stage by stage.

`step_time` applies, in this order, to one GPU's (one tensor-parallel rank's) ops:
  1. kernels          each op alone at its calibrated (or datasheet) speed: `efficiency.op_time`
  2. l2_writeback     a weight-streaming GEMM writes back the state stored before it: `efficiency.l2_writeback`
  3. board_clock      the ops share one power limit and one SM clock (`efficiency.clock_scales`):
                      GEMMs beside memory-bound work run faster than alone (this stage is then
                      negative), FlashAttention's prefill beside GEMMs slower
  4. sustained_clock  a long point heats the board: its power-limited kernels slow with the
                      whole call's length, collectives included (`efficiency.sustained_s`)
  5. collectives      a rank's ring all-reduces and all-gathers (`analytic.collectives`; 0 at tp=1)
  6. step             decode with CUDA graphs: what the graph replay adds, never shorter than the
                      host's replay period (`efficiency.graph_step_s`); prefill and eager decode:
                      the host's launch chain where it outlasts the GPU (`analytic.host_chain`)
The record keeps each stage's contribution per point (they add up to `total_s`) and each op's
seconds in the step (stages 1-4; a collective's ring time), so `analytic.predict`'s time, its
per-op breakdown (the ops plus one step row) and its tensor-parallel views are read off one
computation and agree by construction. For decode, `seqlen` is the context length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytic.calibration import Calibration, resolve
from analytic.collectives import Interconnect, collective_time_s, interconnect
from analytic.composition import rank_ops
from analytic.efficiency import (BOUND_LABELS, clock_scales, ceilings, graph_step_s, l2_writeback, op_time,
                                 power_limited, sustained_s)
from analytic.hardware import get_gpu
from analytic.host_chain import host_seconds
from analytic.ops import Op
from models.registry import BUILTIN_LAYERS, Target, get_layer, get_model
from models.sharding import check_tp
from models.specs import LETTERS, ModelSpec, SpecError

STAGES = ("kernels", "l2_writeback", "board_clock", "sustained_clock", "collectives", "step")
# What holds an op: BOUND_LABELS' codes for the GPU's kernels, one more for a collective.
COMMUNICATION = len(BOUND_LABELS)
OP_BOUNDS = (*BOUND_LABELS, "communication")


@dataclass(frozen=True, eq=False)
class OpTime:
    """One op of the step, all `count` occurrences of it (a model's op list counts each distinct
    layer's ops once per layer of that kind), over the grid."""

    group: str  # layer kind, "block", "embedding" or "head"
    op: Op  # its FLOPs, bytes, kernels and shape facts, per occurrence
    count: int
    bound: np.ndarray  # codes into OP_BOUNDS
    calibrated_s: np.ndarray  # at its calibrated speed alone, with its L2 write-back (stages 1-2)
    seconds: np.ndarray  # in the step: also at the shared and sustained clocks (1-4); a collective's ring time

    @property
    def name(self) -> str:
        """Stable within a step: "<group>/<op>", e.g. "mamba2/in_proj", "head/lm_head"."""
        return f"{self.group}/{self.op.name}"

    @property
    def op_class(self) -> str:
        return self.op.op_class


@dataclass(frozen=True, eq=False)
class StepTime:
    """The pipeline's record of one target, phase and mode over a grid: arrays are per point."""

    target_kind: str  # "layer" | "model"
    name: str
    spec: object  # the whole (unsharded) layer or model spec
    phase: str
    gpu: str
    tp: int
    mode: str  # "graph" (decode replayed as a CUDA graph) | "eager" (kernels launched by the host)
    calibration: Calibration | None  # None: datasheet roofline
    link: Interconnect  # the collectives' figures (used where tp > 1)
    batch: np.ndarray
    seqlen: np.ndarray
    ops: tuple[OpTime, ...]  # the GPU's ops in execution order, then the collectives
    kernels_s: np.ndarray
    writeback_s: np.ndarray
    board_clock_s: np.ndarray
    sustained_clock_s: np.ndarray
    collectives_s: np.ndarray
    step_s: np.ndarray
    gpu_s: np.ndarray  # the GPU's work: stages 1-5
    total_s: np.ndarray  # the prediction: stages 1-6
    host_s: np.ndarray | None  # the host's launch chain (eager mode), else None
    host_bound: np.ndarray  # where the host's chain outlasts the GPU's work

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def stages(self) -> dict[str, np.ndarray]:
        """Each stage's contribution per point, in the order applied (STAGES); they add up to total_s."""
        return dict(zip(STAGES, (self.kernels_s, self.writeback_s, self.board_clock_s, self.sustained_clock_s,
                                 self.collectives_s, self.step_s)))


def resolve_target(target) -> tuple[str, str, object]:
    """('layer'|'model', name, spec) for a layer/model name, a spec object or a registry Target."""
    if isinstance(target, Target):
        return target.kind, target.name, target.spec
    if isinstance(target, ModelSpec):
        return "model", target.name, target
    if isinstance(target, str):
        if target in BUILTIN_LAYERS:
            return "layer", target, get_layer(target)
        return "model", target, get_model(target)
    kind = getattr(target, "kind", None)
    if kind in LETTERS.values():
        return "layer", kind, target
    raise SpecError(f"cannot predict for {target!r}")


def grid(batch, seqlen) -> tuple[np.ndarray, np.ndarray]:
    """The outer product batch x seqlen as two flat float arrays (batch-major)."""
    b = np.atleast_1d(np.asarray(batch, dtype=np.float64))
    L = np.atleast_1d(np.asarray(seqlen, dtype=np.float64))
    if b.size == 0 or L.size == 0:
        raise SpecError("batch and seqlen need at least one value each")
    if (b <= 0).any() or (L <= 0).any():
        raise SpecError("batch and seqlen must be positive")
    bb, LL = np.meshgrid(b, L, indexing="ij")
    return bb.ravel(), LL.ravel()


def step_time(target, phase: str, batch, seqlen, gpu: str = "h100", calibration="default", tp: int = 1,
              graphs: bool = True, allreduce: dict | None = None) -> StepTime:
    """The step's time over the grid batch x seqlen, stage by stage (module docstring).

    `calibration`: 'default' (bundled), 'none' (datasheet), a path or a Calibration. `graphs`:
    decode replayed as a CUDA graph (prefill is always launched eagerly). `allreduce`
    ({bus_bw_bytes_s, latency_s}) overrides the calibration's interconnect figures."""
    kind, name, spec = resolve_target(target)
    tp = check_tp(tp)
    gpu_spec = get_gpu(gpu)
    cal = resolve(calibration, gpu)
    ceil = ceilings(gpu_spec, cal)
    link = interconnect(gpu_spec, cal, allreduce)
    b, L = grid(batch, seqlen)
    compute, comm = rank_ops(kind, spec, phase, b, L, tp)
    eager = phase == "prefill" or not graphs

    # 1-2. each op alone, then with the L2 write-back of the state stored before it
    alone = [op_time(c.op, ceil) for c in compute]
    times = l2_writeback(compute, alone, ceil)
    calibrated = [t * c.count for c, (t, _code) in zip(compute, times)]
    kernels_s = sum(t * c.count for c, (t, _code) in zip(compute, alone)) + np.zeros(b.size)
    after_writeback = sum(calibrated) + np.zeros(b.size)
    # 3. the shared board clock
    scales = clock_scales(compute, times, ceil)
    in_step = [t * c.count * s for c, (t, _code), s in zip(compute, times, scales)]
    clocked = sum(in_step)
    # 5 (before 4: a long call heats the board for its collectives' time too). Ring collectives.
    comm_op_s = [collective_time_s(c.op, tp, link) * c.count for c in comm]
    collectives_s = sum(comm_op_s) + np.zeros(b.size)
    # 4. the sustained clock: power-limited kernels slow with the call's length
    sustained, _slowdown = sustained_s(clocked, compute, times, ceil, call_s=clocked + collectives_s)
    in_step = _slowed_ops(compute, times, in_step, sustained - clocked, ceil)
    gpu_s = sustained + collectives_s
    # 6. the step: a CUDA graph's replay, or the host's launch chain where it outlasts the GPU
    if eager:
        host_s = host_seconds(kind, spec, phase, compute, ceil)
        host_s = host_s + sum(c.op.kernels * c.count * ceil.eager_kernel_s for c in comm) + np.zeros(b.size)
        host_bound = host_s > gpu_s
        total_s = np.maximum(gpu_s, host_s)
    else:
        host_s, host_bound = None, np.zeros(b.shape, dtype=bool)
        total_s = graph_step_s(gpu_s, compute + comm, ceil)

    ops = tuple(OpTime(c.group, c.op, c.count, code, cal_s, s)
                for c, (_t, code), cal_s, s in zip(compute, times, calibrated, in_step))
    ops += tuple(OpTime(c.group, c.op, c.count, np.full(b.shape, COMMUNICATION, dtype=np.int8),
                        np.broadcast_to(s, b.shape), np.broadcast_to(s, b.shape))
                 for c, s in zip(comm, comm_op_s))
    return StepTime(
        target_kind=kind, name=name, spec=spec, phase=phase, gpu=gpu, tp=tp, mode="eager" if eager else "graph",
        calibration=cal, link=link, batch=b, seqlen=L, ops=ops,
        kernels_s=kernels_s, writeback_s=after_writeback - kernels_s, board_clock_s=clocked - after_writeback,
        sustained_clock_s=sustained - clocked, collectives_s=collectives_s, step_s=total_s - gpu_s,
        gpu_s=gpu_s, total_s=total_s, host_s=host_s, host_bound=host_bound)


def _slowed_ops(compute, times, in_step: list, extra_s: np.ndarray, ceil) -> list:
    """Each op's seconds once the sustained clock's `extra_s` is shared out among the power-limited
    ops in proportion to their time in the step (the ops `efficiency.sustained_s` slows)."""
    if not np.any(extra_s):
        return in_step
    limited = [power_limited(c.op, code, ceil) for c, (_t, code) in zip(compute, times)]
    limited_s = sum(np.where(on, s, 0.0) for on, s in zip(limited, in_step))
    factor = 1.0 + extra_s / np.where(limited_s > 0, limited_s, 1.0)
    return [np.where(on, s * factor, s) for on, s in zip(limited, in_step)]
