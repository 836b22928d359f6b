"""The decode step's state update (mamba_ssm `selective_state_update`, Triton), in both layers' forms:
Mamba-2's per-head scalar A with grouped B and C, Mamba-1's per-channel A with a gate."""

from __future__ import annotations

from analytic.ops import SSU_MAMBA1, STATE_UPDATE
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn, rotation
from perfbench.calibration.kernels.common import KernelBench

NAME = "state_update"
CLASSES = (STATE_UPDATE, SSU_MAMBA1)


def measure(bench: KernelBench) -> None:
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    torch, timer = bench.torch, bench.timer
    m2, m1 = BUILTIN_LAYERS["mamba2"], BUILTIN_LAYERS["mamba"]
    H, P, G, N = m2.nheads, m2.headdim, m2.ngroups, m2.d_state
    A = (-torch.rand(H, device="cuda", dtype=torch.float32) - 0.5)[:, None, None].expand(H, P, N)
    D = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)
    dt_bias = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)
    for b in (1, 3, 12, 48, 96):
        def make(b=b):
            state, x = randn(torch, b, H, P, N), randn(torch, b, H, P)
            dtt = randn(torch, b, H, scale=0.5)[:, :, None].expand(b, H, P)
            B, C = randn(torch, b, G, N), randn(torch, b, G, N)
            return lambda: selective_state_update(state, x, dtt, A, B, C, D, dt_bias=dt_bias, dt_softplus=True)
        run_all, copies = rotation(make, 2 * b * H * P * N)
        for graph in (True, False):
            t = timer(run_all, graph=graph) / copies
            bench.add(STATE_UPDATE, {"layer": "mamba2", "phase": "decode", "batch": b, "seqlen": 1024,
                                     "ops": ["selective_state_update"], "time_s": t})
        bench.log(f"  mamba2 state_update b={b}: {t * 1e6:.1f} us")
    di, N1 = m1.d_inner, m1.d_state
    A1 = -torch.rand(di, N1, device="cuda", dtype=torch.float32) - 0.5
    D1 = torch.randn(di, device="cuda", dtype=torch.float32)
    bias1 = torch.randn(di, device="cuda", dtype=torch.float32)
    for b in (1, 3, 12, 48, 96):
        def make1(b=b):
            state = randn(torch, b, di, N1)
            x, dtt, z = randn(torch, b, di), randn(torch, b, di, scale=0.5), randn(torch, b, di)
            B, C = randn(torch, b, N1), randn(torch, b, N1)
            return lambda: selective_state_update(state, x, dtt, A1, B, C, D1, z=z, dt_bias=bias1, dt_softplus=True)
        run_all, copies = rotation(make1, 2 * b * di * N1)
        t = timer(run_all) / copies
        bench.add(SSU_MAMBA1, {"layer": "mamba", "phase": "decode", "batch": b, "seqlen": 1024,
                               "ops": ["selective_state_update"], "time_s": t})
