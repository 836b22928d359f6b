"""What-if config edits: pure functions over ModelSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.whatif_spec import Edits, apply_edits, attention_count, hf_base, with_attention_count
from models.hf import load_hf_config
from models.registry import HYBRID_PATTERN, get_model
from models.specs import SpecError


@pytest.mark.parametrize("n", [0, 1, 4, 8, 28])
def test_attention_count_is_what_was_asked(n):
    assert attention_count(with_attention_count(HYBRID_PATTERN, n)) == n


def test_attention_count_keeps_mlp_blocks_in_place():
    edited = with_attention_count(HYBRID_PATTERN, 8)
    assert [i for i, c in enumerate(edited) if c == "-"] == [i for i, c in enumerate(HYBRID_PATTERN) if c == "-"]


def test_attention_layers_are_spread_not_bunched():
    edited = with_attention_count("M" * 40, 4)
    positions = [i for i, c in enumerate(edited) if c == "*"]
    gaps = [b - a for a, b in zip(positions, positions[1:])]
    assert max(gaps) - min(gaps) <= 1


def test_more_attention_layers_than_mixers_is_an_error():
    with pytest.raises(SpecError, match="attention layers"):
        with_attention_count("M-M-", 3)


def test_edits_reach_the_mixer_specs():
    spec = apply_edits(get_model("mamba2-hybrid-8b"), Edits(d_state=64, n_kv_heads=4, ffn_hidden=8192))
    assert (spec.mamba2.d_state, spec.attention.n_kv_heads, spec.mlp.ffn_hidden) == (64, 4, 8192)


def test_unchanged_edits_give_the_same_architecture():
    base = get_model("mamba2-hybrid-8b")
    spec = apply_edits(base, Edits(d_state=base.mamba2.d_state, n_attention=attention_count(base.pattern)))
    assert spec.pattern == base.pattern and spec.params == base.params


def test_transformer_with_fewer_attention_layers_gains_mamba2_layers():
    spec = apply_edits(get_model("transformer-8b"), Edits(n_attention=4))
    assert spec.count("attention") == 4 and spec.count("mamba2") == 28


def test_an_impossible_head_dim_is_a_spec_error():
    with pytest.raises(SpecError, match="headdim"):
        apply_edits(get_model("mamba2-8b"), Edits(headdim=96))


HF_DATA = Path(__file__).parent / "data" / "hf"


def test_hf_base_from_a_path_is_the_imported_model():
    assert hf_base(str(HF_DATA / "Qwen3-8B")) == load_hf_config(HF_DATA / "Qwen3-8B")


def test_hf_base_from_an_upload_is_named_as_asked():
    payload = (HF_DATA / "Meta-Llama-3-8B" / "config.json").read_bytes()
    spec = hf_base(upload=payload, upload_name="my-llama")
    assert spec.name == "my-llama" and spec.layers == load_hf_config(HF_DATA / "Meta-Llama-3-8B").layers


def test_hf_base_without_a_path_or_upload_is_a_spec_error():
    with pytest.raises(SpecError, match="give the path"):
        hf_base("  ")
