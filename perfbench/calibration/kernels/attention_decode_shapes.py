"""FlashAttention decode over head dim (64, 128, 256) and query/KV-head ratio (1-8), timed as
`attention_decode` is (Timer.point): the key block (256/128/64 keys by head dim), the CTAs
(batch x KV heads) and the split-KV heuristic all move with these."""

from __future__ import annotations

from models.specs import AttentionSpec
from perfbench.calibration.kernels.attention_decode import MAX_KV_BYTES, cache_bytes, time_decode
from perfbench.calibration.kernels.attention_prefill_shapes import SPECS as PREFILL_SPECS
from perfbench.calibration.kernels.common import KernelBench

NAME = "attention_decode_shapes"
CLASSES = (NAME,)
SPECS = (*PREFILL_SPECS, AttentionSpec(d_model=4096, n_heads=32, n_kv_heads=16, head_dim=128))
POINTS = ((1, 2100), (3, 6144), (12, 1536), (34, 3072), (96, 768), (9, 12288))  # (batch, context)


def measure(bench: KernelBench) -> None:
    for spec in SPECS:
        for b, ctx in POINTS:
            if cache_bytes(b, ctx, spec) > MAX_KV_BYTES:
                continue
            t = time_decode(bench, spec, b, ctx)
            bench.add_spec(NAME, spec, {"phase": "decode", "batch": b, "seqlen": ctx, "ops": ["attention_decode"],
                                        "time_s": t, "timing": "point"})
        bench.log(f"  attention decode hd={spec.head_dim} heads={spec.n_heads}/{spec.n_kv_heads}: done")


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [{"spec": spec, "phase": "decode", "batch": b, "seqlen": ctx, "ops": ["attention_decode"], "timing": "point"}
            for spec in SPECS for b, ctx in POINTS
            if cache_bytes(b, ctx, spec) <= MAX_KV_BYTES]
