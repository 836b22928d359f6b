"""Dense-decoder spec extensions (Qwen2 q/k/v biases, Qwen3 q/k norm, full RoPE, SwiGLU, tied
embeddings): parameter counts, FLOPs against torch's FLOP counter, and the analytic ops they add.
The real CPU layers against the reference: tests/test_layers_reference.py (tiny_specs)."""

from __future__ import annotations

import numpy as np
import pytest

from analytic.composition import step_ops
from analytic.costs import layer_ops
from analytic.ops import GEMM
from models.specs import AttentionSpec, MLPSpec, ModelSpec

torch = pytest.importorskip("torch")

from models.reference import build_reference_layer, rotary_dim  # noqa: E402
from models.stack import build_model, count_parameters  # noqa: E402
from models.torch_layers import build_layer  # noqa: E402

QWEN2_ATTENTION = AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=8, rotary_fraction=1.0,
                                rope_base=1e6, qkv_bias=True)
QWEN3_ATTENTION = AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=16, rotary_fraction=1.0,
                                rope_base=1e6, qk_norm=True)
SWIGLU = MLPSpec(d_model=32, ffn_hidden=48, activation="silu", gated=True)
SPECS = {"qwen2-attention": QWEN2_ATTENTION, "qwen3-attention": QWEN3_ATTENTION, "swiglu": SWIGLU}


@pytest.mark.parametrize("name", list(SPECS))
def test_reference_parameter_count_matches_the_spec(name):
    spec = SPECS[name]
    assert count_parameters(build_reference_layer(spec, device="meta")) == spec.params


def test_qkv_bias_has_no_output_bias():
    layer = build_reference_layer(QWEN2_ATTENTION, device="meta")
    assert layer.wqkv.bias is not None and layer.out_proj.bias is None
    assert QWEN2_ATTENTION.params == 2 * 32 * 32 + 2 * 32 * 16 + (32 + 2 * 16)


def test_qk_norm_adds_two_head_dim_weights():
    plain = AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=16)
    assert QWEN3_ATTENTION.params - plain.params == 2 * 16


def test_qk_norm_normalises_each_head_of_q():
    from models.reference import head_rms_norm

    q = torch.randn(3, 5, 4, 16, dtype=torch.float64) * 7
    out = head_rms_norm(q, torch.ones(16, dtype=torch.float64), 1e-6)
    assert torch.allclose(out.square().mean(-1), torch.ones(3, 5, 4, dtype=torch.float64))


def test_full_rope_rotates_every_channel():
    assert rotary_dim(QWEN3_ATTENTION) == QWEN3_ATTENTION.head_dim


def _counted(fn) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return {str(k).split(".")[1]: v for k, v in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_gemm_flops_of_the_real_layer_match_the_flop_counter(name, phase):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    spec = SPECS[name]
    real = build_layer(spec, device="cpu", dtype=torch.float32, attn_backend="math")
    b, L = 3, 20
    ops = layer_ops(spec, phase, np.array([float(b)]), np.array([float(L)]))
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        if phase == "prefill":
            counted = _counted(lambda: real(torch.randn(b, L, spec.d_model)))
        else:
            cache = real.allocate_cache(b, L)
            counted = _counted(lambda: real.decode(torch.randn(b, 1, spec.d_model), cache))
    gemm = sum(v for k, v in counted.items() if k in ("mm", "addmm"))
    assert gemm == sum(float(op.flops[0]) for op in ops if op.op_class == GEMM)


def test_qk_norm_is_four_kernels_over_q_and_k():
    (op,) = [op for op in layer_ops(QWEN3_ATTENTION, "decode", np.array([2.0]), np.array([10.0]))
             if op.name == "qk_norm"]
    elems = 2 * (4 + 2) * 16
    assert op.kernels == 4 and float(op.bytes_[0]) == 2 * (2 * elems + 2 * elems)


def test_qkv_bias_is_read_by_the_qkv_gemm():
    plain = AttentionSpec(d_model=32, n_heads=4, n_kv_heads=2, head_dim=8, rotary_fraction=1.0, rope_base=1e6)
    args = ("prefill", np.array([2.0]), np.array([10.0]))
    with_bias = {op.name: op for op in layer_ops(QWEN2_ATTENTION, *args)}
    without = {op.name: op for op in layer_ops(plain, *args)}
    assert float(with_bias["qkv_proj"].bytes_[0] - without["qkv_proj"].bytes_[0]) == 2 * QWEN2_ATTENTION.qkv_dim
    assert float(with_bias["out_proj"].bytes_[0]) == float(without["out_proj"].bytes_[0])


def _tied(tie: bool) -> ModelSpec:
    return ModelSpec(name="tiny-dense", d_model=32, vocab_size=100, pattern="*-*-", attention=QWEN3_ATTENTION,
                     mlp=SWIGLU, tie_embeddings=tie)


def test_tied_embeddings_count_the_table_once():
    tied, untied = _tied(True), _tied(False)
    assert untied.params - tied.params == 100 * 32
    assert count_parameters(build_model(tied, device="meta", layers="reference")) == tied.params


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_tied_embeddings_still_run_the_head_gemm(phase):
    b, L = np.array([2.0]), np.array([16.0])
    heads = [c.op for c in step_ops("model", _tied(True), phase, b, L) if c.op.name == "lm_head"]
    assert len(heads) == 1 and float(heads[0].flops[0]) == 2 * 2 * 100 * 32


def test_tied_model_logits_use_the_embedding_table():
    model = build_model(_tied(True), device="cpu", dtype=torch.float64, layers="reference")
    ids = torch.randint(0, 100, (2, 5))
    with torch.no_grad():
        hidden = model.hidden_states(ids)[:, -1]
        assert torch.allclose(model.prefill(ids), hidden @ model.embedding.weight.T)
