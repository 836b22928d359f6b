"""Tensor parallelism: one rank's share of a layer or model step, plus the collectives it waits on.

Megatron-style sharding (Shoeybi et al., arXiv 1909.08053, §3), without sequence parallelism:
- attention: the QKV projection is column-parallel over heads (n_heads/N query heads and
  n_kv_heads/N KV heads per rank, so each rank's KV cache is 1/N), the output projection is
  row-parallel; its partial sums are all-reduced.
- MLP: fc1 column-parallel (ffn_hidden/N), fc2 row-parallel, one all-reduce.
- Mamba-2: heads and groups split (nheads/N heads, ngroups/N groups per rank); in_proj is
  column-parallel, conv, SSD scan, gated norm and the SSM state are local, out_proj row-parallel,
  one all-reduce (as `mamba_ssm.Mamba2(process_group=..., sequence_parallel=False)`).
- Mamba-1: d_inner split. in_proj column-parallel; x_proj (d_inner -> dt_rank + 2*d_state) reduces
  over d_inner, so its small output is all-reduced before dt_proj (column-parallel) and the scan;
  out_proj row-parallel, a second all-reduce. (mamba_ssm has no TP Mamba-1; this is the natural
  split, two all-reduces per layer.)
- embedding and LM head vocabulary-parallel: each rank gathers its V/N rows (masking the ids it
  does not own, then one all-reduce of the hidden states); the LM head computes V/N logits per
  rank and all-gathers them.
Norms, residual adds and everything outside the mixers run replicated on every rank.

Per-rank compute ops come from the existing cost formulas on per-rank specs: attention and MLP
through `dataclasses.replace` on their specs; Mamba-1/2 through `MambaShard`/`Mamba2Shard`, which
carry the per-rank d_inner, nheads and ngroups and borrow every derived quantity (conv_dim,
d_in_proj, params, state bytes) from the spec classes themselves, so no formula is written twice.
Hand-built ops (documented where made): the vocabulary mask of the parallel embedding, the copy
that lays gathered logits out as (B, V), and the collectives.

Collectives are timed as ring algorithms (nccl-tests' bus-bandwidth definitions,
https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md):
    all-reduce  t = latency + 2(N-1)/N * bytes / bus_bw
    all-gather  t = latency + (N-1)/N * bytes_out / bus_bw
with bus_bw and latency from the calibration's `allreduce` entry when present, else the GPU's
NVLink figure (`GPUSpec.nvlink_bw_bytes_s`, `allreduce_latency_s`). `allreduce_ms` in the output
is the time of all collectives of the step (all-reduces and the logits all-gather).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analytic.calibration import Calibration, resolve
from analytic.composition import CountedOp, model_ops
from analytic.costs import PHASES, layer_ops
from analytic.efficiency import (BOUND_LABELS, Ceilings, ceilings, clock_scales, graph_step_s, scaled_seconds,
                                 step_op_times, sustained_s)
from analytic.hardware import GPUSpec, get_gpu
from analytic.memory import ALLOCATOR_HEADROOM, largest_batch, memory_footprint
from analytic.ops import Op, elementwise
from analytic.provenance import labels
from analytic.uncertainty import Term, point_interval, term_key
from models.specs import LETTERS, Mamba2Spec, MambaSpec, ModelSpec, SpecError

# Op classes of the collectives (timed here, not in analytic/efficiency.py).
ALLREDUCE = "allreduce"
ALLGATHER = "allgather"
COLLECTIVE_CLASSES = (ALLREDUCE, ALLGATHER)
# Bus-bandwidth factor of each ring collective (nccl-tests PERFORMANCE.md).
_RING_FACTOR = {ALLREDUCE: lambda n: 2.0 * (n - 1) / n, ALLGATHER: lambda n: (n - 1) / n}

SCALING_COLUMNS = ["name", "phase", "batch", "seqlen", "gpu", "tp", "time_ms", "allreduce_ms",
                   "allreduce_share", "speedup", "memory_per_gpu_bytes", "max_batch", "tokens_per_s",
                   "reason"]


# ----------------------------------------------------------------------------- per-rank specs

@dataclass(frozen=True)
class Mamba2Shard:
    """One rank's Mamba-2 mixer: nheads/N heads of headdim, ngroups/N groups, d_inner/N channels.

    Duck-types Mamba2Spec for the cost formulas, the memory model and `models.reference.RefMamba2`;
    derived sizes are Mamba2Spec's own properties evaluated on the per-rank numbers.
    """

    full: Mamba2Spec
    tp: int
    kind = "mamba2"
    letter = "M"

    d_model = property(lambda self: self.full.d_model)
    d_state = property(lambda self: self.full.d_state)
    d_conv = property(lambda self: self.full.d_conv)
    headdim = property(lambda self: self.full.headdim)
    chunk_size = property(lambda self: self.full.chunk_size)
    conv_bias = property(lambda self: self.full.conv_bias)
    bias = property(lambda self: self.full.bias)
    rmsnorm = property(lambda self: self.full.rmsnorm)
    d_inner = property(lambda self: self.full.d_inner // self.tp)
    nheads = property(lambda self: self.full.nheads // self.tp)
    ngroups = property(lambda self: self.full.ngroups // self.tp)
    conv_dim = Mamba2Spec.conv_dim
    d_in_proj = Mamba2Spec.d_in_proj
    params = Mamba2Spec.params  # out_proj bias (if any) counted: rank 0 holds it
    state_bytes_per_sequence = Mamba2Spec.state_bytes_per_sequence


@dataclass(frozen=True)
class MambaShard:
    """One rank's Mamba-1 mixer: d_inner/N channels; dt_rank and d_state stay whole."""

    full: MambaSpec
    tp: int
    kind = "mamba"
    letter = "m"

    d_model = property(lambda self: self.full.d_model)
    d_state = property(lambda self: self.full.d_state)
    d_conv = property(lambda self: self.full.d_conv)
    dt_rank = property(lambda self: self.full.dt_rank)
    conv_bias = property(lambda self: self.full.conv_bias)
    bias = property(lambda self: self.full.bias)
    d_inner = property(lambda self: self.full.d_inner // self.tp)
    params = MambaSpec.params
    state_bytes_per_sequence = MambaSpec.state_bytes_per_sequence


def check_tp(tp) -> int:
    if isinstance(tp, bool) or not isinstance(tp, (int, np.integer)) or tp < 1:
        raise SpecError(f"tp must be a positive integer, got {tp!r}")
    return int(tp)


def _divides(tp: int, what: str, value: int, where: str) -> None:
    if value % tp:
        raise SpecError(f"tp={tp}: {where} has {value} {what}, not divisible by {tp}")


def shard_layer(spec, tp: int, where: str | None = None):
    """The per-rank spec of a mixer at tensor-parallel degree `tp` (the spec itself at tp=1)."""
    tp = check_tp(tp)
    if tp == 1:
        return spec
    where = where or spec.kind
    if spec.kind == "attention":
        _divides(tp, "query heads", spec.n_heads, where)
        _divides(tp, "KV heads", spec.n_kv_heads, where)
        return replace(spec, n_heads=spec.n_heads // tp, n_kv_heads=spec.n_kv_heads // tp)
    if spec.kind == "mlp":
        _divides(tp, "hidden units (ffn_hidden)", spec.ffn_hidden, where)
        return replace(spec, ffn_hidden=spec.ffn_hidden // tp)
    if spec.kind == "mamba2":
        _divides(tp, "heads", spec.nheads, where)
        _divides(tp, "groups", spec.ngroups, where)
        return Mamba2Shard(spec, tp)
    if spec.kind == "mamba":
        _divides(tp, "inner channels (d_inner)", spec.d_inner, where)
        return MambaShard(spec, tp)
    raise SpecError(f"cannot shard a {spec.kind!r} layer")


def shard_model(spec: ModelSpec, tp: int) -> ModelSpec:
    """One rank's model: vocabulary V/N, each mixer used by the pattern replaced by its shard.

    The result is a ModelSpec whose mixer fields may hold Mamba2Shard/MambaShard (duck-typed), so
    `analytic.composition.model_ops` and `analytic.memory.memory_footprint` apply to it unchanged.
    """
    tp = check_tp(tp)
    if tp == 1:
        return spec
    kinds = [LETTERS[letter] for letter in dict.fromkeys(spec.pattern)]  # first-appearance order
    shards = {kind: shard_layer(getattr(spec, kind), tp, f"{spec.name} {kind}") for kind in kinds}
    _divides(tp, "vocabulary entries", spec.vocab_size, f"{spec.name} embedding/LM head")
    return replace(spec, vocab_size=spec.vocab_size // tp, **shards)


# ----------------------------------------------------------------------------- collectives

def collective(name: str, op_class: str, message_bytes: np.ndarray) -> Op:
    """A collective call; bytes_ is 0 (it is not HBM traffic), the message size is in shape."""
    message = np.asarray(message_bytes, dtype=np.float64)
    zero = 0.0 * message
    return Op(name, op_class, zero, zero, 1, {"message_bytes": message})


@dataclass(frozen=True)
class Interconnect:
    """Ring bus bandwidth and per-call latency of the collectives, and where they came from."""

    bus_bw_bytes_s: float
    latency_s: float
    source: str  # "calibration" | "datasheet"


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
    factor = _RING_FACTOR[op.op_class](tp)
    return op.kernels * link.latency_s + factor * op.shape["message_bytes"] / link.bus_bw_bytes_s


def _layer_collectives(spec, group: str, tokens: np.ndarray, count: int, e: int) -> list[CountedOp]:
    out = [CountedOp(group, collective("out_allreduce", ALLREDUCE, tokens * spec.d_model * e), count)]
    if spec.kind == "mamba":  # x_proj reduces over d_inner: its (dt, B, C) partial sums are summed
        width = spec.dt_rank + 2 * spec.d_state
        out.insert(0, CountedOp(group, collective("x_proj_allreduce", ALLREDUCE, tokens * width * e), count))
    return out


def rank_ops(kind: str, spec, phase: str, batch: np.ndarray, seqlen: np.ndarray, tp: int,
             e: int = 2) -> tuple[list[CountedOp], list[CountedOp]]:
    """(compute ops, collective ops) one rank runs for a layer or model step at degree `tp`."""
    if phase not in PHASES:
        raise SpecError(f"unknown phase {phase!r} (prefill, decode)")
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    tokens = b * L if phase == "prefill" else b + 0.0 * L
    if kind == "layer":
        local = shard_layer(spec, tp)
        compute = [CountedOp(spec.kind, op, 1) for op in layer_ops(local, phase, b, L, e)]
        comm = _layer_collectives(spec, spec.kind, tokens, 1, e) if tp > 1 else []
        return compute, comm
    local_model = shard_model(spec, tp)
    compute = model_ops(local_model, phase, b, L, e)
    if tp == 1:
        return compute, []
    last = b + 0.0 * L
    d, vocab = spec.d_model, spec.vocab_size
    first_of_kind = {layer.kind: layer for layer in spec.layers}
    comm: list[CountedOp] = []
    for layer_kind, count in spec.layer_mix.items():
        comm += _layer_collectives(first_of_kind[layer_kind], layer_kind, tokens, count, e)
    # Vocabulary-parallel embedding (perfbench.tp_layers.VocabParallelEmbedding): ids - start, two
    # compares, an and, a clamp, the mask cast (6 passes over T ids), the lookup (already in
    # model_ops), and a multiply by the mask over the (T, d) output: hand-counted here.
    compute.append(CountedOp("embedding", elementwise("vocab_mask", tokens * d + 6 * tokens,
                                                      tokens * d + 6 * tokens, 1.0, e, kernels=7), 1))
    comm.append(CountedOp("embedding", collective("embedding_allreduce", ALLREDUCE, tokens * d * e), 1))
    # LM head: V/N logits per rank (in model_ops via the sharded vocabulary), all-gathered, then
    # one copy from (N, B, V/N) to (B, V).
    comm.append(CountedOp("head", collective("logits_allgather", ALLGATHER, last * vocab * e), 1))
    compute.append(CountedOp("head", elementwise("logits_layout", last * vocab, last * vocab, 0.0, e), 1))
    return compute, comm


# ----------------------------------------------------------------------------- memory

def memory_per_gpu(spec: ModelSpec, batch, context, tp: int, dtype_bytes: int = 2,
                   phase: str = "prefill") -> dict:
    """`analytic.memory.memory_footprint` of one rank: weights, KV cache and SSM state split N ways.

    Sharded: every mixer weight, the embedding and the LM head (vocabulary-parallel), the KV
    cache (KV heads split) and the SSM/conv states (heads, groups or channels split). Replicated:
    norms, the residual stream and the gathered (B, V) logits. Identical to memory_footprint at tp=1.
    """
    tp = check_tp(tp)
    mem = memory_footprint(shard_model(spec, tp), batch, context, dtype_bytes, phase=phase)
    if tp > 1:  # all ranks hold the gathered bf16 logits besides their own V/N slice
        gathered = np.asarray(batch, dtype=np.float64) * spec.vocab_size * dtype_bytes + 0.0 * mem["total_bytes"]
        mem["activation_peak_bytes"] = mem["activation_peak_bytes"] + gathered
        mem["total_bytes"] = mem["total_bytes"] + gathered
    return mem


def max_batch_tp(spec: ModelSpec, context: int, gpu, tp: int, phase: str = "decode") -> int:
    """Largest batch whose per-GPU footprint fits each of the `tp` GPUs (0 if one sequence does not)."""
    gpu_spec = get_gpu(gpu) if isinstance(gpu, str) else gpu
    budget = gpu_spec.mem_bytes * ALLOCATOR_HEADROOM
    shard_model(spec, check_tp(tp))  # an invalid split fails here, not inside the search

    return largest_batch(lambda b: float(memory_per_gpu(spec, b, context, tp, phase=phase)["total_bytes"])
                         <= budget)


# ----------------------------------------------------------------------------- prediction

def _timed_sum(compute: list[CountedOp], comm: list[CountedOp], ceil: Ceilings, tp: int,
               link: Interconnect, size: int):
    times = step_op_times(compute, ceil)
    scales = clock_scales(compute, times, ceil)
    compute_s = scaled_seconds(compute, times, scales)
    comm_s = sum(collective_time_s(c.op, tp, link) * c.count for c in comm) + np.zeros(size)
    # A long point heats the board: its power-limited kernels slow with the whole call's length.
    compute_s, _slowdown = sustained_s(compute_s, compute, times, ceil, call_s=compute_s + comm_s)
    by_bound = np.zeros((len(BOUND_LABELS), size))
    for (t, code), c in zip(times, compute):
        np.add.at(by_bound, (code, np.arange(size)), t * c.count)
    return compute_s, comm_s, by_bound, times, scales


def collective_terms(comm: list[CountedOp], phase: str, tp: int, link, cal) -> list[Term]:
    """The collectives of a rank's step as interval terms: the section's pooled row of the phase
    (no held-out set prices them alone), interpolated (modelled from the calibrated all-reduce)."""
    from analytic.provenance import DATASHEET, INTERPOLATED
    from analytic.uncertainty import POOLED

    code = INTERPOLATED if cal is not None else DATASHEET
    return [Term(term_key(POOLED, phase), collective_time_s(c.op, tp, link) * c.count,
                 np.full(np.shape(c.op.flops), code, dtype=np.int8)) for c in comm]


def predict_tp(target, phase: str, batch: Sequence[int], seqlen: Sequence[int], gpu: str = "h100",
               calibration="default", tp: int = 2, graphs: bool = True, allreduce: dict | None = None
               ) -> pd.DataFrame:
    """`analytic.predict.predict`'s rows for one rank of a `tp`-way sharded layer or model.

    Extra columns: allreduce_ms (all collectives of the step) and allreduce_share (of time_ms).
    flops, bytes, n_kernels and memory_bytes are per GPU; tokens_per_s is the group's throughput.
    Decode with graphs sums kernel and collective times (both inside one CUDA graph); eager work
    takes the longer of that and the host's launch chain, as for one GPU. `allreduce`
    ({bus_bw_bytes_s, latency_s}) overrides the calibration's interconnect figures.
    """
    from analytic.predict import (COLUMNS, _grid, _layer_memory, fits_in_memory, host_seconds, point_bound,
                                  prediction_terms, resolve_target)

    kind, name, spec = resolve_target(target)
    tp = check_tp(tp)
    gpu_spec = get_gpu(gpu)
    cal = resolve(calibration, gpu)
    ceil = ceilings(gpu_spec, cal)
    link = interconnect(gpu_spec, cal, allreduce)
    b, L = _grid(batch, seqlen)
    compute, comm = rank_ops(kind, spec, phase, b, L, tp)
    compute_s, comm_s, by_bound, times, scales = _timed_sum(compute, comm, ceil, tp, link, b.size)
    time_s = compute_s + comm_s
    everything = compute + comm
    host_bound = np.zeros(b.shape, dtype=bool)
    if phase == "prefill" or not graphs:  # launched eagerly: the host may be the bottleneck
        host_s = host_seconds(kind, spec, phase, compute, ceil)
        host_s = host_s + sum(c.op.kernels * c.count * ceil.eager_kernel_s for c in comm)
        host_bound = host_s > time_s
        time_s = np.maximum(time_s, host_s)
    else:  # one CUDA-graph replay per decode step, as on one GPU
        time_s = graph_step_s(time_s, everything, ceil)
    flops = sum(c.op.flops * c.count for c in everything)
    bytes_ = sum(c.op.bytes_ * c.count for c in everything)
    n_kernels = sum(c.op.kernels * c.count for c in everything)
    bound = point_bound(by_bound, host_bound)
    if kind == "model":
        memory = memory_per_gpu(spec, b, L, tp, phase=phase)["total_bytes"]
    else:
        memory = _layer_memory(shard_layer(spec, tp), phase, b, L)
    tokens = b * L if phase == "prefill" else b
    terms = prediction_terms(kind, spec, phase, compute, times, scales, cal, time_s, graphs, host_bound,
                             extra=collective_terms(comm, phase, tp, link, cal))
    lo_s, hi_s, provenance = point_interval(terms, time_s, cal)
    frame = pd.DataFrame({
        "target_kind": kind, "name": name, "phase": phase, "batch": b.astype(int),
        "seqlen": L.astype(int), "gpu": gpu, "calibrated": cal is not None,
        "mode": ("graph" if graphs else "eager") if phase == "decode" else "eager", "tp": tp,
        "time_ms": time_s * 1e3, "time_lo_ms": lo_s * 1e3, "time_hi_ms": hi_s * 1e3,
        "provenance": labels(provenance), "flops": flops, "bytes": bytes_, "bound": bound,
        "intensity": flops / bytes_, "n_kernels": np.broadcast_to(n_kernels, b.shape).astype(int),
        "tokens_per_s": tokens / time_s, "memory_bytes": memory,
        "allreduce_ms": comm_s * 1e3, "allreduce_share": comm_s / time_s,
        "fits": fits_in_memory(memory, gpu_spec),
    }, columns=COLUMNS + ["allreduce_ms", "allreduce_share"])
    frame["bound"] = frame["bound"].astype(str)
    return frame


def breakdown_tp(target, phase: str, batch: int, seqlen: int, gpu: str = "h100", calibration="default",
                 tp: int = 2, allreduce: dict | None = None) -> pd.DataFrame:
    """One rank's per-operation rows for one point, collectives included (message_bytes column)."""
    from analytic.predict import _grid, resolve_target

    kind, name, spec = resolve_target(target)
    tp = check_tp(tp)
    gpu_spec = get_gpu(gpu)
    cal = resolve(calibration, gpu)
    ceil, link = ceilings(gpu_spec, cal), interconnect(gpu_spec, cal, allreduce)
    b, L = _grid([batch], [seqlen])
    compute, comm = rank_ops(kind, spec, phase, b, L, tp)
    rows = []
    for c, (t, code) in zip(compute, step_op_times(compute, ceil)):
        rows.append({"name": name, "tp": tp, "group": c.group, "op": c.op.name, "op_class": c.op.op_class,
                     "count": c.count, "kernels": c.op.kernels * c.count,
                     "flops": float(c.op.flops[0]) * c.count, "bytes": float(c.op.bytes_[0]) * c.count,
                     "message_bytes": 0.0, "time_ms": float(t[0]) * c.count * 1e3,
                     "bound": BOUND_LABELS[int(code[0])]})
    for c in comm:
        t = collective_time_s(c.op, tp, link)
        rows.append({"name": name, "tp": tp, "group": c.group, "op": c.op.name, "op_class": c.op.op_class,
                     "count": c.count, "kernels": c.op.kernels * c.count, "flops": 0.0, "bytes": 0.0,
                     "message_bytes": float(c.op.shape["message_bytes"][0]) * c.count,
                     "time_ms": float(np.asarray(t).ravel()[0]) * c.count * 1e3, "bound": "communication"})
    frame = pd.DataFrame(rows)
    frame["share"] = frame["time_ms"] / frame["time_ms"].sum()
    return frame


def tp_scaling(target, phase: str, batch: int, seqlen: int, gpu: str = "h100", tps=(1, 2, 4, 8),
               calibration="default", graphs: bool = True, allreduce: dict | None = None) -> pd.DataFrame:
    """Tidy rows (one per TP degree) for TP-scaling plots: time, communication, memory, capacity.

    A degree that cannot shard the target (heads/groups/vocabulary not divisible) gives a row with
    NaN numbers and the one-line reason, so a plot can show where the split stops. speedup is
    time at the smallest valid degree in `tps` (tp=1 when listed) over time at this degree.
    max_batch (model targets) is the largest decode/prefill batch that fits each GPU at `seqlen`.
    """
    from analytic.predict import resolve_target

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
        capacity = max_batch_tp(spec, int(seqlen), gpu, tp, phase) if kind == "model" else pd.NA
        rows.append({**row, "time_ms": point["time_ms"], "allreduce_ms": point["allreduce_ms"],
                     "allreduce_share": point["allreduce_share"], "memory_per_gpu_bytes": point["memory_bytes"],
                     "max_batch": capacity, "tokens_per_s": point["tokens_per_s"], "reason": ""})
    frame = pd.DataFrame(rows)
    valid = frame["time_ms"].notna()
    base = frame.loc[valid, "time_ms"].iloc[0] if valid.any() else np.nan
    frame["speedup"] = base / frame["time_ms"]
    frame["max_batch"] = frame["max_batch"].astype("Int64")
    return frame[SCALING_COLUMNS]


# ----------------------------------------------------------------------------- calibration helpers

def fit_allreduce(samples: Sequence[dict], n_gpus: int) -> dict:
    """{bus_bw_bytes_s, latency_s, n_gpus} from all-reduce samples [{bytes, time_s}, ...].

    Least squares of time = latency + 2(N-1)/N * bytes / bus_bw, each sample weighted by 1/time
    (relative error), so the small decode-sized messages fix the latency and the large ones the
    bandwidth. Samples timed between GEMVs (mode "between": what a decode step pays per call, less
    than back to back) then set the latency alone, as their median time less the bandwidth term;
    `latency_back_to_back_s` keeps the other. Used by `perfbench calibrate` through
    `perfbench.distributed.measure_allreduce`.
    """
    n = check_tp(n_gpus)
    if n < 2:
        raise SpecError("an all-reduce fit needs at least 2 GPUs")
    between = [(float(s["bytes"]), float(s["time_s"])) for s in samples if s.get("mode") == "between"]
    fit = _fit_back_to_back([s for s in samples if s.get("mode") != "between"], n)
    if between:
        ring = _RING_FACTOR[ALLREDUCE](n)
        paid = float(np.median([t - ring * b / fit["bus_bw_bytes_s"] for b, t in between]))
        fit = {**fit, "latency_back_to_back_s": fit["latency_s"], "latency_s": max(paid, 0.0)}
    return fit


def _fit_back_to_back(samples: Sequence[dict], n: int) -> dict:
    pts = [(float(s["bytes"]), float(s["time_s"])) for s in samples if float(s["time_s"]) > 0]
    if len(pts) < 2:
        raise SpecError("an all-reduce fit needs at least 2 samples")
    x = np.array([p[0] for p in pts]) * _RING_FACTOR[ALLREDUCE](n)
    t = np.array([p[1] for p in pts])
    w = 1.0 / t
    design = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (latency, inv_bw), *_ = np.linalg.lstsq(design, t * w, rcond=None)
    if inv_bw <= 0:  # all messages latency-bound: take the best bus bandwidth seen
        inv_bw = 1.0 / float(np.max(x / t))
    latency = max(float(latency), 0.0)
    return {"bus_bw_bytes_s": float(1.0 / inv_bw), "latency_s": latency, "n_gpus": n}


def tp_gemm_shapes(layers, tps=(2, 4, 8), vocab_size: int | None = None, d_model: int | None = None
                   ) -> set[tuple[int, int]]:
    """(N, K) of the per-rank GEMMs at each degree, for the calibration GEMM grid."""
    shapes = set()
    one, ctx = np.array([1.0]), np.array([512.0])
    for spec in layers:
        for tp in tps:
            try:
                local = shard_layer(spec, tp)
            except SpecError:
                continue
            for phase in PHASES:
                for op in layer_ops(local, phase, one, ctx):
                    if op.op_class == "gemm":
                        shapes.add((op.shape["n"], op.shape["k"]))
    if vocab_size and d_model:
        shapes |= {(vocab_size // tp, d_model) for tp in tps if vocab_size % tp == 0}
    return shapes


__all__ = ["ALLGATHER", "ALLREDUCE", "COLLECTIVE_CLASSES", "Interconnect", "Mamba2Shard", "MambaShard",
           "breakdown_tp", "check_tp", "collective_time_s", "fit_allreduce", "interconnect",
           "max_batch_tp", "memory_per_gpu", "predict_tp", "rank_ops", "shard_layer", "shard_model",
           "tp_gemm_shapes", "tp_scaling"]
