"""Analytic FLOP counts vs torch.utils.flop_counter.FlopCounterMode on real torch modules.

FlopCounterMode counts matrix products (mm/addmm/bmm/convolution and the fused SDPA kernels it
knows), not elementwise work; so the comparisons are with the analytic GEMM ops, the attention
core and the conv1d op, all at small sizes run on the CPU (and at the 8B sizes on the `meta`
device, where only shapes are propagated).

What FlopCounterMode counts for attention (torch 2.13, checked when this test was written):
  - The CPU's default SDPA kernel (`_scaled_dot_product_flash_attention_for_cpu`) has no FLOP
    formula registered and counts 0, so the tests force the MATH backend. MATH computes QK^T and
    PV as two full bmm's and applies the causal mask afterwards, so it counts the *non-causal*
    4 * B * H * L * S * hd whether or not `is_causal` is set; with GQA (`enable_gqa=True`) K and V
    are expanded to the query heads first, so FLOPs go with query heads, not KV heads.
  - The analytic core counts the causal lower triangle, diagonal included:
        analytic_causal = full * (L + 1) / (2 L),
    and the FlashAttention tile count (128 x 128 tiles, diagonal tiles in full) for L = n * 128:
        tile_flops = full * (n + 1) / (2 n).
  - Decode (one query against L cached + 1 new token) has no mask: counts agree exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytic.costs import attention as attn_costs
from analytic.costs import layer_ops
from analytic.ops import ATTN_DECODE, ATTN_PREFILL, CONV1D, GEMM
from models.registry import get_layer
from models.specs import AttentionSpec, Mamba2Spec, MambaSpec, MLPSpec


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _ops(spec, phase, b, L):
    return layer_ops(spec, phase, np.array([float(b)]), np.array([float(L)]))


def _sum(ops, op_class, attr="flops") -> float:
    return float(sum(getattr(op, attr)[0] for op in ops if op.op_class == op_class))


def _counted(torch, fn) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return {str(k).split(".")[1]: v for k, v in counter.get_flop_counts()["Global"].items()}


# ---------------------------------------------------------------------------------------------
# Modules (the real computation, small)


def mlp_module(torch, s: MLPSpec):
    nn = torch.nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(s.d_model, s.fc1_out, bias=s.bias)
            self.fc2 = nn.Linear(s.ffn_hidden, s.d_model, bias=s.bias)

        def forward(self, x):
            h = self.fc1(x)
            if s.gated:
                a, g = h.chunk(2, dim=-1)
                h = torch.nn.functional.silu(a) * g
            else:
                h = torch.relu(h).square()  # squared ReLU (Megatron)
            return self.fc2(h)

    return MLP()


def attention_module(torch, s: AttentionSpec):
    nn, F = torch.nn, torch.nn.functional

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.wqkv = nn.Linear(s.d_model, s.qkv_dim, bias=s.bias)
            self.wo = nn.Linear(s.q_dim, s.d_model, bias=s.bias)

        def forward(self, x, k_cache=None, v_cache=None):
            b, t, _ = x.shape
            q, k, v = self.wqkv(x).split([s.q_dim, s.kv_dim, s.kv_dim], dim=-1)
            q = q.view(b, t, s.n_heads, s.head_dim).transpose(1, 2)
            k = k.view(b, t, s.n_kv_heads, s.head_dim).transpose(1, 2)
            v = v.view(b, t, s.n_kv_heads, s.head_dim).transpose(1, 2)
            if k_cache is not None:  # decode: append the new token to the cache
                k, v = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=k_cache is None,
                                               enable_gqa=s.n_kv_heads != s.n_heads)
            return self.wo(o.transpose(1, 2).reshape(b, t, s.q_dim))

    return Attention()


def math_sdpa(torch):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


SMALL_MLPS = [MLPSpec(d_model=64, ffn_hidden=256),
              MLPSpec(d_model=48, ffn_hidden=80, gated=True, activation="silu")]
SMALL_ATTENTION = [AttentionSpec(d_model=64, n_heads=4, n_kv_heads=2, head_dim=16),
                   AttentionSpec(d_model=64, n_heads=4, n_kv_heads=4, head_dim=16),
                   AttentionSpec(d_model=96, n_heads=6, n_kv_heads=1, head_dim=8)]


# ---------------------------------------------------------------------------------------------
# MLP


@pytest.mark.parametrize("spec", SMALL_MLPS, ids=["squared_relu", "gated_silu"])
@pytest.mark.parametrize("b,L", [(1, 7), (3, 32)])
def test_mlp_prefill_gemm_flops_match_flop_counter(torch, spec, b, L):
    module = mlp_module(torch, spec)
    counted = _counted(torch, lambda: module(torch.randn(b, L, spec.d_model)))
    assert sum(counted.values()) == _sum(_ops(spec, "prefill", b, L), GEMM)


@pytest.mark.parametrize("spec", SMALL_MLPS, ids=["squared_relu", "gated_silu"])
def test_mlp_decode_gemm_flops_match_flop_counter(torch, spec):
    b = 5
    module = mlp_module(torch, spec)
    counted = _counted(torch, lambda: module(torch.randn(b, 1, spec.d_model)))
    assert sum(counted.values()) == _sum(_ops(spec, "decode", b, 1000), GEMM)


def test_mlp_8b_prefill_gemm_flops_match_flop_counter_on_meta(torch):
    spec = get_layer("mlp")
    with torch.device("meta"):
        module = mlp_module(torch, spec)
        x = torch.empty(2, 1024, spec.d_model)
    counted = _counted(torch, lambda: module(x))
    assert sum(counted.values()) == _sum(_ops(spec, "prefill", 2, 1024), GEMM)


# ---------------------------------------------------------------------------------------------
# Attention


def _full_attention_flops(s: AttentionSpec, b: int, L: int, S: int) -> int:
    """QK^T and PV over every (query, key) pair of the query heads: 2 bmm's of 2*hd per pair."""
    return 4 * b * s.n_heads * L * S * s.head_dim


@pytest.mark.parametrize("spec", SMALL_ATTENTION, ids=["gqa", "mha", "mqa"])
@pytest.mark.parametrize("b,L", [(1, 16), (2, 33)])
def test_attention_prefill_projection_flops_match_flop_counter(torch, spec, b, L):
    module = attention_module(torch, spec)
    with math_sdpa(torch):
        counted = _counted(torch, lambda: module(torch.randn(b, L, spec.d_model)))
    assert counted["mm"] == _sum(_ops(spec, "prefill", b, L), GEMM)


@pytest.mark.parametrize("spec", SMALL_ATTENTION, ids=["gqa", "mha", "mqa"])
@pytest.mark.parametrize("b,L", [(1, 16), (2, 33)])
def test_flop_counter_counts_math_sdpa_as_full_attention_over_query_heads(torch, spec, b, L):
    module = attention_module(torch, spec)
    with math_sdpa(torch):
        counted = _counted(torch, lambda: module(torch.randn(b, L, spec.d_model)))
    assert counted["bmm"] == _full_attention_flops(spec, b, L, L)


@pytest.mark.parametrize("spec", SMALL_ATTENTION, ids=["gqa", "mha", "mqa"])
@pytest.mark.parametrize("b,L", [(1, 16), (2, 33), (3, 128)])
def test_analytic_causal_core_is_counted_full_attention_times_lower_triangle(torch, spec, b, L):
    module = attention_module(torch, spec)
    with math_sdpa(torch):
        counted = _counted(torch, lambda: module(torch.randn(b, L, spec.d_model)))
    core = _sum(_ops(spec, "prefill", b, L), ATTN_PREFILL)
    assert core == pytest.approx(counted["bmm"] * (L + 1) / (2 * L), rel=1e-12)


@pytest.mark.parametrize("n_tiles", [1, 2, 3])
def test_flash_tile_flops_relate_to_full_attention(torch, n_tiles):
    spec = SMALL_ATTENTION[0]
    b, L = 1, n_tiles * attn_costs.TILE
    module = attention_module(torch, spec)
    with math_sdpa(torch):
        counted = _counted(torch, lambda: module(torch.randn(b, L, spec.d_model)))
    core = next(op for op in _ops(spec, "prefill", b, L) if op.op_class == ATTN_PREFILL)
    assert float(core.shape["tile_flops"][0]) == counted["bmm"] * (n_tiles + 1) / (2 * n_tiles)


@pytest.mark.parametrize("spec", SMALL_ATTENTION, ids=["gqa", "mha", "mqa"])
@pytest.mark.parametrize("b,context", [(1, 15), (4, 40)])
def test_attention_decode_flops_match_flop_counter(torch, spec, b, context):
    module = attention_module(torch, spec)
    k_cache = torch.randn(b, spec.n_kv_heads, context, spec.head_dim)
    v_cache = torch.randn(b, spec.n_kv_heads, context, spec.head_dim)
    with math_sdpa(torch):
        counted = _counted(torch, lambda: module(torch.randn(b, 1, spec.d_model), k_cache, v_cache))
    ops = _ops(spec, "decode", b, context)
    assert counted["bmm"] == _sum(ops, ATTN_DECODE)  # one query, context + 1 keys, no mask
    assert counted["mm"] == _sum(ops, GEMM)


def test_attention_8b_gqa_prefill_flops_match_flop_counter_on_meta(torch):
    spec, b, L = get_layer("attention"), 1, 1024
    with torch.device("meta"):
        module = attention_module(torch, spec)
        x = torch.empty(b, L, spec.d_model)
    counted = _counted(torch, lambda: module(x))  # meta SDPA decomposes into two bmm's
    ops = _ops(spec, "prefill", b, L)
    assert counted["mm"] == _sum(ops, GEMM)
    assert _sum(ops, ATTN_PREFILL) == counted["bmm"] * (L + 1) / (2 * L)


# ---------------------------------------------------------------------------------------------
# Mamba projections and conv1d (the scans themselves are not torch ops FlopCounterMode knows)


def mamba_projections(torch, s: MambaSpec, x):
    """Mamba-1's GEMMs and conv1d in the order `mamba_inner_fn` runs them."""
    nn = torch.nn
    b, L, _ = x.shape
    di = s.d_inner
    in_proj = nn.Linear(s.d_model, 2 * di, bias=False)
    conv = nn.Conv1d(di, di, s.d_conv, groups=di, padding=s.d_conv - 1, bias=True)
    x_proj = nn.Linear(di, s.dt_rank + 2 * s.d_state, bias=False)
    dt_proj = nn.Linear(s.dt_rank, di, bias=False)  # the bias is added inside the scan
    out_proj = nn.Linear(di, s.d_model, bias=False)
    xz = in_proj(x)
    u = conv(xz[..., :di].transpose(1, 2))[..., :L].transpose(1, 2)
    dbc = x_proj(u)
    dt_proj(dbc[..., :s.dt_rank])
    return out_proj(u)  # stands in for the scan output: same shape


def mamba2_projections(torch, s: Mamba2Spec, x):
    nn = torch.nn
    L = x.shape[1]
    in_proj = nn.Linear(s.d_model, s.d_in_proj, bias=False)
    conv = nn.Conv1d(s.conv_dim, s.conv_dim, s.d_conv, groups=s.conv_dim, padding=s.d_conv - 1)
    out_proj = nn.Linear(s.d_inner, s.d_model, bias=False)
    zxbcdt = in_proj(x)
    xbc = zxbcdt[..., s.d_inner:s.d_inner + s.conv_dim]
    conv(xbc.transpose(1, 2))[..., :L]
    return out_proj(zxbcdt[..., :s.d_inner])


SMALL_MAMBA = MambaSpec(d_model=32, d_state=8, dt_rank=4)
SMALL_MAMBA2 = Mamba2Spec(d_model=32, d_state=8, headdim=16, ngroups=2, chunk_size=16)


@pytest.mark.parametrize("spec,build", [(SMALL_MAMBA, mamba_projections),
                                        (SMALL_MAMBA2, mamba2_projections)], ids=["mamba", "mamba2"])
@pytest.mark.parametrize("b,L", [(1, 16), (2, 40)])
def test_mamba_gemm_flops_match_flop_counter(torch, spec, build, b, L):
    counted = _counted(torch, lambda: build(torch, spec, torch.randn(b, L, spec.d_model)))
    assert counted["mm"] == _sum(_ops(spec, "prefill", b, L), GEMM)


@pytest.mark.parametrize("spec,build", [(SMALL_MAMBA, mamba_projections),
                                        (SMALL_MAMBA2, mamba2_projections)], ids=["mamba", "mamba2"])
@pytest.mark.parametrize("b,L", [(1, 16), (2, 40)])
def test_conv1d_flops_match_flop_counter_without_the_padded_tail(torch, spec, build, b, L):
    # nn.Conv1d with padding d_conv-1 computes L + d_conv - 1 outputs and the layer keeps the
    # first L; causal_conv1d computes exactly L. So counted = analytic * (L + d_conv - 1) / L.
    counted = _counted(torch, lambda: build(torch, spec, torch.randn(b, L, spec.d_model)))
    conv = _sum(_ops(spec, "prefill", b, L), CONV1D)
    assert counted["convolution"] == pytest.approx(conv * (L + spec.d_conv - 1) / L, rel=1e-12)


@pytest.mark.parametrize("name,build", [("mamba", mamba_projections), ("mamba2", mamba2_projections)])
def test_mamba_8b_gemm_flops_match_flop_counter_on_meta(torch, name, build):
    spec, b, L = get_layer(name), 2, 512
    with torch.device("meta"):
        counted = _counted(torch, lambda: build(torch, spec, torch.empty(b, L, spec.d_model)))
    assert counted["mm"] == _sum(_ops(spec, "prefill", b, L), GEMM)


def test_gated_mlp_activation_bytes_are_what_the_reference_layers_kernels_move(torch):
    """The act_gate op's bytes equal the elements the reference MLP's elementwise kernels read and
    write between fc1 and fc2 (act(gate) over a strided view, then the product with up), counted by
    a dispatch mode on the CPU in bf16."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from models.reference import RefMLP

    spec = MLPSpec(d_model=32, ffn_hidden=48, gated=True, activation="silu")
    moved = []

    class CountElementwise(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.__name__.split(".")[0]
            if name in ("silu", "mul"):
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                moved.append(sum(t.numel() * t.element_size() for t in tensors) + out.numel() * out.element_size())
            return out

    b, L = 2, 5
    layer = RefMLP(spec, dtype=torch.bfloat16)
    x = torch.randn(b, L, spec.d_model, dtype=torch.bfloat16)
    with torch.no_grad(), CountElementwise():
        layer(x)
    act = [op for op in _ops(spec, "prefill", b, L) if op.name == "act_gate"]
    assert len(moved) == 2 and len(act) == 1
    assert float(act[0].bytes_[0]) == sum(moved)
