"""RoPE as the attention layer applies it (models.reference's rotate-half on q and k)."""

from __future__ import annotations

from analytic.ops import ROPE
from models.registry import BUILTIN_LAYERS
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import PREFILL_SIZES, KernelBench

NAME = "rope"
CLASSES = (ROPE,)


def measure(bench: KernelBench) -> None:
    from models.reference import apply_rope, rope_tables  # torch: the family table loads without it

    torch, timer = bench.torch, bench.timer
    spec = BUILTIN_LAYERS["attention-mha"]
    # The layer's own rotate-half code on q and k laid out as its QKV projection leaves them.
    for b, L in PREFILL_SIZES[:7] + ((1, 1), (3, 1), (12, 1), (48, 1)):
        qkv = randn(torch, b, L, spec.qkv_dim)
        q, k, _ = torch.split(qkv, [spec.q_dim, spec.kv_dim, spec.kv_dim], dim=-1)
        q = q.unflatten(-1, (spec.n_heads, spec.head_dim))
        k = k.unflatten(-1, (spec.n_kv_heads, spec.head_dim))
        cos, sin = rope_tables(spec, torch.arange(L, device="cuda"), torch.bfloat16)
        t = timer(lambda: (apply_rope(q, cos, sin), apply_rope(k, cos, sin)))
        phase = "prefill" if L > 1 else "decode"
        bench.add(ROPE, {"layer": "attention-mha", "phase": phase, "batch": b, "seqlen": L if L > 1 else 1024,
                         "ops": ["rope"], "time_s": t})
    bench.log(f"  rope: {bench.count(ROPE)} samples")
