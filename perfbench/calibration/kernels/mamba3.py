"""Mamba-3's SISO kernels alone (mamba_ssm 2.3.2 `ops/triton/mamba3/`): the chunked prefill kernel
`mamba3_siso_fwd` (after `angle_dt_fwd`, untimed) and the Triton decode step `mamba3_siso_step`, at the
8B layer's shapes (analytic/costs/mamba3.py: families mamba3_chunk and mamba3_step)."""

from __future__ import annotations

from analytic.ops import MAMBA3_CHUNK, MAMBA3_STEP
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench, time_decode_step

NAME = "mamba3"
CLASSES = (MAMBA3_CHUNK, MAMBA3_STEP)
DECODE_BATCHES = (1, 3, 12, 48, 96)


def _prefill_inputs(torch, spec, b: int, L: int) -> dict:
    """The kernel's inputs as `mamba3_siso_combined` passes them: Q, K (B, L, G, N); V, Z (B, L, H, P);
    ADT, DT, Trap (B, H, L); Angles (B, L, H, S) fp32."""
    H, P, N, S, G = spec.nheads, spec.headdim, spec.d_state, spec.num_rope_angles, spec.ngroups
    return {"Q": randn(torch, b, L, G, N), "K": randn(torch, b, L, G, N), "V": randn(torch, b, L, H, P),
            "ADT": -randn(torch, b, H, L, dtype=torch.float32, scale=0.1).abs(),
            "DT": randn(torch, b, H, L, dtype=torch.float32, scale=0.1).abs(),
            "Trap": randn(torch, b, H, L), "Angles": randn(torch, b, L, H, S, dtype=torch.float32),
            "Z": randn(torch, b, L, H, P)}


def plan() -> list[dict]:
    """Every sample measure() takes, without its time (for `perfbench calibrate`'s time estimate)."""
    spec = BUILTIN_LAYERS["mamba3"]
    prefill = [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": ["mamba3_siso_fwd"], "mode": "eager"}
               for b, L in PREFILL_SIZES]
    decode = [{"spec": spec, "phase": "decode", "batch": b, "seqlen": 1024, "ops": ["mamba3_siso_step"], "mode": mode}
              for b in DECODE_BATCHES for mode in ("graph", "eager")]
    return prefill + decode


def measure(bench: KernelBench) -> None:
    from mamba_ssm.ops.triton.mamba3.angle_dt import angle_dt_fwd
    from mamba_ssm.ops.triton.mamba3.mamba3_siso_fwd import mamba3_siso_fwd
    from mamba_ssm.ops.triton.mamba3.mamba3_siso_step import mamba3_siso_step

    torch, timer, spec = bench.torch, bench.timer, BUILTIN_LAYERS["mamba3"]
    H, P, N, S, G = spec.nheads, spec.headdim, spec.d_state, spec.num_rope_angles, spec.ngroups
    q_bias = torch.ones(H, N, device="cuda", dtype=torch.float32)
    k_bias = torch.ones(H, N, device="cuda", dtype=torch.float32)
    D = torch.ones(H, device="cuda", dtype=torch.float32)
    for b, L in PREFILL_SIZES:
        x = _prefill_inputs(torch, spec, b, L)
        angles, _ = angle_dt_fwd(x["Angles"], x["DT"], init_state=None, chunk_size=spec.chunk_size,
                                 return_output_state=True)
        t = timer(lambda: mamba3_siso_fwd(x["Q"], x["K"], x["V"], x["ADT"], x["DT"], x["Trap"], q_bias, k_bias, angles,
                                          D, x["Z"], None, chunk_size=spec.chunk_size, store_states_adt_outv=False,
                                          return_final_states=False), graph=False)
        bench.add(MAMBA3_CHUNK, {"layer": "mamba3", "phase": "prefill", "batch": b, "seqlen": L,
                                 "ops": ["mamba3_siso_fwd"], "time_s": t})
        bench.log(f"  mamba3_siso_fwd b={b} L={L}: {t * 1e3:.3f} ms")
    for b in DECODE_BATCHES:
        def make(b=b):
            states = (randn(torch, b, H, S, dtype=torch.float32), randn(torch, b, H, P, N, dtype=torch.float32),
                      randn(torch, b, H, N), randn(torch, b, H, P))
            q, k, v, z = randn(torch, b, G, N), randn(torch, b, G, N), randn(torch, b, H, P), randn(torch, b, H, P)
            adt = -randn(torch, b, H, dtype=torch.float32, scale=0.1).abs()
            dt, trap = randn(torch, b, H, dtype=torch.float32, scale=0.1).abs(), randn(torch, b, H)
            angles = randn(torch, b, H, S)
            return lambda: mamba3_siso_step(q, k, v, adt, dt, trap, q_bias, k_bias, angles, D=D, Z=z,
                                            Input_States=states)
        time_decode_step(bench, MAMBA3_STEP, "mamba3", "mamba3_siso_step", b, make, 2 * 4 * b * H * P * N)
