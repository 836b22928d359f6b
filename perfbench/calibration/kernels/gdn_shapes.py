"""Gated DeltaNet's chunked prefill and decode step over their hyper-parameters: key and value heads
(the value/key head ratio 1 and 2), head dims 128 and 256, at batches and lengths that leave the
state-passing kernel's B x Hv x Dv/64 sequence-long programs under one wave and over several
(analytic.families.chunk_programs), and decode batches across the step's waves.

fla autotunes each chunk kernel per key (H, HV, K, V, chunk size): 4 to 12 configurations a kernel,
cached on disk by `fla_cache_autotune`. The spread holds three keys: the 8B layer's (16, 32, 128, 128)
(also Qwen3-Next's and the d_model 2048 what-if's), a small layer's (8, 8, 128, 128) and head dims
256 (4, 8, 256, 256); the `gdn` family tunes the first. KEY_SETUP_S is an estimate (no first-call time
of fla's kernels is recorded yet)."""

from __future__ import annotations

from models.registry import BUILTIN_LAYERS
from models.specs import GatedDeltaNetSpec
from perfbench.calibration.kernels.common import ChunkAndStep, KernelBench, chunk_and_step_plan, measure_chunk_and_step
from perfbench.calibration.kernels.gdn import SETUP_S as KEY_SETUP_S, CHUNK_OPS, STEP_OPS, chunk_call, state_bytes, step_call

NAME = "gdn_shapes"
CLASSES = (NAME,)
SPECS = (GatedDeltaNetSpec(d_model=4096), GatedDeltaNetSpec(d_model=1024, n_k_heads=8, n_v_heads=8),
         GatedDeltaNetSpec(d_model=2048, n_k_heads=4, n_v_heads=8, head_k_dim=256, head_v_dim=256))
SIZES = ((1, 1536), (3, 3072), (8, 2048))  # programs of the state passing: 16-512
DECODE_BATCHES = (2, 24)


def autotune_keys(specs) -> set:
    """The distinct (key heads, value heads, key dim, value dim, chunk size) fla's kernels tune for."""
    return {(s.n_k_heads, s.n_v_heads, s.head_k_dim, s.head_v_dim, s.chunk_size) for s in specs}


# The 8B layer's key is tuned by the `gdn` family, which runs first; each other key tunes here.
SETUP_S = KEY_SETUP_S * len(autotune_keys(SPECS) - autotune_keys([BUILTIN_LAYERS["gdn"]]))


KERNELS = ChunkAndStep("chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", tuple(CHUNK_OPS),
                       tuple(STEP_OPS), chunk_call, step_call, state_bytes,
                       lambda s: f"k_heads={s.n_k_heads} v_heads={s.n_v_heads} dk={s.head_k_dim} dv={s.head_v_dim}")


def plan(specs=None) -> list[dict]:
    """Every sample measure() takes, without its time."""
    return chunk_and_step_plan(KERNELS, SPECS if specs is None else specs, SIZES, DECODE_BATCHES)


def measure(bench: KernelBench, specs=None) -> None:
    """`specs`: the layer specs to time (default SPECS)."""
    measure_chunk_and_step(bench, NAME, KERNELS, SPECS if specs is None else specs, SIZES, DECODE_BATCHES)
