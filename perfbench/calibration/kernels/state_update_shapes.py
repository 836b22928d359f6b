"""The decode state update over its hyper-parameters: Mamba-2's head dim, d_state and groups (the SSD
spread's specs), and Mamba-1's d_state and d_inner (the scan spread's), each on rotated states as a
decode step finds them (out of L2). These fit the update's latency per wave of programs
(analytic.families.state_update)."""

from __future__ import annotations

from perfbench.calibration.bench import randn, rotation
from perfbench.calibration.kernels.selective_scan_shapes import SPECS as SCAN_SPECS
from perfbench.calibration.kernels.ssd_shapes import SPECS as SSD_SPECS
from perfbench.calibration.kernels.common import KernelBench

NAME = "state_update_shapes"
CLASSES = (NAME,)
MAMBA2_SPECS = tuple(s for s in SSD_SPECS if s.chunk_size == 128)  # the chunk does not enter decode
MAMBA1_SPECS = SCAN_SPECS
BATCHES = (1, 6, 40)


def measure(bench: KernelBench) -> None:
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    torch, timer = bench.torch, bench.timer
    for spec in MAMBA2_SPECS:
        H, P, G, N = spec.nheads, spec.headdim, spec.ngroups, spec.d_state
        A = (-torch.rand(H, device="cuda", dtype=torch.float32) - 0.5)[:, None, None].expand(H, P, N)
        D = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)
        dt_bias = torch.randn(H, device="cuda", dtype=torch.float32)[:, None].expand(H, P)
        for b in BATCHES:
            def make(b=b):
                state, x = randn(torch, b, H, P, N), randn(torch, b, H, P)
                dtt = randn(torch, b, H, scale=0.5)[:, :, None].expand(b, H, P)
                B, C = randn(torch, b, G, N), randn(torch, b, G, N)
                return lambda: selective_state_update(state, x, dtt, A, B, C, D, dt_bias=dt_bias, dt_softplus=True)
            run_all, copies = rotation(make, 2 * b * H * P * N)
            t = timer(run_all) / copies
            bench.add_spec(NAME, spec, {"phase": "decode", "batch": b, "seqlen": 1024,
                                        "ops": ["selective_state_update"], "time_s": t})
            bench.log(f"  mamba2 state_update headdim={P} d_state={N} groups={G} heads={H} b={b}: {t * 1e6:.1f} us")
    for spec in MAMBA1_SPECS:
        di, N = spec.d_inner, spec.d_state
        A1 = -torch.rand(di, N, device="cuda", dtype=torch.float32) - 0.5
        D1 = torch.randn(di, device="cuda", dtype=torch.float32)
        bias1 = torch.randn(di, device="cuda", dtype=torch.float32)
        for b in BATCHES:
            def make1(b=b):
                state = randn(torch, b, di, N)
                x, dtt, z = randn(torch, b, di), randn(torch, b, di, scale=0.5), randn(torch, b, di)
                B, C = randn(torch, b, N), randn(torch, b, N)
                return lambda: selective_state_update(state, x, dtt, A1, B, C, D1, z=z, dt_bias=bias1, dt_softplus=True)
            run_all, copies = rotation(make1, 2 * b * di * N)
            t = timer(run_all) / copies
            bench.add_spec(NAME, spec, {"phase": "decode", "batch": b, "seqlen": 1024,
                                        "ops": ["selective_state_update"], "time_s": t})
            bench.log(f"  mamba1 state_update d_inner={di} d_state={N} b={b}: {t * 1e6:.1f} us")


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [{"spec": spec, "phase": "decode", "batch": b, "seqlen": 1024, "ops": ["selective_state_update"],
             "mode": "graph"} for spec in MAMBA2_SPECS + MAMBA1_SPECS for b in BATCHES]
