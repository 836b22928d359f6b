"""Real layers on the GPU: built from the specs with the analytic parameter counts, and equal to the
pure-torch reference (same weights, float64 reference) within bf16 error, in prefill and decode."""

from __future__ import annotations

import pytest

from models.registry import BUILTIN_LAYERS
from models.specs import AttentionSpec, Mamba2Spec, MambaSpec, MLPSpec

pytestmark = pytest.mark.gpu

SMALL = {
    "mamba": MambaSpec(d_model=256, d_state=16, d_conv=4, expand=2, dt_rank=16),
    "mamba2": Mamba2Spec(d_model=256, d_state=64, d_conv=4, expand=2, headdim=64, ngroups=2, chunk_size=64),
    "attention": AttentionSpec(d_model=512, n_heads=8, n_kv_heads=2, head_dim=64),
    "attention-rope": AttentionSpec(d_model=512, n_heads=8, n_kv_heads=8, head_dim=64, rotary_fraction=0.5),
    "mlp": MLPSpec(d_model=256, ffn_hidden=1024),
    # Dense-decoder extensions (issue 28): Qwen2 q/k/v biases, Qwen3 q/k norm, full RoPE, SwiGLU.
    "attention-qkv-bias": AttentionSpec(d_model=512, n_heads=8, n_kv_heads=2, head_dim=64, rotary_fraction=1.0,
                                        rope_base=1e6, qkv_bias=True),
    "attention-qk-norm": AttentionSpec(d_model=512, n_heads=8, n_kv_heads=2, head_dim=128, rotary_fraction=1.0,
                                       rope_base=1e6, qk_norm=True),
    "mlp-swiglu": MLPSpec(d_model=256, ffn_hidden=768, activation="silu", gated=True),
}
BF16_REL = 3e-2  # bf16 operands: relative errors of 1e-3..1e-2 are expected


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _needs_mamba(kind):
    if kind.startswith("mamba"):
        pytest.importorskip("mamba_ssm")
    if kind == "gdn":
        pytest.importorskip("fla")


@pytest.mark.parametrize("name", list(BUILTIN_LAYERS))
def test_real_8b_layer_has_the_spec_parameter_count(cuda, name):
    from models.torch_layers import build_layer

    spec = BUILTIN_LAYERS[name]
    _needs_mamba(spec.kind)
    layer = build_layer(spec, device="cuda", dtype=cuda.bfloat16)
    assert sum(p.numel() for p in layer.parameters()) == spec.params


def _pair(torch, kind, backend=None):
    from models.reference import build_reference_layer
    from models.torch_layers import build_layer, weights_module

    spec = SMALL[kind]
    torch.manual_seed(0)
    real = build_layer(spec, device="cuda", dtype=torch.bfloat16, attn_backend=backend).eval()
    ref = build_reference_layer(spec, device="cuda", dtype=torch.float64)
    state = {k: v.double() for k, v in weights_module(real).state_dict().items()}
    ref.load_state_dict(state)
    return spec, real, ref


CASES = [("mamba", None), ("mamba2", None), ("attention", "flash"), ("attention", "cudnn"),
         ("attention-rope", "flash"), ("attention-rope", "cudnn"), ("mlp", None),
         ("attention-qkv-bias", "flash"), ("attention-qkv-bias", "cudnn"), ("attention-qk-norm", "flash"),
         ("attention-qk-norm", "cudnn"), ("mlp-swiglu", None)]


@pytest.mark.parametrize("kind,backend", CASES)
def test_real_prefill_matches_reference(cuda, kind, backend):
    torch = cuda
    _needs_mamba(kind)
    spec, real, ref = _pair(torch, kind, backend)
    x = torch.randn(2, 200, spec.d_model, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        out = real(x)
        expected = ref(x.double())
    assert torch.isfinite(out).all()
    assert _rel(out, expected) < BF16_REL


@pytest.mark.parametrize("kind,backend", CASES)
def test_real_decode_matches_reference(cuda, kind, backend):
    from models.torch_layers import randomize_

    torch = cuda
    _needs_mamba(kind)
    spec, real, ref = _pair(torch, kind, backend)
    cache = real.allocate_cache(3, 100, dtype=torch.bfloat16)
    randomize_(cache)
    ref_cache = tuple(t.double().clone() for t in cache)
    x = torch.randn(3, 1, spec.d_model, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        out = real.decode(x, cache)
        expected = ref.decode(x.double(), ref_cache)
    assert out.shape == (3, 1, spec.d_model)
    assert _rel(out, expected) < BF16_REL
    for mine, theirs in zip(cache, ref_cache):  # the caches moved on the same way
        assert _rel(mine, theirs) < BF16_REL


@pytest.mark.parametrize("kind", ["mamba", "mamba2", "attention", "mlp", "attention-qk-norm", "attention-qkv-bias"])
def test_graph_replay_equals_eager_decode(cuda, kind):
    from models.torch_layers import randomize_
    from perfbench.measure.timing import capture_graph

    torch = cuda
    _needs_mamba(kind)
    spec, real, _ = _pair(torch, kind, "flash" if kind.startswith("attention") else None)
    cache = real.allocate_cache(2, 64, dtype=torch.bfloat16)
    randomize_(cache)
    x = torch.randn(2, 1, spec.d_model, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        snapshot = [t.clone() for t in cache]
        out = {}

        def step():
            out["y"] = real.decode(x, cache)

        replay, graph = capture_graph(step, warmup=1)
        for t, s in zip(cache, snapshot):
            t.copy_(s)
        replay()
        graphed = out["y"].clone()
        for t, s in zip(cache, snapshot):
            t.copy_(s)
        eager = real.decode(x, cache)
    assert _rel(graphed, eager) < 1e-6


def test_two_point_sweep_writes_valid_results(cuda, tmp_path):
    from models.registry import get_layer
    from perfbench.measure.harness import SweepOptions, Target, make_points, run_sweep
    from perfbench.measure.results import COLUMNS, RunWriter, load_results
    from perfbench.measure.timing import TimingOptions

    target = Target("layer", "mlp", get_layer("mlp"))
    options = SweepOptions(timing=TimingOptions(min_repeats=3, max_repeats=20, target_s=0.02))
    points = make_points([target], ["prefill", "decode"], [2], [512], options)
    run_sweep([target], points, options, RunWriter(tmp_path, {"command": "test"}))
    frame = load_results(tmp_path)
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["status"]) == ["ok", "ok"]
    assert list(frame["mode"]) == ["eager", "graph"]
    assert (frame["time_ms"] > 0).all() and (frame["peak_mem_bytes"] > 0).all()
    assert (frame["p10_ms"] <= frame["time_ms"]).all() and (frame["time_ms"] <= frame["p90_ms"]).all()
    assert set(frame["gpu"]) <= {"h100", "h200", "a100"} or frame["gpu_name"].str.len().min() > 0


def test_tied_dense_model_matches_reference_on_the_gpu(cuda):
    """A Qwen3-shaped model with tied embeddings: the real layers (q/k norm, full RoPE, SwiGLU) and
    the tied head give the reference's logits."""
    from models.specs import ModelSpec
    from models.stack import build_model, count_parameters

    torch = cuda
    spec = ModelSpec(name="tiny-qwen3", d_model=512, vocab_size=1000, pattern="*-*-", tie_embeddings=True,
                     attention=SMALL["attention-qk-norm"], mlp=MLPSpec(d_model=512, ffn_hidden=768,
                                                                       activation="silu", gated=True))
    torch.manual_seed(0)
    real = build_model(spec, device="cuda", dtype=torch.bfloat16, layers="real", attn_backend="flash").eval()
    ref = build_model(spec, device="cuda", dtype=torch.float64, layers="reference", fused_norm=False)
    ref.load_state_dict({k: v.double() for k, v in real.state_dict().items()})
    assert count_parameters(real) == spec.params
    ids = torch.randint(0, 1000, (2, 64), device="cuda")
    with torch.inference_mode():
        assert _rel(real.prefill(ids), ref.prefill(ids)) < BF16_REL
