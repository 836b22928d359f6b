"""Mamba-3's chunk kernel and decode step over their hyper-parameters: heads (d_model 1024-4096: 32-128), B/C
groups, RoPE fraction, and d_state 64 beside the 8B layer's 128, at batches and lengths that leave the
chunk kernel's B x H sequence-long programs under one wave, near one and over several
(analytic.families.chunk_programs), and decode batches across the step's waves.

`mamba3_siso_fwd` autotunes 27 configurations (3 stages x 3 warps x 3 register caps) per key
(CHUNK_SIZE, HEADDIM_QK = next_pow2(d_state), HEADDIM_V = next_pow2(headdim), and flags); heads,
groups, angles, batch and length are not in the key. The 8B layer's first call on an H100 took 55 s
(results h100-new-mixers, `first_call_ms`, with angle_dt's 9 configurations): about 40 s a key. So the
spread holds two keys, the 8B layer's (64, 128, 64), which the `mamba3` family tunes first, and
(64, 64, 64): about 46 s in all. Head dim 128 and d_state 256 each add a key (EXTRA_SPECS: pass them
as `specs`, as a targeted calibration passes its model's)."""

from __future__ import annotations

from models.registry import BUILTIN_LAYERS
from models.specs import Mamba3Spec
from perfbench.calibration.kernels.common import ChunkAndStep, KernelBench, chunk_and_step_plan, measure_chunk_and_step
from perfbench.calibration.kernels.mamba3 import SETUP_S as KEY_SETUP_S, CHUNK_OPS, STEP_OPS, prefill_call, state_bytes, step_call

NAME = "mamba3_shapes"
CLASSES = (NAME,)
# Off the held-out what-if layers (benchmarks/whatif/new_mixers.toml: d_model 2048 and 1536).
SPECS = (Mamba3Spec(d_model=4096), Mamba3Spec(d_model=3072), Mamba3Spec(d_model=1024, ngroups=4),
         Mamba3Spec(d_model=4096, rope_fraction=1.0),
         Mamba3Spec(d_model=3072, d_state=64), Mamba3Spec(d_model=4096, d_state=64, ngroups=2))
EXTRA_SPECS = (Mamba3Spec(d_model=4096, headdim=128), Mamba3Spec(d_model=2048, d_state=256))
SIZES = ((1, 1536), (3, 3072), (8, 2048))  # B x H programs: 16-1024, one to eight waves
DECODE_BATCHES = (2, 24)


def autotune_keys(specs) -> set:
    """The distinct (chunk size, next_pow2(d_state), next_pow2(headdim)) the chunk kernel tunes for."""
    return {(s.chunk_size, 1 << (s.d_state - 1).bit_length(), 1 << (s.headdim - 1).bit_length()) for s in specs}


# The 8B layer's key is tuned by the `mamba3` family, which runs first (in a whole calibration, and with
# `--remeasure mamba3,mamba3_shapes`); each other key tunes here.
SETUP_S = KEY_SETUP_S * len(autotune_keys(SPECS) - autotune_keys([BUILTIN_LAYERS["mamba3"]]))


KERNELS = ChunkAndStep("mamba3_siso_fwd", "mamba3_siso_step", tuple(CHUNK_OPS), tuple(STEP_OPS), prefill_call,
                       step_call, state_bytes,
                       lambda s: f"heads={s.nheads} headdim={s.headdim} d_state={s.d_state} groups={s.ngroups} "
                                 f"rope={s.rope_fraction}")


def plan(specs=None) -> list[dict]:
    """Every sample measure() takes, without its time."""
    return chunk_and_step_plan(KERNELS, SPECS if specs is None else specs, SIZES, DECODE_BATCHES)


def measure(bench: KernelBench, specs=None) -> None:
    """`specs`: the layer specs to time (default SPECS)."""
    measure_chunk_and_step(bench, NAME, KERNELS, SPECS if specs is None else specs, SIZES, DECODE_BATCHES)
