"""Causal FlashAttention prefill over head dim (64, 128, 256) and query/KV-head ratio (1-8): the tile
rate's split into tensor-core FLOPs and softmax scores, and the shared-memory cap on resident CTAs
(analytic.families.attention_prefill)."""

from __future__ import annotations

from models.specs import AttentionSpec
from perfbench.calibration.bench import POWER_LIMITED_MIN_S, randn, time_power_limited
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench

NAME = "attention_prefill_shapes"
CLASSES = (NAME,)
SPECS = (AttentionSpec(d_model=2048, n_heads=32, n_kv_heads=8, head_dim=64),
         AttentionSpec(d_model=1024, n_heads=16, n_kv_heads=16, head_dim=64),
         AttentionSpec(d_model=4096, n_heads=32, n_kv_heads=4, head_dim=128),
         AttentionSpec(d_model=4096, n_heads=16, n_kv_heads=2, head_dim=256),
         AttentionSpec(d_model=2048, n_heads=8, n_kv_heads=8, head_dim=256))
SIZES = PREFILL_SIZES[:5]


def measure(bench: KernelBench) -> None:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch, timer = bench.torch, bench.timer
    for spec in SPECS:
        H, Hkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
        for b, L in SIZES:
            q, k, v = randn(torch, b, H, L, hd), randn(torch, b, Hkv, L, hd), randn(torch, b, Hkv, L, hd)

            def flash():
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=Hkv != H)
            t = timer(flash, graph=False)
            if t > POWER_LIMITED_MIN_S:
                t = time_power_limited(timer, flash, graph=False)
            bench.add_spec(NAME, spec, {"phase": "prefill", "batch": b, "seqlen": L, "ops": ["flash_attention"],
                                        "time_s": t})
            bench.log(f"  attention prefill hd={hd} heads={H}/{Hkv} b={b} L={L}: {t * 1e3:.3f} ms")
            del q, k, v


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [{"spec": spec, "phase": "prefill", "batch": b, "seqlen": L, "ops": ["flash_attention"], "mode": "eager"}
            for spec in SPECS for b, L in SIZES]
