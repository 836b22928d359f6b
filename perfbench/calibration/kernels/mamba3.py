"""Mamba-3's SISO kernels alone (mamba_ssm 2.3.2 `ops/triton/mamba3/`): the chunked prefill kernel
`mamba3_siso_fwd` (after `angle_dt_fwd`, untimed) and the Triton decode step `mamba3_siso_step`, at the
8B layer's shapes (analytic/costs/mamba3.py: families mamba3_chunk and mamba3_step).

The prefill call stores the per-chunk states, Out_v and the decay as the layer's call does
(`store_states_adt_outv=True`: analytic/costs/mamba3.py says why), so it times the state store's memset
(`chunk_state_zeros`) with the kernel. `prefill_call` and `step_call` serve the `mamba3_shapes` spread too."""

from __future__ import annotations

from analytic.costs.mamba3 import STORES_BACKWARD_STATES
from analytic.ops import MAMBA3_CHUNK, MAMBA3_STEP
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench, time_decode_step

NAME = "mamba3"
CLASSES = (MAMBA3_CHUNK, MAMBA3_STEP)
DECODE_BATCHES = (1, 3, 12, 48, 96)
CHUNK_OPS = ["chunk_state_zeros", "mamba3_siso_fwd"] if STORES_BACKWARD_STATES else ["mamba3_siso_fwd"]
STEP_OPS = ["mamba3_siso_step"]
# The kernel each phase's log line names (calibration/from_log.py reads a killed run's log back).
LOG_NAMES = {"prefill": "mamba3_siso_fwd", "decode": STEP_OPS[0]}
# The first prefill call autotunes mamba3_siso_fwd's 27 configurations for the 8B key: about 40 s on an H100
# (the layer's first call took 55 s with angle_dt's 9; results h100-new-mixers `first_call_ms`).
SETUP_S = 40.0


def _biases(torch, spec):
    H, N = spec.nheads, spec.d_state
    return (torch.ones(H, N, device="cuda", dtype=torch.float32), torch.ones(H, N, device="cuda", dtype=torch.float32),
            torch.ones(H, device="cuda", dtype=torch.float32))


def prefill_call(torch, spec, b: int, L: int):
    """A no-argument call of `mamba3_siso_fwd` on `spec`'s shapes, inputs as `mamba3_siso_combined` passes
    them: Q, K (B, L, G, N); V, Z (B, L, H, P); ADT, DT, Trap (B, H, L); the angles' cumsum (B, L, H, S) fp32."""
    from mamba_ssm.ops.triton.mamba3.angle_dt import angle_dt_fwd
    from mamba_ssm.ops.triton.mamba3.mamba3_siso_fwd import mamba3_siso_fwd

    H, P, N, S, G = spec.nheads, spec.headdim, spec.d_state, spec.num_rope_angles, spec.ngroups
    q_bias, k_bias, D = _biases(torch, spec)
    q, k, v, z = randn(torch, b, L, G, N), randn(torch, b, L, G, N), randn(torch, b, L, H, P), randn(torch, b, L, H, P)
    adt = -randn(torch, b, H, L, dtype=torch.float32, scale=0.1).abs()
    dt = randn(torch, b, H, L, dtype=torch.float32, scale=0.1).abs()
    trap = randn(torch, b, H, L)
    angles, _ = angle_dt_fwd(randn(torch, b, L, H, S, dtype=torch.float32), dt, init_state=None,
                             chunk_size=spec.chunk_size, return_output_state=True)
    return lambda: mamba3_siso_fwd(q, k, v, adt, dt, trap, q_bias, k_bias, angles, D, z, None,
                                   chunk_size=spec.chunk_size, store_states_adt_outv=STORES_BACKWARD_STATES,
                                   return_final_states=False)


def step_call(torch, spec, b: int):
    """A no-argument call of `mamba3_siso_step` on fresh inputs and states of `spec` at batch `b`."""
    from mamba_ssm.ops.triton.mamba3.mamba3_siso_step import mamba3_siso_step

    H, P, N, S, G = spec.nheads, spec.headdim, spec.d_state, spec.num_rope_angles, spec.ngroups
    q_bias, k_bias, D = _biases(torch, spec)
    states = (randn(torch, b, H, S, dtype=torch.float32), randn(torch, b, H, P, N, dtype=torch.float32),
              randn(torch, b, H, N), randn(torch, b, H, P))
    q, k, v, z = randn(torch, b, G, N), randn(torch, b, G, N), randn(torch, b, H, P), randn(torch, b, H, P)
    adt = -randn(torch, b, H, dtype=torch.float32, scale=0.1).abs()
    dt, trap = randn(torch, b, H, dtype=torch.float32, scale=0.1).abs(), randn(torch, b, H)
    angles = randn(torch, b, H, S)
    return lambda: mamba3_siso_step(q, k, v, adt, dt, trap, q_bias, k_bias, angles, D=D, Z=z, Input_States=states)


def state_bytes(spec, b: int) -> float:
    """The fp32 SSM state one step reads and writes."""
    return 2 * 4 * b * spec.nheads * spec.headdim * spec.d_state


def plan() -> list[dict]:
    """Every sample measure() takes, without its time (for `perfbench calibrate`'s time estimate)."""
    spec = BUILTIN_LAYERS["mamba3"]
    prefill = [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": CHUNK_OPS, "mode": "eager"}
               for b, L in PREFILL_SIZES]
    decode = [{"spec": spec, "phase": "decode", "batch": b, "seqlen": 1024, "ops": STEP_OPS, "mode": mode}
              for b in DECODE_BATCHES for mode in ("graph", "eager")]
    return prefill + decode


def measure(bench: KernelBench) -> None:
    torch, timer, spec = bench.torch, bench.timer, BUILTIN_LAYERS["mamba3"]
    for b, L in PREFILL_SIZES:
        t = timer(prefill_call(torch, spec, b, L), graph=False)
        bench.add(MAMBA3_CHUNK, {"layer": "mamba3", "phase": "prefill", "batch": b, "seqlen": L, "ops": CHUNK_OPS,
                                 "time_s": t})
        bench.log(f"  {LOG_NAMES['prefill']} b={b} L={L}: {t * 1e3:.3f} ms")
    for b in DECODE_BATCHES:
        time_decode_step(bench, MAMBA3_STEP, "mamba3", STEP_OPS[0], b, lambda b=b: step_call(torch, spec, b),
                         state_bytes(spec, b))
