"""Gated DeltaNet's chunked prefill and decode step over their hyper-parameters: key and value heads
(the value/key head ratio 1 and 2), head dims 128 and 256, at batches and lengths that leave the
state-passing kernel's B x Hv x Dv/64 sequence-long programs under one wave and over several
(analytic.families.chunk_programs), and decode batches across the step's waves.

fla autotunes each chunk kernel per key (H, HV, K, V, chunk size): 4 to 12 configurations a kernel,
cached on disk by `fla_cache_autotune`. The spread holds three keys: the 8B layer's (16, 32, 128, 128)
(also Qwen3-Next's and the d_model 2048 what-if's), a small layer's (8, 8, 128, 128) and head dims
256 (4, 8, 256, 256). KEY_SETUP_S is an estimate (no first-call time of fla's kernels is recorded yet)."""

from __future__ import annotations

from models.specs import GatedDeltaNetSpec
from perfbench.calibration.bench import rotation
from perfbench.calibration.kernels.common import KernelBench
from perfbench.calibration.kernels.gdn import CHUNK_OPS, STEP_OPS, chunk_call, state_bytes, step_call

NAME = "gdn_shapes"
CLASSES = (NAME,)
SPECS = (GatedDeltaNetSpec(d_model=4096), GatedDeltaNetSpec(d_model=1024, n_k_heads=8, n_v_heads=8),
         GatedDeltaNetSpec(d_model=2048, n_k_heads=4, n_v_heads=8, head_k_dim=256, head_v_dim=256))
SIZES = ((1, 1536), (3, 3072), (8, 2048))  # programs of the state passing: 16-512
DECODE_BATCHES = (2, 24)
KEY_SETUP_S = 15.0  # estimate per key (module docstring)


def autotune_keys(specs) -> set:
    """The distinct (key heads, value heads, key dim, value dim, chunk size) fla's kernels tune for."""
    return {(s.n_k_heads, s.n_v_heads, s.head_k_dim, s.head_v_dim, s.chunk_size) for s in specs}


SETUP_S = KEY_SETUP_S * len(autotune_keys(SPECS))


def plan(specs=None) -> list[dict]:
    """Every sample measure() takes, without its time."""
    specs = SPECS if specs is None else specs
    prefill = [{"spec": s, "phase": "prefill", "batch": b, "seqlen": L, "ops": CHUNK_OPS, "mode": "eager"}
               for s in specs for b, L in SIZES]
    decode = [{"spec": s, "phase": "decode", "batch": b, "seqlen": 1024, "ops": STEP_OPS, "mode": "graph"}
              for s in specs for b in DECODE_BATCHES]
    return prefill + decode


def measure(bench: KernelBench, specs=None) -> None:
    """`specs`: the layer specs to time (default SPECS)."""
    torch, timer = bench.torch, bench.timer
    for spec in (SPECS if specs is None else specs):
        label = f"k_heads={spec.n_k_heads} v_heads={spec.n_v_heads} dk={spec.head_k_dim} dv={spec.head_v_dim}"
        for b, L in SIZES:
            t = timer(chunk_call(torch, spec, b, L), graph=False)
            bench.add_spec(NAME, spec, {"phase": "prefill", "batch": b, "seqlen": L, "ops": CHUNK_OPS, "time_s": t})
            bench.log(f"  chunk_gated_delta_rule {label} b={b} L={L}: {t * 1e3:.3f} ms")
        for b in DECODE_BATCHES:
            run_all, copies = rotation(lambda b=b: step_call(torch, spec, b), state_bytes(spec, b))
            t = timer(run_all) / copies
            bench.add_spec(NAME, spec, {"phase": "decode", "batch": b, "seqlen": 1024, "ops": STEP_OPS, "time_s": t})
            bench.log(f"  fused_recurrent_gated_delta_rule {label} b={b}: {t * 1e6:.1f} us")
