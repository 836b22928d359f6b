"""Tensor parallelism: the ops one rank runs in a layer or model step, the collectives included.

Megatron-style sharding (Shoeybi et al., arXiv 1909.08053, §3), without sequence parallelism; the
per-rank specs come from `models.sharding` (see there for the split of each layer):
- attention, MLP and Mamba-2: the row-parallel output projection's partial sums are all-reduced,
  one all-reduce per layer (Mamba-2 as `mamba_ssm.Mamba2(process_group=..., sequence_parallel=False)`).
- Mamba-1: x_proj (d_inner -> dt_rank + 2*d_state) reduces over d_inner, so its small output is
  all-reduced before dt_proj (column-parallel) and the scan, and out_proj's a second time.
  (mamba_ssm has no TP Mamba-1; this is the natural split, two all-reduces per layer.)
- embedding and LM head vocabulary-parallel: each rank gathers its V/N rows (masking the ids it
  does not own, then one all-reduce of the hidden states); the LM head computes V/N logits per
  rank and all-gathers them.
Norms, residual adds and everything outside the mixers run replicated on every rank.

Per-rank compute ops come from the one-GPU cost formulas on the per-rank specs, so no formula is
written twice. Hand-built ops (documented where made): the vocabulary mask of the parallel
embedding, the copy that lays gathered logits out as (B, V), and the collectives (timed by
`analytic.collectives`).
"""

from __future__ import annotations

import numpy as np

from analytic.composition import CountedOp, step_ops
from analytic.costs import PHASES, layer_ops
from analytic.ops import ALLGATHER, ALLREDUCE, collective, elementwise
from models.sharding import shard_layer, shard_model
from models.specs import SpecError


def _layer_collectives(spec, group: str, tokens: np.ndarray, count: int, e: int) -> list[CountedOp]:
    out = [CountedOp(group, collective("out_allreduce", ALLREDUCE, tokens * spec.d_model * e), count)]
    if spec.kind == "mamba":  # x_proj reduces over d_inner: its (dt, B, C) partial sums are summed
        width = spec.dt_rank + 2 * spec.d_state
        out.insert(0, CountedOp(group, collective("x_proj_allreduce", ALLREDUCE, tokens * width * e), count))
    return out


def rank_ops(kind: str, spec, phase: str, batch: np.ndarray, seqlen: np.ndarray, tp: int,
             e: int = 2) -> tuple[list[CountedOp], list[CountedOp]]:
    """(compute ops, collective ops) one rank runs for a layer or model (`kind`) step at degree `tp`."""
    if phase not in PHASES:
        raise SpecError(f"unknown phase {phase!r} (prefill, decode)")
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    local = shard_model(spec, tp) if kind == "model" else shard_layer(spec, tp)
    compute = step_ops(kind, local, phase, b, L, e)
    if tp == 1:
        return compute, []
    tokens = b * L if phase == "prefill" else b + 0.0 * L
    layers = {spec.kind: (spec, 1)} if kind == "layer" else {
        layer.kind: (layer, spec.layer_mix[layer.kind]) for layer in spec.layers}
    comm = [c for group, (layer, count) in layers.items() for c in _layer_collectives(layer, group, tokens, count, e)]
    if kind == "layer":
        return compute, comm
    last = b + 0.0 * L
    d, vocab = spec.d_model, spec.vocab_size
    # Vocabulary-parallel embedding (perfbench.tp.layers.VocabParallelEmbedding): ids - start, two
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
