"""Per-layer cost formulas: one file per layer type, prefill beside decode, as the papers write them.

`layer_ops(spec, phase, batch, seqlen)` returns the list of `Op`s of one layer (the mixer alone,
as the harness times it: no pre-norm, no residual); `analytic.composition` adds norms, residuals,
embedding and LM head for whole models.
"""

from __future__ import annotations

import numpy as np

from analytic.costs import attention, mamba, mamba2, mlp
from analytic.ops import Op

_BY_KIND = {"mamba": mamba, "mamba2": mamba2, "attention": attention, "mlp": mlp}
PHASES = ("prefill", "decode")


def layer_ops(spec, phase: str, batch: np.ndarray, seqlen: np.ndarray, dtype_bytes: int = 2) -> list[Op]:
    """Operations of one layer for `phase` over broadcast (batch, seqlen) arrays."""
    module = _BY_KIND[spec.kind]
    if phase == "prefill":
        return module.prefill(spec, batch, seqlen, dtype_bytes)
    if phase == "decode":
        return module.decode(spec, batch, seqlen, dtype_bytes)
    raise ValueError(f"unknown phase {phase!r} (prefill, decode)")
