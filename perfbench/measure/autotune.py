"""Which shape tunes the kernels whose autotuning forgets the shape.

Mamba-3's chunk kernel (`mamba3_siso_fwd`: key chunk size, head dims, flags) and fla's Gated DeltaNet
state passing (`chunk_gated_delta_rule_fwd_kernel_h_blockdim64`: key heads, head dims, chunk) autotune
under keys that hold neither the batch nor the length: the configuration picked at a process's first
call is kept for every shape after it. Picked at another first shape, the same kernel ran the 8B layer's
prefill up to 9 % faster at B >= 4 and 6 % slower at B = 1 (H100 leases of 2026-12-07 06:07Z, first call
B=1 L=512, and 15:17Z, first call 64 tokens). So every process that times them (the harness, the
calibration's families and host chains) first runs them once on the same prompt, the one the bundled
calibration's family samples were tuned on: one sequence of `AUTOTUNE_PROMPT_TOKENS` tokens.
"""

from __future__ import annotations

AUTOTUNE_PROMPT_TOKENS = 384  # perfbench/calibration/kernels/common.py PREFILL_SIZES[0], the families' first call
SHAPELESS_AUTOTUNE_KINDS = ("mamba3", "gdn")

_primed: set = set()


def prime_autotuners(mixers, torch, device="cuda", dtype=None) -> list[str]:
    """Run each mixer of a kind in SHAPELESS_AUTOTUNE_KINDS once on a one-sequence prompt of
    AUTOTUNE_PROMPT_TOKENS tokens, once per spec in this process, before anything is timed. Returns the
    kinds primed now (for the run's record)."""
    done = []
    for mixer in mixers:
        spec = getattr(mixer, "spec", None)
        if spec is None or getattr(spec, "kind", "") not in SHAPELESS_AUTOTUNE_KINDS or spec in _primed:
            continue
        x = torch.randn(1, AUTOTUNE_PROMPT_TOKENS, spec.d_model, device=device, dtype=dtype or torch.bfloat16)
        with torch.inference_mode():
            mixer(x)
        torch.cuda.synchronize()
        _primed.add(spec)
        done.append(spec.kind)
    return done
