"""Specs and registry: validation, the paper's four 8B models, and parameter counts.

Parameter counts are cross-checked two ways:
  1. against torch modules built on the `meta` device (no memory, no compute) that mirror the
     parameter layout of mamba_ssm's `Mamba` / `Mamba2` and of plain nn.Linear attention and MLP;
  2. for the whole 8B models, against the counts in ../shared/paper-8b-configs.md (modules built
     on an H100) and arXiv 2406.07887 Table 1.
Tolerance achieved: exact (0 parameters) for every layer and every model.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from models.registry import (BUILTIN_LAYERS, BUILTIN_MODELS, CONTEXT_VARIANTS, PAPER_MODELS,
                             get_layer, get_model, load_models_toml)
from models.specs import (AttentionSpec, Mamba2Spec, MambaSpec, MLPSpec, ModelSpec, NormSpec,
                          SpecError, parse_pattern)

SMALL_MAMBA2 = Mamba2Spec(d_model=64, d_state=16, headdim=16, ngroups=2)

# ----------------------------------------------------------------------------------------------
# Validation: bad configurations are one-line SpecErrors


@pytest.mark.parametrize("make", [
    lambda: MambaSpec(d_model=0),
    lambda: MambaSpec(d_model=64, d_state=-1),
    lambda: Mamba2Spec(d_model=64, headdim=48),  # d_inner 128 not a multiple of 48
    lambda: Mamba2Spec(d_model=64, headdim=64, ngroups=3),  # 2 heads not a multiple of 3 groups
    lambda: AttentionSpec(d_model=64, n_heads=6, n_kv_heads=4),
    lambda: AttentionSpec(d_model=64, rotary_fraction=1.5),
    lambda: MLPSpec(d_model=64, activation="tanh"),
    lambda: MLPSpec(d_model=64, ffn_hidden=0),
    lambda: NormSpec(64, kind="batchnorm"),
], ids=["mamba-d0", "mamba-neg-state", "mamba2-headdim", "mamba2-groups", "gqa-heads",
        "rotary-fraction", "activation", "ffn-zero", "norm-kind"])
def test_invalid_layer_specs_raise_one_line_spec_error(make):
    with pytest.raises(SpecError) as info:
        make()
    assert "\n" not in str(info.value)


def test_pattern_with_unknown_letters_is_rejected():
    with pytest.raises(SpecError, match="unknown letters"):
        ModelSpec(name="x", d_model=64, vocab_size=10, pattern="M-X", mamba2=SMALL_MAMBA2,
                  mlp=MLPSpec(64))
    with pytest.raises(SpecError):
        parse_pattern("M*Q")


def test_pattern_letter_without_its_spec_is_rejected():
    with pytest.raises(SpecError, match="attention"):
        ModelSpec(name="x", d_model=64, vocab_size=10, pattern="M*", mamba2=SMALL_MAMBA2)


def test_layer_width_must_match_model_width():
    with pytest.raises(SpecError, match="d_model"):
        ModelSpec(name="x", d_model=64, vocab_size=10, pattern="-", mlp=MLPSpec(128))


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BUILTIN_LAYERS["mamba2"].d_state = 16


def test_parse_pattern_maps_megatron_letters():
    assert parse_pattern("mM*-") == ("mamba", "mamba2", "attention", "mlp")


# ----------------------------------------------------------------------------------------------
# Registry: names and the paper's configurations


def test_paper_model_names():
    assert set(PAPER_MODELS) == {"transformer-8b", "mamba-8b", "mamba2-8b", "mamba2-hybrid-8b"}


def test_builtin_layer_names():
    assert set(BUILTIN_LAYERS) == {"mamba", "mamba2", "mamba3", "gdn", "attention", "attention-mha", "mlp"}


@pytest.mark.parametrize("base", ["transformer-8b", "mamba-8b", "mamba2-8b", "mamba2-hybrid-8b"])
@pytest.mark.parametrize("suffix", sorted(CONTEXT_VARIANTS))
def test_context_variants_differ_only_in_sequence_length(base, suffix):
    variant = get_model(f"{base}-{suffix}")
    assert variant.max_seqlen == CONTEXT_VARIANTS[suffix]
    assert dataclasses.replace(variant, name=base, max_seqlen=get_model(base).max_seqlen) == get_model(base)


def test_hybrid_layer_mix_is_24_mamba2_4_attention_28_mlp():
    assert get_model("mamba2-hybrid-8b").layer_mix == {"mamba2": 24, "mlp": 28, "attention": 4}


def test_hybrid_pattern_is_megatrons():
    # ../shared/paper-8b-configs.md, from Megatron-LM examples/mamba/run_text_gen_server_8b.sh
    assert get_model("mamba2-hybrid-8b").pattern == "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"


def test_layer_names_are_the_layers_the_models_use():
    assert get_model("mamba2-hybrid-8b").attention == get_layer("attention")
    assert get_model("mamba2-hybrid-8b").mamba2 == get_layer("mamba2")
    assert get_model("mamba2-hybrid-8b").mlp == get_layer("mlp")
    assert get_model("transformer-8b").attention == get_layer("attention-mha")
    assert get_model("mamba-8b").mamba == get_layer("mamba")


def test_hybrid_attention_is_gqa_and_transformer_attention_is_mha():
    assert (get_layer("attention").n_heads, get_layer("attention").n_kv_heads) == (32, 8)
    assert (get_layer("attention-mha").n_heads, get_layer("attention-mha").n_kv_heads) == (32, 32)


def test_mamba1_8b_d_state_is_128():
    # arXiv 2406.07887 Table 1: Mamba 8B has state dim 128 (and 8.15B parameters, see below).
    assert get_layer("mamba").d_state == 128


def test_unknown_model_and_layer_are_spec_errors():
    with pytest.raises(SpecError, match="nope"):
        get_model("nope")
    with pytest.raises(SpecError, match="nope"):
        get_layer("nope")


# ----------------------------------------------------------------------------------------------
# Parameter counts vs modules on the meta device

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def meta_mamba(torch, s: MambaSpec):
    """mamba_ssm.Mamba's parameters (modules/mamba_simple.py)."""
    nn, di = torch.nn, s.d_inner
    m = nn.Module()
    m.in_proj = nn.Linear(s.d_model, 2 * di, bias=s.bias)
    m.conv1d = nn.Conv1d(di, di, s.d_conv, groups=di, padding=s.d_conv - 1, bias=s.conv_bias)
    m.x_proj = nn.Linear(di, s.dt_rank + 2 * s.d_state, bias=False)
    m.dt_proj = nn.Linear(s.dt_rank, di, bias=True)
    m.A_log = nn.Parameter(torch.empty(di, s.d_state))
    m.D = nn.Parameter(torch.empty(di))
    m.out_proj = nn.Linear(di, s.d_model, bias=s.bias)
    return m


def meta_mamba2(torch, s: Mamba2Spec):
    """mamba_ssm.Mamba2's parameters (modules/mamba2.py): in_proj [z, x, B, C, dt], conv1d over
    xBC, dt_bias, A_log, D (per head), the gated RMSNorm weight, out_proj."""
    nn = torch.nn
    d_in_proj = 2 * s.d_inner + 2 * s.ngroups * s.d_state + s.nheads
    conv_dim = s.d_inner + 2 * s.ngroups * s.d_state
    m = nn.Module()
    m.in_proj = nn.Linear(s.d_model, d_in_proj, bias=s.bias)
    m.conv1d = nn.Conv1d(conv_dim, conv_dim, s.d_conv, groups=conv_dim, padding=s.d_conv - 1,
                         bias=s.conv_bias)
    m.dt_bias = nn.Parameter(torch.empty(s.nheads))
    m.A_log = nn.Parameter(torch.empty(s.nheads))
    m.D = nn.Parameter(torch.empty(s.nheads))
    if s.rmsnorm:
        m.norm = nn.RMSNorm(s.d_inner)
    m.out_proj = nn.Linear(s.d_inner, s.d_model, bias=s.bias)
    return m


def meta_attention(torch, s: AttentionSpec):
    nn = torch.nn
    m = nn.Module()
    m.wqkv = nn.Linear(s.d_model, (s.n_heads + 2 * s.n_kv_heads) * s.head_dim, bias=s.bias)
    m.wo = nn.Linear(s.n_heads * s.head_dim, s.d_model, bias=s.bias)
    return m


def meta_mlp(torch, s: MLPSpec):
    nn = torch.nn
    m = nn.Module()
    m.fc1 = nn.Linear(s.d_model, s.ffn_hidden * (2 if s.gated else 1), bias=s.bias)
    m.fc2 = nn.Linear(s.ffn_hidden, s.d_model, bias=s.bias)
    return m


def meta_reference(torch, spec):
    """Mamba-3 and Gated DeltaNet: their reference layers, whose parameters mirror mamba_ssm.Mamba3's and
    the Qwen3-Next layer's names and shapes (the real modules need CUDA to import)."""
    from models.reference import build_reference_layer

    return build_reference_layer(spec)


MIXERS = {"mamba": meta_mamba, "mamba2": meta_mamba2, "mamba3": meta_reference, "gdn": meta_reference,
          "attention": meta_attention, "mlp": meta_mlp}


def meta_norm(torch, d: int, kind: str):
    return torch.nn.LayerNorm(d) if kind == "layernorm" else torch.nn.RMSNorm(d)


def meta_model(torch, m: ModelSpec):
    """Embedding, one pre-norm + mixer per pattern letter, final norm, untied LM head."""
    nn = torch.nn
    model = nn.Module()
    model.embedding = nn.Embedding(m.vocab_size, m.d_model)
    model.norms = nn.ModuleList(meta_norm(torch, m.d_model, m.norm) for _ in m.pattern)
    model.mixers = nn.ModuleList(MIXERS[spec.kind](torch, spec) for spec in m.layers)
    model.final_norm = meta_norm(torch, m.d_model, m.norm)
    model.lm_head = nn.Linear(m.d_model, m.vocab_size, bias=False)
    return model


def count_on_meta(torch, build, spec) -> int:
    with torch.device("meta"):
        module = build(torch, spec)
    assert all(p.device.type == "meta" for p in module.parameters())
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(BUILTIN_LAYERS))
def test_8b_layer_params_match_meta_modules(torch, name):
    spec = get_layer(name)
    assert spec.params == count_on_meta(torch, MIXERS[spec.kind], spec)


@pytest.mark.parametrize("spec", [
    MambaSpec(d_model=64, d_state=16, dt_rank=4, d_conv=3, expand=3),
    MambaSpec(d_model=64, d_state=8, dt_rank=8, bias=True, conv_bias=False),
    Mamba2Spec(d_model=64, d_state=16, headdim=16, ngroups=2),
    Mamba2Spec(d_model=96, d_state=32, headdim=32, ngroups=1, conv_bias=False, bias=True),
    Mamba2Spec(d_model=64, d_state=16, headdim=16, ngroups=2, rmsnorm=False),
    AttentionSpec(d_model=64, n_heads=8, n_kv_heads=2, head_dim=16),
    AttentionSpec(d_model=64, n_heads=4, n_kv_heads=4, head_dim=32, bias=True),
    MLPSpec(d_model=64, ffn_hidden=256),
    MLPSpec(d_model=64, ffn_hidden=96, gated=True, activation="silu", bias=True),
], ids=lambda s: f"{s.kind}-{s.d_model}")
def test_small_layer_params_match_meta_modules(torch, spec):
    assert spec.params == count_on_meta(torch, MIXERS[spec.kind], spec)


@pytest.mark.parametrize("name", ["transformer-8b", "mamba-8b", "mamba2-8b", "mamba2-hybrid-8b"])
def test_8b_model_params_match_meta_modules(torch, name):
    spec = get_model(name)
    assert spec.params == count_on_meta(torch, meta_model, spec)


def test_hybrid_params_match_the_h100_build_exactly():
    # ../shared/paper-8b-configs.md: mamba_ssm Mamba2 + nn.Linear attention/MLP on an H100.
    assert get_model("mamba2-hybrid-8b").params == 8_654_517_248


def test_transformer_params_match_the_h100_build_plus_layernorm_biases():
    # The H100 build used RMSNorm (8,539,869,184); the Transformer's LayerNorm adds a 4096-wide
    # bias per norm: 64 block pre-norms + 1 final norm = 65.
    assert get_model("transformer-8b").params == 8_539_869_184 + 65 * 4096


def test_mamba1_8b_params_are_the_papers_8_15b():
    # arXiv 2406.07887 Table 1: Mamba 8B, 8.15B parameters with state dim 128.
    assert get_model("mamba-8b").params == 8_148_783_104


def test_user_model_params_match_meta_modules(torch, tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(textwrap.dedent("""
        [models.tiny]
        d_model = 128
        vocab_size = 1000
        pattern = "mM*-"
        norm = "layernorm"
        [models.tiny.mamba]
        dt_rank = 8
        [models.tiny.mamba2]
        headdim = 32
        ngroups = 2
        d_state = 16
        [models.tiny.attention]
        n_heads = 4
        n_kv_heads = 2
        head_dim = 32
        [models.tiny.mlp]
        ffn_hidden = 512
        gated = true
        activation = "silu"
    """))
    spec = load_models_toml(path)["tiny"]
    assert spec.params == count_on_meta(torch, meta_model, spec)


# ----------------------------------------------------------------------------------------------
# Decode state per token / per sequence


def test_kv_bytes_per_token_counts_kv_heads_of_attention_layers_only():
    # bf16 K and V, per attention layer: 2 * n_kv_heads * 128 * 2 bytes.
    assert get_model("transformer-8b").kv_bytes_per_token() == 32 * (2 * 32 * 128 * 2)  # 524,288
    assert get_model("mamba2-hybrid-8b").kv_bytes_per_token() == 4 * (2 * 8 * 128 * 2)  # 16,384
    assert get_model("mamba2-8b").kv_bytes_per_token() == 0


def test_mamba2_state_bytes_per_sequence_is_ssm_plus_conv_state():
    # Mamba2.allocate_inference_cache: conv_state (conv_dim=8192+2*8*128, d_conv=4) and
    # ssm_state (128 heads, 64, 128), both bf16: 10240*4*2 + 128*64*128*2 = 2,179,072 per layer.
    per_layer = 10240 * 4 * 2 + 128 * 64 * 128 * 2
    assert get_model("mamba2-8b").state_bytes_per_sequence() == 56 * per_layer
    assert get_model("mamba2-hybrid-8b").state_bytes_per_sequence() == 24 * per_layer
    assert get_model("transformer-8b").state_bytes_per_sequence() == 0


# ----------------------------------------------------------------------------------------------
# User models from TOML


def test_user_toml_model_with_unknown_pattern_letter_is_spec_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[models.bad]\nvocab_size = 100\npattern = "M-X"\n'
                    '[models.bad.mamba2]\nd_state = 64\n[models.bad.mlp]\nffn_hidden = 1024\n')
    with pytest.raises(SpecError, match="unknown letters"):
        load_models_toml(path)


def test_user_toml_unknown_key_is_spec_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[models.bad]\nvocab_size = 100\npattern = "-"\ncolour = "red"\n[models.bad.mlp]\n')
    with pytest.raises(SpecError, match="colour"):
        load_models_toml(path)


def test_user_toml_invalid_syntax_is_spec_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[models.bad\n")
    with pytest.raises(SpecError):
        load_models_toml(path)


def test_user_toml_mixer_that_is_not_a_table_is_spec_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[models.bad]\nvocab_size = 100\npattern = "-"\nmlp = 3\n')
    with pytest.raises(SpecError):
        load_models_toml(path)


def test_user_toml_mixer_field_of_wrong_type_is_spec_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[models.bad]\nvocab_size = 100\npattern = "*"\n'
                    '[models.bad.attention]\nrotary_fraction = "half"\n')
    with pytest.raises(SpecError):
        load_models_toml(path)


def test_user_models_extend_the_builtins(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[models.mine]\nvocab_size = 1000\npattern = "M-"\n[models.mine.mamba2]\n[models.mine.mlp]\n')
    assert get_model("mine", path).pattern == "M-"
    assert get_model("mamba2-8b", path) == get_model("mamba2-8b")


# ----------------------------------------------------------------------------------------------
# House rule: specs, the analytic model and the CLI import no torch


def test_specs_analytic_and_cli_import_without_torch():
    code = ("import sys, models.specs, models.registry, analytic.predict, analytic.memory, "
            "perfbench.cli; sys.exit(int('torch' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
