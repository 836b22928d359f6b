"""The decode step's state update (mamba_ssm `selective_state_update`, Triton), in both layers' forms:
Mamba-2's per-head scalar A with grouped B and C, Mamba-1's per-channel A with a gate."""

from __future__ import annotations

from analytic.ops import SSU_MAMBA1, STATE_UPDATE
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn, rotation
from perfbench.calibration.kernels.common import KernelBench

NAME = "state_update"
CLASSES = (STATE_UPDATE, SSU_MAMBA1)
BATCHES = (1, 3, 12, 48, 96)


def mamba2_update(torch, spec):
    """make(b) -> a factory of update calls of Mamba-2's form on `spec`, each on its own state of b
    sequences (the layer's parameters shared, as in a step)."""
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    H, P, G, N = spec.nheads, spec.headdim, spec.ngroups, spec.d_state
    A = (-torch.rand(H, device="cuda", dtype=torch.float32) - 0.5)[:, None, None].expand(H, P, N)
    D = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)
    dt_bias = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)

    def make(b):
        state, x = randn(torch, b, H, P, N), randn(torch, b, H, P)
        dtt = randn(torch, b, H, scale=0.5)[:, :, None].expand(b, H, P)
        B, C = randn(torch, b, G, N), randn(torch, b, G, N)
        return lambda: selective_state_update(state, x, dtt, A, B, C, D, dt_bias=dt_bias, dt_softplus=True)
    return make


def mamba1_update(torch, spec):
    """make(b) -> a factory of update calls of Mamba-1's form (per-channel A, z gate) on `spec`."""
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    di, N = spec.d_inner, spec.d_state
    A = -torch.rand(di, N, device="cuda", dtype=torch.float32) - 0.5
    D = torch.randn(di, device="cuda", dtype=torch.float32)
    bias = torch.randn(di, device="cuda", dtype=torch.float32)

    def make(b):
        state = randn(torch, b, di, N)
        x, dtt, z = randn(torch, b, di), randn(torch, b, di, scale=0.5), randn(torch, b, di)
        B, C = randn(torch, b, N), randn(torch, b, N)
        return lambda: selective_state_update(state, x, dtt, A, B, C, D, z=z, dt_bias=bias, dt_softplus=True)
    return make


def state_bytes(spec, batch: int) -> int:
    """bf16 state of `batch` sequences: what the rotation spreads past L2."""
    heads_rows = spec.nheads * spec.headdim if spec.kind == "mamba2" else spec.d_inner
    return 2 * batch * heads_rows * spec.d_state


def measure(bench: KernelBench) -> None:
    torch, timer = bench.torch, bench.timer
    m2, m1 = BUILTIN_LAYERS["mamba2"], BUILTIN_LAYERS["mamba"]
    make2 = mamba2_update(torch, m2)
    for b in BATCHES:
        run_all, copies = rotation(lambda b=b: make2(b), state_bytes(m2, b))
        for graph in (True, False):
            t = timer(run_all, graph=graph) / copies
            bench.add(STATE_UPDATE, {"layer": "mamba2", "phase": "decode", "batch": b, "seqlen": 1024,
                                     "ops": ["selective_state_update"], "time_s": t})
        bench.log(f"  mamba2 state_update b={b}: {t * 1e6:.1f} us")
    make1 = mamba1_update(torch, m1)
    for b in BATCHES:
        run_all, copies = rotation(lambda b=b: make1(b), state_bytes(m1, b))
        t = timer(run_all) / copies
        bench.add(SSU_MAMBA1, {"layer": "mamba", "phase": "decode", "batch": b, "seqlen": 1024,
                               "ops": ["selective_state_update"], "time_s": t})
