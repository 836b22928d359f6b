"""MLP block costs: fc1 -> activation -> fc2 (Megatron's squared-ReLU MLP, arXiv 2406.07887 §3).

Prefill over T = B*L tokens, decode over T = B tokens; the formulas are the same with T changed.
Squared ReLU runs as two elementwise kernels in eager PyTorch (relu, then square). A gated MLP
(SwiGLU: models.reference.RefMLP) splits fc1's output into views `gate, up` (no copy) and runs two
kernels: act(gate), reading the T*f gate elements (strided) and writing T*f, then act * up, reading
2*T*f and writing T*f: 3*T*f elements read and 2*T*f written in all.
"""

from __future__ import annotations

import numpy as np

from analytic.ops import Op, elementwise, gemm

ZERO_FOR_NEGATIVE = ("squared_relu", "relu")  # activations whose output is 0 wherever their input is < 0


def _ops(spec, tokens: np.ndarray, e: int) -> list[Op]:
    f = spec.ffn_hidden
    ops = [gemm("fc1", tokens, spec.fc1_out, spec.d_model, e)]
    if spec.gated:
        # act(gate) then act * up: 4 FLOPs a SiLU element and 1 a product, over 2*T*f outputs.
        ops.append(elementwise("act_gate", tokens * 3 * f, tokens * 2 * f, 2.5, e, kernels=2))
    elif spec.activation == "squared_relu":
        # relu(x) then x*x: each reads and writes T*f elements.
        ops.append(elementwise("squared_relu", tokens * 2 * f, tokens * 2 * f, 1.0, e, kernels=2))
    else:
        ops.append(elementwise(spec.activation, tokens * f, tokens * f, 8.0, e))
    # A ReLU-family activation leaves half of fc2's input zero (random weights; trained ones more).
    ops.append(gemm("fc2", tokens, spec.d_model, f, e, relu_input=spec.activation in ZERO_FOR_NEGATIVE))
    return ops


def prefill(spec, batch, seqlen, e: int = 2) -> list[Op]:
    return _ops(spec, np.asarray(batch * seqlen, dtype=np.float64), e)


def decode(spec, batch, seqlen, e: int = 2) -> list[Op]:
    # One new token per sequence; an MLP has no cache, so context length does not enter.
    tokens = np.asarray(batch, dtype=np.float64) + 0.0 * np.asarray(seqlen)
    return _ops(spec, tokens, e)
