"""Whole models from the specs: parameter counts, block order, TTFT logits, decode = prefill."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from models.registry import PAPER_MODELS, get_model  # noqa: E402
from models.stack import build_model, count_parameters, estimate_model_bytes  # noqa: E402

H100_BYTES = 80 * 10**9


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_model_builds_with_the_spec_parameter_count(name):
    spec = get_model(name)
    model = build_model(spec, device="meta", layers="reference")
    assert count_parameters(model) == spec.params


def test_hybrid_blocks_follow_the_pattern():
    spec = get_model("mamba2-hybrid-8b")
    model = build_model(spec, device="meta", layers="reference")
    letters = {"mamba2": "M", "attention": "*", "mlp": "-", "mamba": "m"}
    assert "".join(letters[b.mixer.spec.kind] for b in model.blocks) == spec.pattern
    assert len(model.blocks) == 56


def test_transformer_uses_layernorm_with_bias_and_an_untied_head():
    model = build_model(get_model("transformer-8b"), device="meta", layers="reference")
    assert model.blocks[0].norm.bias is not None
    assert model.lm_head is not None and model.lm_head.weight is not model.embedding.weight


def _randomized(model):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return model


def test_prefill_returns_last_position_logits(tiny_model):
    model = _randomized(build_model(tiny_model, device="cpu", dtype=torch.float64, layers="reference"))
    ids = torch.randint(0, tiny_model.vocab_size, (3, 7))
    with torch.no_grad():
        logits = model.prefill(ids)
        every = torch.nn.functional.linear(model.hidden_states(ids), model.lm_head.weight)
    assert logits.shape == (3, tiny_model.vocab_size)
    assert torch.allclose(logits, every[:, -1])


def test_decode_step_continues_the_prompt(tiny_model):
    model = _randomized(build_model(tiny_model, device="cpu", dtype=torch.float64, layers="reference"))
    ids = torch.randint(0, tiny_model.vocab_size, (2, 9))
    with torch.no_grad():
        expected = model.prefill(ids)
        hidden, residual, caches = model.embedding(ids[:, :8]), None, []
        for block in model.blocks:  # the caches a real prompt would leave behind
            normed, residual = block.norm(hidden, residual)
            hidden, cache = block.mixer.forward_with_cache(normed)
            caches.append(cache)
        step = model.decode(ids[:, 8:], caches)
    assert torch.allclose(step, expected, atol=1e-10)


def test_real_cpu_stack_matches_reference_stack(tiny_model):
    from dataclasses import replace

    spec = replace(tiny_model, pattern="*-*-", mamba=None, mamba2=None)  # CPU has no mamba_ssm
    ref = _randomized(build_model(spec, device="cpu", dtype=torch.float64, layers="reference"))
    real = build_model(spec, device="cpu", dtype=torch.float64, layers="real", attn_backend="math")
    real.load_state_dict(ref.state_dict())
    ids = torch.randint(0, spec.vocab_size, (2, 6))
    with torch.no_grad():
        assert torch.allclose(real.prefill(ids), ref.prefill(ids), atol=1e-10)


def test_decode_caches_have_one_entry_per_block(tiny_model):
    model = build_model(tiny_model, device="cpu", dtype=torch.float32, layers="reference")
    caches = model.allocate_cache(2, 16)
    assert len(caches) == len(tiny_model.pattern)
    assert caches[tiny_model.pattern.index("-")] == ()


def test_memory_estimate_skips_transformer_at_128k_but_not_the_hybrid():
    transformer, hybrid = get_model("transformer-8b"), get_model("mamba2-hybrid-8b")
    assert estimate_model_bytes(transformer, "decode", 1, 131072) > H100_BYTES
    assert estimate_model_bytes(hybrid, "decode", 1, 131072) < H100_BYTES
    assert estimate_model_bytes(hybrid, "decode", 1, 4096) >= hybrid.params * 2


@pytest.mark.gpu
@pytest.mark.parametrize("name", PAPER_MODELS)
def test_real_8b_model_on_gpu_decodes_with_graphs(cuda, name):
    spec = get_model(name)
    if spec.count("mamba") or spec.count("mamba2"):
        pytest.importorskip("mamba_ssm")
    from models.torch_layers import randomize_
    from perfbench.measure.timing import capture_graph

    model = build_model(spec, device="cuda", dtype=torch.bfloat16).eval()
    assert count_parameters(model) == spec.params
    caches = model.allocate_cache(2, 256, dtype=torch.bfloat16)
    for cache in caches:
        randomize_(cache)
    ids = torch.randint(1, spec.vocab_size, (2, 1), device="cuda")
    with torch.inference_mode():
        out = {}
        replay, graph = capture_graph(lambda: out.update(logits=model.decode(ids, caches)), warmup=1)
        replay()
        prompt = model.prefill(torch.randint(1, spec.vocab_size, (2, 128), device="cuda"))
    assert out["logits"].shape == (2, spec.vocab_size) and torch.isfinite(out["logits"]).all()
    assert prompt.shape == (2, spec.vocab_size) and torch.isfinite(prompt).all()
