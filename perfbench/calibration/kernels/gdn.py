"""Gated DeltaNet's kernels alone (flash-linear-attention 0.6.0 `ops/gated_delta_rule`): the chunked
prefill (`chunk_gated_delta_rule`: the gate's chunk cumsum, the intra-chunk WY kernel, state passing and
output) and the decode step (`fused_recurrent_gated_delta_rule`, norms and sigmoid inside), at the 8B
layer's shapes (analytic/costs/gdn.py: families gdn_chunk and gdn_step). `chunk_call` and `step_call`
serve the `gdn_shapes` spread too."""

from __future__ import annotations

from analytic.ops import GDN_CHUNK, GDN_STEP
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench, time_decode_step

NAME = "gdn"
CLASSES = (GDN_CHUNK, GDN_STEP)
DECODE_BATCHES = (1, 3, 12, 48, 96)
# q and k given L2-normed, beta as sigmoid(b) and every input contiguous, so the call is the chunk
# algorithm alone: the gate's chunk cumsum and the three chunk kernels (the norms, the sigmoid and fla's
# input copies are elementwise passes, timed at their class).
CHUNK_OPS = ["gdn_gate_cumsum", "gdn_chunk_intra", "gdn_chunk_h", "gdn_chunk_o"]
STEP_OPS = ["gdn_fused_recurrent"]
# The kernel each phase's log line names (calibration/from_log.py reads a killed run's log back).
LOG_NAMES = {"prefill": "chunk_gated_delta_rule", "decode": STEP_OPS[0]}
# The first calls autotune fla's chunk kernels (4 to 12 configurations each) for the 8B key: an estimate,
# no first-call time of fla's kernels is recorded yet.
SETUP_S = 15.0


def _gate(torch, spec) -> dict:
    Hv = spec.n_v_heads
    return {"A_log": torch.log(torch.rand(Hv, device="cuda", dtype=torch.float32) * 15 + 1),
            "dt_bias": torch.randn(Hv, device="cuda", dtype=torch.float32) * 0.1, "use_gate_in_kernel": True}


def chunk_call(torch, spec, b: int, L: int):
    """A no-argument call of `chunk_gated_delta_rule` on `spec`'s shapes (CHUNK_OPS)."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    Hk, Hv, K, V = spec.n_k_heads, spec.n_v_heads, spec.head_k_dim, spec.head_v_dim
    q, k = (torch.nn.functional.normalize(randn(torch, b, L, Hk, K), dim=-1) for _ in range(2))
    v = randn(torch, b, L, Hv, V)
    a, beta = randn(torch, b, L, Hv), torch.sigmoid(randn(torch, b, L, Hv))
    kwargs = _gate(torch, spec)
    return lambda: chunk_gated_delta_rule(q, k, v, g=a, beta=beta, chunk_size=spec.chunk_size, **kwargs)


def step_call(torch, spec, b: int):
    """A no-argument call of `fused_recurrent_gated_delta_rule` on fresh inputs and state at batch `b`."""
    from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule

    Hk, Hv, K, V = spec.n_k_heads, spec.n_v_heads, spec.head_k_dim, spec.head_v_dim
    state = randn(torch, b, Hv, K, V, dtype=torch.float32)
    q, k, v = randn(torch, b, 1, Hk, K), randn(torch, b, 1, Hk, K), randn(torch, b, 1, Hv, V)
    a, beta = randn(torch, b, 1, Hv), randn(torch, b, 1, Hv)
    kwargs = _gate(torch, spec)
    return lambda: fused_recurrent_gated_delta_rule(q, k, v, g=a, beta=beta, initial_state=state,
                                                    output_final_state=True, use_qk_l2norm_in_kernel=True,
                                                    use_beta_sigmoid_in_kernel=True, **kwargs)


def state_bytes(spec, b: int) -> float:
    """The fp32 delta-rule state one step reads and writes."""
    return 2 * 4 * b * spec.n_v_heads * spec.head_k_dim * spec.head_v_dim


def plan() -> list[dict]:
    """Every sample measure() takes, without its time (for `perfbench calibrate`'s time estimate)."""
    spec = BUILTIN_LAYERS["gdn"]
    prefill = [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": CHUNK_OPS, "mode": "eager"}
               for b, L in PREFILL_SIZES]
    decode = [{"spec": spec, "phase": "decode", "batch": b, "seqlen": 1024, "ops": STEP_OPS, "mode": mode}
              for b in DECODE_BATCHES for mode in ("graph", "eager")]
    return prefill + decode


def measure(bench: KernelBench) -> None:
    torch, timer, spec = bench.torch, bench.timer, BUILTIN_LAYERS["gdn"]
    for b, L in PREFILL_SIZES:
        t = timer(chunk_call(torch, spec, b, L), graph=False)
        bench.add(GDN_CHUNK, {"layer": "gdn", "phase": "prefill", "batch": b, "seqlen": L, "ops": CHUNK_OPS,
                              "time_s": t})
        bench.log(f"  {LOG_NAMES['prefill']} b={b} L={L}: {t * 1e3:.3f} ms")
    for b in DECODE_BATCHES:
        time_decode_step(bench, GDN_STEP, "gdn", STEP_OPS[0], b, lambda b=b: step_call(torch, spec, b),
                         state_bytes(spec, b))
