"""Causal FlashAttention-2 prefill (SDPA's flash backend) on the built-in GQA and MHA layers."""

from __future__ import annotations

from analytic.ops import ATTN_PREFILL
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import POWER_LIMITED_MIN_S, randn, time_power_limited
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench

NAME = "attention_prefill"
CLASSES = (ATTN_PREFILL,)


def measure(bench: KernelBench) -> None:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch, timer = bench.torch, bench.timer
    for layer in ("attention", "attention-mha"):
        spec = BUILTIN_LAYERS[layer]
        H, Hkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
        gqa = Hkv != H
        for b, L in PREFILL_SIZES[:7]:
            q = randn(torch, b, H, L, hd)
            k = randn(torch, b, Hkv, L, hd)
            v = randn(torch, b, Hkv, L, hd)

            def flash():
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
            t = timer(flash, graph=False)
            if t > POWER_LIMITED_MIN_S:  # long enough to draw the board's limit, as GEMMs do
                t = time_power_limited(timer, flash, graph=False)
            bench.add(ATTN_PREFILL, {"layer": layer, "phase": "prefill", "batch": b, "seqlen": L,
                                     "ops": ["flash_attention"], "time_s": t})
            bench.log(f"  {layer} prefill b={b} L={L}: {t * 1e3:.3f} ms")
