"""FlashAttention-2 decode (SDPA's flash backend, one query row per query head against a KV cache),
timed as `perfbench run` times a decode point: its plain kernel holds the board at its power limit."""

from __future__ import annotations

from analytic.ops import ATTN_DECODE
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn, rotation
from perfbench.calibration.kernels.common import KernelBench

NAME = "attention_decode"
CLASSES = (ATTN_DECODE,)
# Batch x KV heads spans the split-KV regime (few CTAs) to several waves of plain CTAs;
# 2100 and 4200 keys make FlashAttention pick many splits (33 at 4200 for 8 KV heads at
# B <= 2 and for 32 heads at B = 1), so the combine kernel is measured on both layers.
# 9, 34 and 44 put samples between one and two waves of 2 CTAs per SM (264 on 132 SMs)
# for both layers (288 MHA CTAs; 272 and 352 GQA CTAs), where 192 and 384 left a gap.
DECODE_BATCHES = (1, 2, 3, 6, 9, 12, 24, 34, 44, 48, 96)
DECODE_CONTEXTS = (768, 1536, 2100, 3072, 4200, 6144, 12288)
MAX_KV_BYTES = 4e9


def cache_bytes(batch: int, ctx: int, spec) -> int:
    """bf16 K and V of `ctx` cached tokens and the new one, for every KV head."""
    return batch * (ctx + 1) * spec.n_kv_heads * spec.head_dim * 2 * 2


def time_decode(bench: KernelBench, spec, batch: int, ctx: int) -> float:
    """Seconds of one SDPA decode call against a `ctx`-token cache, on rotated caches, timed as
    `perfbench run` times a decode point (Timer.point)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch, H, Hkv, hd = bench.torch, spec.n_heads, spec.n_kv_heads, spec.head_dim

    def make():
        # As models.torch_layers runs it: the G query heads of a KV head as G query rows.
        q = randn(torch, batch, Hkv, H // Hkv, hd)
        k, v = randn(torch, batch, Hkv, ctx + 1, hd), randn(torch, batch, Hkv, ctx + 1, hd)

        def call():
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v)
        return call
    run_all, copies = rotation(make, cache_bytes(batch, ctx, spec))
    return bench.timer.point(run_all) / copies


def measure(bench: KernelBench) -> None:
    for layer in ("attention", "attention-mha"):
        spec = BUILTIN_LAYERS[layer]
        for b in DECODE_BATCHES:
            for ctx in DECODE_CONTEXTS:
                if cache_bytes(b, ctx, spec) > MAX_KV_BYTES:
                    continue
                t = time_decode(bench, spec, b, ctx)
                bench.add(ATTN_DECODE, {"layer": layer, "phase": "decode", "batch": b, "seqlen": ctx,
                                        "ops": ["attention_decode"], "time_s": t, "timing": "point"})
        bench.log(f"  {layer} decode: {bench.count(ATTN_DECODE)} samples")
