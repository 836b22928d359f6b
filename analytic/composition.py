"""Whole-model operation lists: layers in pattern order plus what only a full model has.

A model step is its distinct layer types (each op list computed once, counted per occurrence),
one fused residual-add + pre-norm per block (mamba_ssm's Triton `layer_norm_fn` with a residual,
as `models.stack` runs it: reads the block output and the residual, writes the normed input and
the new residual), the embedding gather, the final norm and the LM head. Time to first token runs the LM head on the last position only (B rows), as serving
engines do; so does every decode step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from analytic.costs import layer_ops
from analytic.ops import ADD_NORM, Op, elementwise, gemm
from models.specs import ModelSpec


# The key of the fused add + norm's host launch chain in a calibration (`host/add_norm/prefill`, ...),
# sampled beside the layers' chains (perfbench/calibration/host.py).
ADD_NORM_CHAIN = "add_norm"


@dataclass(frozen=True)
class CountedOp:
    group: str  # layer kind, "block", "embedding" or "head"
    op: Op
    count: int


def add_norm(name: str, d_model: int, norm: str, tokens: np.ndarray, e: int) -> Op:
    """The fused residual add + norm over `tokens` rows: its own kernel family (analytic.ops.ADD_NORM).
    It reads the residual stream and the norm's weight, both out of L2 by then: the family is calibrated
    so at decode sizes, so it counts no further cold-kernel step cost."""
    norm_flops = 8.0 if norm == "layernorm" else 5.0
    op = elementwise(name, 2 * tokens * d_model, 2 * tokens * d_model, norm_flops, e)
    return replace(op, shape={**op.shape, "family": ADD_NORM})


def block_extras(d_model: int, norm: str, tokens: np.ndarray, e: int) -> list[Op]:
    return [add_norm(f"add_{norm}", d_model, norm, tokens, e)]


def step_ops(target_kind: str, spec, phase: str, batch: np.ndarray, seqlen: np.ndarray, e: int = 2) -> list[CountedOp]:
    """The ops of a lone layer's call (`target_kind` "layer") or of a model step ("model")."""
    if target_kind == "layer":
        return [CountedOp(spec.kind, op, 1) for op in layer_ops(spec, phase, batch, seqlen, e)]
    return model_ops(spec, phase, batch, seqlen, e)


def model_ops(spec: ModelSpec, phase: str, batch: np.ndarray, seqlen: np.ndarray, e: int = 2) -> list[CountedOp]:
    b = np.asarray(batch, dtype=np.float64)
    L = np.asarray(seqlen, dtype=np.float64)
    tokens = b * L if phase == "prefill" else b + 0.0 * L
    last = b + 0.0 * L  # positions the LM head sees
    out: list[CountedOp] = []
    first_of_kind = {layer.kind: layer for layer in reversed(spec.layers)}
    for kind, count in spec.layer_mix.items():
        out += [CountedOp(kind, op, count) for op in layer_ops(first_of_kind[kind], phase, b, L, e)]
    n_blocks = len(spec.pattern)
    out += [CountedOp("block", op, n_blocks) for op in block_extras(spec.d_model, spec.norm, tokens, e)]
    out.append(CountedOp("embedding", elementwise("embedding", tokens * spec.d_model, tokens * spec.d_model,
                                                  0.0, e, cold_kernels=1), 1))
    out.append(CountedOp("head", add_norm(f"final_add_{spec.norm}", spec.d_model, spec.norm, last, e), 1))
    out.append(CountedOp("head", gemm("lm_head", last, spec.vocab_size, spec.d_model, e), 1))
    return out

