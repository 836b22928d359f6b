"""Reference layers (pure torch) and the real attention/MLP on CPU: counts, decode = prefill, real = ref."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from models.reference import apply_rope, build_reference_layer, rope_tables, rotary_dim  # noqa: E402
from models.registry import BUILTIN_LAYERS  # noqa: E402
from models.torch_layers import build_layer, estimate_layer_bytes, randomize_  # noqa: E402

KINDS = ("mamba", "mamba2", "attention", "attention-mha", "mlp", "attention-qkv-bias", "attention-qk-norm",
         "mlp-swiglu")


def _randomized(module, scale=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return module


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", list(BUILTIN_LAYERS))
def test_reference_parameter_count_matches_spec_at_8b_sizes(name):
    layer = build_reference_layer(BUILTIN_LAYERS[name], device="meta")
    assert sum(p.numel() for p in layer.parameters()) == BUILTIN_LAYERS[name].params


@pytest.mark.parametrize("kind", KINDS)
def test_reference_decode_continues_the_prefill(tiny_specs, kind):
    layer = _randomized(build_reference_layer(tiny_specs[kind], dtype=torch.float64))
    x = torch.randn(2, 7, tiny_specs[kind].d_model, dtype=torch.float64)
    with torch.no_grad():
        full = layer(x)
        _, cache = layer.forward_with_cache(x[:, :6])
        step = layer.decode(x[:, 6:], cache)
    assert step.shape == (2, 1, tiny_specs[kind].d_model)
    assert _rel(step, full[:, 6:]) < 1e-10


@pytest.mark.parametrize("kind", ["mamba", "mamba2", "attention"])
def test_reference_is_causal(tiny_specs, kind):
    layer = _randomized(build_reference_layer(tiny_specs[kind], dtype=torch.float64))
    x = torch.randn(1, 6, tiny_specs[kind].d_model, dtype=torch.float64)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, tiny_specs[kind].d_model, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(layer(x)[:, :4], layer(y)[:, :4])
        assert not torch.allclose(layer(x)[:, 4:], layer(y)[:, 4:])


def test_rope_rotates_only_the_rotary_fraction(tiny_specs):
    spec = tiny_specs["attention"]
    rd = rotary_dim(spec)
    assert rd == spec.head_dim // 2
    x = torch.randn(3, spec.n_heads, spec.head_dim, dtype=torch.float64)
    cos, sin = rope_tables(spec, torch.arange(3), torch.float64)
    out = apply_rope(x, cos, sin)
    assert torch.equal(out[..., rd:], x[..., rd:])
    assert torch.equal(out[0], x[0])  # position 0 is the identity rotation
    assert not torch.allclose(out[1:, :, :rd], x[1:, :, :rd])
    assert torch.allclose(out[..., :rd].norm(dim=-1), x[..., :rd].norm(dim=-1))  # a rotation


@pytest.mark.parametrize("kind", ["attention", "attention-mha", "mlp", "attention-qkv-bias", "attention-qk-norm",
                                  "mlp-swiglu"])
def test_real_cpu_layer_matches_reference(tiny_specs, kind):
    spec = tiny_specs[kind]
    ref = _randomized(build_reference_layer(spec, dtype=torch.float64))
    real = build_layer(spec, device="cpu", dtype=torch.float64, attn_backend="math")
    real.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, spec.d_model, dtype=torch.float64)
    with torch.no_grad():
        assert _rel(real(x), ref(x)) < 1e-10
        _, ref_cache = ref.forward_with_cache(x[:, :8])
        cache = real.allocate_cache(2, 8, dtype=torch.float64)
        for mine, theirs in zip(cache, ref_cache):
            mine.copy_(theirs)
        assert _rel(real.decode(x[:, 8:], cache), ref(x)[:, 8:]) < 1e-10


def test_real_attention_decode_writes_the_new_token_into_the_cache_slot(tiny_specs):
    spec = tiny_specs["attention"]
    real = build_layer(spec, device="cpu", dtype=torch.float64, attn_backend="math")
    cache = real.allocate_cache(2, 5, dtype=torch.float64)
    randomize_(cache)
    before = [t.clone() for t in cache]
    with torch.no_grad():
        real.decode(torch.randn(2, 1, spec.d_model, dtype=torch.float64), cache)
    for old, new in zip(before, cache):
        assert new.shape == (2, spec.n_kv_heads, 6, spec.head_dim)
        assert torch.equal(old[:, :, :5], new[:, :, :5])
        assert not torch.equal(old[:, :, 5], new[:, :, 5])


def test_randomize_never_leaves_zeros(tiny_specs):
    cache = build_reference_layer(tiny_specs["mamba2"]).allocate_cache(2, 8)
    randomize_(cache)
    assert all((t != 0).float().mean() > 0.99 for t in cache)


def test_memory_estimate_grows_with_batch_and_context():
    spec = BUILTIN_LAYERS["attention"]
    small = estimate_layer_bytes(spec, "decode", 1, 1024)
    assert estimate_layer_bytes(spec, "decode", 8, 1024) > small
    assert estimate_layer_bytes(spec, "decode", 1, 32768) > small
    assert estimate_layer_bytes(spec, "prefill", 1, 1024) >= spec.params * 2
