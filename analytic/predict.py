"""Predictions as tidy rows: time, FLOPs, bytes, bound, tokens/s and memory per (batch, seqlen).

`predict` is vectorised: the grid (outer product of batch and seqlen) is one numpy array per
quantity, and each distinct layer type's op list is evaluated once per call. For decode, `seqlen`
is the context length (the caches hold that many tokens before the new one).

Timing modes: decode with CUDA graphs (default) is the sum of its kernels' times. Prefill, and
decode with --eager, launch each kernel from the host, and take whichever is longer, the host's
launch chain or the GPU's work (the host runs ahead until the GPU starves).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analytic.calibration import Calibration, resolve
from analytic.composition import ADD_NORM_CHAIN, CountedOp, model_ops
from analytic.costs import PHASES, layer_ops
from analytic.efficiency import (BOUND_LABELS, Ceilings, ceilings, clock_scales, graph_step_s, host_time,
                                 power_limited, scaled_seconds, step_op_times, sustained_s)
from analytic.hardware import get_gpu
from analytic.memory import memory_footprint
from analytic.ops import ADD_NORM
from analytic.provenance import labels, layer_specs, op_provenance
from analytic.uncertainty import EAGER, HOST, STEP, Term, host_provenance, point_interval, point_terms, shares, term_bounds, term_key
from models.registry import BUILTIN_LAYERS, BUILTIN_MODELS, PAPER_MODELS, Target, get_layer, get_model
from models.specs import ModelSpec, SpecError

COLUMNS = ["target_kind", "name", "phase", "batch", "seqlen", "gpu", "calibrated", "mode", "tp",
           "time_ms", "time_lo_ms", "time_hi_ms", "provenance", "flops", "bytes", "bound", "intensity", "n_kernels", "tokens_per_s",
           "memory_bytes", "fits"]


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
    if kind in ("mamba", "mamba2", "attention", "mlp"):
        return "layer", kind, target
    raise SpecError(f"cannot predict for {target!r}")


def _grid(batch, seqlen) -> tuple[np.ndarray, np.ndarray]:
    b = np.atleast_1d(np.asarray(batch, dtype=np.float64))
    L = np.atleast_1d(np.asarray(seqlen, dtype=np.float64))
    if b.size == 0 or L.size == 0:
        raise SpecError("batch and seqlen need at least one value each")
    if (b <= 0).any() or (L <= 0).any():
        raise SpecError("batch and seqlen must be positive")
    bb, LL = np.meshgrid(b, L, indexing="ij")
    return bb.ravel(), LL.ravel()


def counted_ops(kind: str, spec, phase: str, b: np.ndarray, L: np.ndarray) -> list[CountedOp]:
    if phase not in PHASES:
        raise SpecError(f"unknown phase {phase!r} (prefill, decode)")
    if kind == "model":
        return model_ops(spec, phase, b, L)
    return [CountedOp(spec.kind, op, 1) for op in layer_ops(spec, phase, b, L)]


def host_key(layer_spec) -> str:
    """Which calibrated host path a layer takes: its kind; attention with RoPE runs more ops."""
    if layer_spec.kind == "attention" and layer_spec.rotary_fraction > 0:
        return "attention-mha"
    return layer_spec.kind


def host_path(model: ModelSpec) -> tuple:
    """What a model's host launch chain depends on: which layer paths run, in which order (not the
    tensors' sizes): the context-length variants and a re-sized model share the paper model's."""
    return model.pattern, tuple(host_key(layer) for layer in model.layers)


def host_seconds(kind: str, spec, phase: str, ops: list[CountedOp], ceil: Ceilings) -> float:
    """Host launch chain of an eager step: each layer's calibrated Python path where measured
    (`perfbench calibrate` times each layer's host chain alone), else per-kernel launch costs.

    A layer timed alone (CUDA events around the call) shows only the host work between its first
    and last kernel; inside a model every layer's whole chain (wall clock) falls between the
    model's first and last kernel. So layers use the first figure and models the second. A built-in
    model timed whole in the calibration (and any model on its Python path, `host_path`) takes that
    chain, as a point is timed: its pieces' chains add up to only 0.7-0.9 of it.
    """
    layers = [spec] if kind == "layer" else list(spec.layers)
    primary, other = ((ceil.layer_host_s, ceil.layer_host_wall_s) if kind == "layer"
                      else (ceil.layer_host_wall_s, ceil.layer_host_s))
    if kind == "model":  # a model with a calibrated whole chain on the same Python path takes it
        path = host_path(spec)
        for name in PAPER_MODELS:
            whole = ceil.layer_host_s.get(f"{name}/{phase}", ceil.layer_host_wall_s.get(f"{name}/{phase}"))
            if whole is not None and host_path(BUILTIN_MODELS[name]) == path:
                return whole
    measured = {}
    for layer in layers:
        key = f"{host_key(layer)}/{phase}"
        value = primary.get(key, other.get(key))
        if value is not None:
            measured[layer.kind] = measured.get(layer.kind, 0.0) + value
    # A model's fused add + norm (before each block and at the end): its own calibrated chain.
    norm_key = f"{ADD_NORM_CHAIN}/{phase}"
    add_norm_s = primary.get(norm_key, other.get(norm_key))
    is_norm = [add_norm_s is not None and c.op.shape.get("family") == ADD_NORM for c in ops]
    norms = sum(c.count for c, norm in zip(ops, is_norm) if norm) * (add_norm_s or 0.0)
    # Ops a layer's calibrated chain does not run (q/k norms of a Qwen3-style attention) add their launches.
    unmeasured = sum(host_time(c.op, ceil) * c.count for c, norm in zip(ops, is_norm)
                     if (c.group not in measured or (c.op.shape or {}).get("beyond_host_chain")) and not norm)
    return sum(measured.values()) + norms + unmeasured


def _layer_memory(spec, phase: str, b: np.ndarray, L: np.ndarray) -> np.ndarray:
    model = ModelSpec(name="_", d_model=spec.d_model, vocab_size=1, pattern=spec.letter,
                      **{spec.kind: spec})
    mem = memory_footprint(model, b, L, phase=phase)
    return mem["total_bytes"] - model.embedding_params * 2 * 2 - b * 4  # no embedding/head/logits


SHARE_PREFIX = "share:"  # predict(..., with_shares=True): one column per term class, its share of time_ms


def predict(target, phase: str, batch: Sequence[int], seqlen: Sequence[int], gpu: str = "h100",
            calibration="default", tp: int = 1, graphs: bool = True, with_shares: bool = False) -> pd.DataFrame:
    """One row per (batch, seqlen) point; see COLUMNS. `calibration`: 'default', 'none', path or object.

    time_lo_ms / time_hi_ms: the interval the measured time should fall in ~80 % of the time, and
    provenance: calibrated / interpolated / extrapolated / datasheet (analytic/uncertainty.py,
    analytic/provenance.py). `with_shares`: also each term class's share of time_ms (SHARE_PREFIX)."""
    kind, name, spec = resolve_target(target)
    if tp != 1:
        from analytic.tp import predict_tp  # tensor parallelism (issue 9)

        return predict_tp(target, phase, batch, seqlen, gpu, calibration, tp, graphs)
    gpu_spec = get_gpu(gpu)
    cal = resolve(calibration, gpu)
    ceil = ceilings(gpu_spec, cal)
    b, L = _grid(batch, seqlen)
    ops = counted_ops(kind, spec, phase, b, L)
    times = step_op_times(ops, ceil)
    scales = clock_scales(ops, times, ceil)  # power-limited kernels share the board's clock
    time_s = scaled_seconds(ops, times, scales)
    time_s, _slowdown = sustained_s(time_s, ops, times, ceil)  # a long point heats the board
    flops = sum(c.op.flops * c.count for c in ops)
    bytes_ = sum(c.op.bytes_ * c.count for c in ops)
    n_kernels = sum(c.op.kernels * c.count for c in ops)
    host_bound = np.zeros(b.shape, dtype=bool)
    if phase == "prefill" or not graphs:  # launched eagerly: the host may be the bottleneck
        host_s = host_seconds(kind, spec, phase, ops, ceil)
        host_bound = host_s > time_s
        time_s = np.maximum(time_s, host_s)
    else:  # one CUDA-graph replay per decode step; a short graph waits on the host launching it
        time_s = graph_step_s(time_s, ops, ceil)
    by_bound = np.zeros((len(BOUND_LABELS), b.size))
    for (t, code), c in zip(times, ops):
        for label in range(len(BOUND_LABELS)):
            by_bound[label] += np.where(code == label, t * c.count, 0.0)
    bound = point_bound(by_bound, host_bound)
    if kind == "model":
        memory = memory_footprint(spec, b, L, phase=phase)["total_bytes"]
    else:
        memory = _layer_memory(spec, phase, b, L)
    tokens = b * L if phase == "prefill" else b
    terms = prediction_terms(kind, spec, phase, ops, times, scales, cal, time_s, graphs, host_bound)
    lo_s, hi_s, provenance = point_interval(terms, time_s, cal)
    frame = pd.DataFrame({
        "target_kind": kind, "name": name, "phase": phase, "batch": b.astype(int),
        "seqlen": L.astype(int), "gpu": gpu, "calibrated": cal is not None,
        "mode": ("graph" if graphs else "eager") if phase == "decode" else "eager", "tp": 1,
        "time_ms": time_s * 1e3, "time_lo_ms": lo_s * 1e3, "time_hi_ms": hi_s * 1e3,
        "provenance": labels(provenance), "flops": flops, "bytes": bytes_, "bound": bound,
        "intensity": flops / bytes_, "n_kernels": np.broadcast_to(n_kernels, b.shape).astype(int),
        "tokens_per_s": tokens / time_s, "memory_bytes": memory,
        "fits": fits_in_memory(memory, gpu_spec),
    }, columns=COLUMNS)
    frame["bound"] = frame["bound"].astype(str)
    if with_shares:
        for key, share in shares(terms).items():
            frame[SHARE_PREFIX + key] = np.broadcast_to(share, b.shape)
    return frame


def prediction_terms(kind: str, spec, phase: str, ops: list[CountedOp], times: list, scales: list, cal, time_s,
                     graphs: bool, host_bound, extra: list[Term] = ()) -> list[Term]:
    """The point's terms for its interval (analytic.uncertainty.point_terms): each op's seconds in the
    step at the shared clock, with its class and provenance, `extra` terms (a rank's collectives), and
    what the step or host adds."""
    specs = layer_specs(kind, spec)
    keys = [term_key(c.op.op_class, phase) for c in ops] + [t.key for t in extra]
    seconds = [t * c.count * scale for c, (t, _code), scale in zip(ops, times, scales)] + [t.seconds for t in extra]
    codes = [op_provenance(c.op, specs.get(c.group), cal) for c in ops] + [t.provenance for t in extra]
    return point_terms(keys, seconds, codes, time_s, phase, graphs, host_bound, step_provenance(kind, spec, phase, graphs, cal))


def step_provenance(kind: str, spec, phase: str, graphs: bool, cal) -> int:
    """What a decode graph's step or the host chain rests on: calibrated where the calibration timed it
    (the decode-step chains; a layer's host chain, or a model on a paper model's Python path), else
    interpolated (summed from its layers' chains)."""
    measured = (bool(cal and cal.step) if phase == "decode" and graphs
                else kind == "layer" or any(host_path(BUILTIN_MODELS[n]) == host_path(spec) for n in PAPER_MODELS))
    return host_provenance(cal, measured)


POINT_BOUNDS = (*BOUND_LABELS, "host")


def point_bound(by_bound: np.ndarray, host_bound: np.ndarray) -> pd.Categorical:
    """What limits each point: the bound holding most of its GPU time (compute, memory, launch), or
    "host" where the host's launch chain outlasts the GPU's work (small eager points, whose time is
    the Python path's, not the kernels')."""
    codes = np.where(np.asarray(host_bound, dtype=bool).ravel(), len(BOUND_LABELS), np.argmax(by_bound, axis=0))
    return pd.Categorical.from_codes(codes, categories=list(POINT_BOUNDS))


def fits_in_memory(memory_bytes, gpu_spec) -> np.ndarray:
    """Whether a point's footprint fits one GPU (with the allocator's headroom): a time is still
    predicted for points that do not, so a user sees both."""
    from analytic.memory import ALLOCATOR_HEADROOM

    return np.asarray(memory_bytes) <= gpu_spec.mem_bytes * ALLOCATOR_HEADROOM


def breakdown(target, phase: str, batch: int, seqlen: int, gpu: str = "h100",
              calibration="default", graphs: bool | None = None) -> pd.DataFrame:
    """Per-operation rows for one point: group, op, op_class, count, flops, bytes, time_ms, bound.

    `graphs` None: the GPU's ops alone (what a kernel trace shows). True / False: also one "step"
    row for what `predict` adds on top of them, so the rows add up to its time: what a decode step's
    CUDA graph adds (True), or the host's launch chain where it outlasts the GPU (False; prefill)."""
    kind, name, spec = resolve_target(target)
    cal = resolve(calibration, gpu)
    ceil = ceilings(get_gpu(gpu), cal)
    b, L = _grid([batch], [seqlen])
    ops = counted_ops(kind, spec, phase, b, L)
    times = step_op_times(ops, ceil)
    # Power-limited kernels share the board's power and clock with the rest (efficiency.clock_scales).
    scales = clock_scales(ops, times, ceil)
    total = scaled_seconds(ops, times, scales)
    slowed, _slowdown = sustained_s(total, ops, times, ceil)
    rows, limited, terms = [], [], []
    specs = layer_specs(kind, spec)
    for c, (t, bound), scale in zip(ops, times, scales):
        limited.append(bool(power_limited(c.op, bound, ceil)[0]))
        terms.append(Term(term_key(c.op.op_class, phase), np.zeros(1), op_provenance(c.op, specs.get(c.group), cal)))
        rows.append({"name": name, "group": c.group, "op": c.op.name, "op_class": c.op.op_class,
                     "count": c.count, "kernels": c.op.kernels * c.count,
                     "flops": float(c.op.flops[0]) * c.count, "bytes": float(c.op.bytes_[0]) * c.count,
                     "time_ms": float(t[0] * np.ravel(scale)[0]) * c.count * 1e3, "bound": BOUND_LABELS[int(bound[0])]})
    # A long point's power-limited ops run slower (efficiency.sustained_s): they carry the difference.
    limited_ms = sum(row["time_ms"] for row, on in zip(rows, limited) if on)
    if limited_ms > 0:
        scale = 1.0 + (float(slowed[0] - total[0]) * 1e3) / limited_ms
        for row, on in zip(rows, limited):
            row["time_ms"] *= scale if on else 1.0
    if graphs is not None:
        gpu_s = sum(row["time_ms"] for row in rows) / 1e3
        if phase == "decode" and graphs:
            op, extra_s, bound = ("CUDA-graph step overhead",
                                  float(graph_step_s(np.array([gpu_s]), ops, ceil)[0]) - gpu_s, "launch")
        else:  # the point's bound is "host" when this row is there (predict's point_bound)
            op, extra_s, bound = ("host launch chain beyond the GPU",
                                  host_seconds(kind, spec, phase, ops, ceil) - gpu_s, "host")
        if extra_s > 0:
            rows.append({"name": name, "group": "step", "op": op, "op_class": "host", "count": 1, "kernels": 0,
                         "flops": 0.0, "bytes": 0.0, "time_ms": extra_s * 1e3, "bound": bound})
            terms.append(step_term(kind, spec, phase, graphs, cal, host_bound=bound == "host"))
    frame = pd.DataFrame(rows)
    _with_op_intervals(frame, terms, cal)
    frame["share"] = frame["time_ms"] / frame["time_ms"].sum()
    return frame


def _with_op_intervals(frame: pd.DataFrame, terms: list[Term], cal) -> None:
    """Each breakdown row's own interval and provenance: its term class's quantiles widened by its
    provenance (analytic.uncertainty.term_bounds), about its time."""
    bounds = [term_bounds(term, cal) for term in terms]
    frame["time_lo_ms"] = frame["time_ms"] * np.exp(np.minimum([float(np.ravel(lo)[0]) for lo, _hi in bounds], 0.0))
    frame["time_hi_ms"] = frame["time_ms"] * np.exp(np.maximum([float(np.ravel(hi)[0]) for _lo, hi in bounds], 0.0))
    frame["provenance"] = labels([int(np.ravel(term.provenance)[0]) for term in terms])


def step_term(kind: str, spec, phase: str, graphs: bool, cal, host_bound: bool) -> Term:
    """The breakdown's step row as a term: a decode graph's overhead, or the host chain beyond the GPU
    (its own class, host/<phase>, as a host-bound point's in predict)."""
    term = STEP if phase == "decode" and graphs else (EAGER if phase == "decode" else HOST)
    return Term(term_key(term, phase), np.zeros(1), np.array([step_provenance(kind, spec, phase, graphs, cal)]))


def describe_calibration(gpu: str, calibration="default") -> str:
    cal: Calibration | None = resolve(calibration, gpu)
    if cal is None:
        return f"datasheet roofline ({get_gpu(gpu).name})"
    return f"calibrated ({cal.source or 'in memory'}, {cal.gpu_name}, {cal.created})"
