"""What one GPU runs in a step: the ops of a layer's call or of a model step, on one tensor-parallel rank.

`rank_ops` lists them in one pass, in execution order:
1. the layers: each distinct layer kind's ops from its cost formulas (`analytic.costs.layer_ops`) on the
   rank's spec (`models.sharding`), computed once and counted per occurrence;
2. what only a whole model has: one fused residual add + pre-norm per block (mamba_ssm's Triton
   `layer_norm_fn` with a residual, as `models.stack` runs it), the embedding gather, the final norm
   and the LM head. Time to first token runs the LM head on the last position only (B rows), as
   serving engines do; so does every decode step;
3. under tensor parallelism (Megatron-style, Shoeybi et al., arXiv 1909.08053, §3, without sequence
   parallelism): the all-reduce of each layer's partial sums (`models.sharding.allreduced_widths`), the
   vocabulary-parallel embedding's mask and all-reduce, and the LM head's all-gather of its V/N logits
   per rank with the copy that lays them out as (B, V). Norms and residual adds run replicated.
The collectives are timed by `analytic.collectives`, every other op by `analytic.efficiency`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytic.costs import PHASES, layer_ops
from analytic.ops import ALLGATHER, ALLREDUCE, Op, add_norm, collective, elementwise, gemm
from models.sharding import allreduced_widths, shard_layer, shard_model
from models.specs import SpecError


@dataclass(frozen=True)
class CountedOp:
    group: str  # layer kind, "block", "embedding" or "head"
    op: Op
    count: int


def rank_ops(kind: str, spec, phase: str, batch: np.ndarray, seqlen: np.ndarray, tp: int = 1,
             e: int = 2) -> tuple[list[CountedOp], list[CountedOp]]:
    """(compute ops, collective ops) one rank runs in a layer's call (`kind` "layer") or a model step
    ("model") at degree `tp`, over broadcast (batch, seqlen) arrays; `e` bytes per element."""
    if phase not in PHASES:
        raise SpecError(f"unknown phase {phase!r} (prefill, decode)")
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    tokens = b * L if phase == "prefill" else b + 0.0 * L
    last = b + 0.0 * L  # positions the LM head sees
    local = shard_model(spec, tp) if kind == "model" else shard_layer(spec, tp)
    layers = [(local, 1)] if kind == "layer" else [(getattr(local, k), n) for k, n in local.layer_mix.items()]
    compute: list[CountedOp] = []
    comm: list[CountedOp] = []
    for layer, count in layers:
        compute += [CountedOp(layer.kind, op, count) for op in layer_ops(layer, phase, b, L, e)]
        if tp > 1:
            comm += [CountedOp(layer.kind, collective(f"{source}_allreduce", ALLREDUCE, tokens * width * e), count)
                     for source, width in allreduced_widths(layer)]
    if kind == "layer":
        return compute, comm
    d, norm = local.d_model, local.norm
    compute += [CountedOp("block", add_norm(f"add_{norm}", d, norm, tokens, e), len(local.pattern)),
                CountedOp("embedding", elementwise("embedding", tokens * d, tokens * d, 0.0, e, cold_kernels=1), 1),
                CountedOp("head", add_norm(f"final_add_{norm}", d, norm, last, e), 1),
                CountedOp("head", gemm("lm_head", last, local.vocab_size, d, e), 1)]  # V/N logits a rank
    if tp == 1:
        return compute, comm
    vocab = spec.vocab_size
    # Vocabulary-parallel embedding (perfbench.tp.layers.VocabParallelEmbedding): ids - start, two
    # compares, an and, a clamp, the mask cast (6 passes over T ids), the lookup (above), and a multiply
    # by the mask over the (T, d) output, hand-counted; then one all-reduce of the hidden states. The LM
    # head's logits are all-gathered, then copied once from (N, B, V/N) to (B, V).
    compute += [CountedOp("embedding", elementwise("vocab_mask", tokens * d + 6 * tokens, tokens * d + 6 * tokens,
                                                   1.0, e, kernels=7), 1),
                CountedOp("head", elementwise("logits_layout", last * vocab, last * vocab, 0.0, e), 1)]
    comm += [CountedOp("embedding", collective("embedding_allreduce", ALLREDUCE, tokens * d * e), 1),
             CountedOp("head", collective("logits_allgather", ALLGATHER, last * vocab * e), 1)]
    return compute, comm


def step_ops(kind: str, spec, phase: str, batch: np.ndarray, seqlen: np.ndarray, e: int = 2) -> list[CountedOp]:
    """The ops of a lone layer's call (`kind` "layer") or of a model step ("model") on one GPU."""
    return rank_ops(kind, spec, phase, batch, seqlen, 1, e)[0]
