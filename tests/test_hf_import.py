"""Hugging Face configs as ModelSpecs: published parameter counts, each family's features, the TOML
round trip, equal predictions, and bad input as one line with exit 2.

The configs under tests/data/hf/<name>/config.json are written from each model's published config.json
(the keys that shape the layers). Published parameter counts, each the figure its source gives:
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.hf import load_hf_config
from models.registry import load_models_file, model_toml
from models.specs import SpecError

DATA = Path(__file__).parent / "data" / "hf"

PUBLISHED = {
    # Hugging Face model cards / the Hub's safetensors parameter count of each repository.
    "Meta-Llama-3-8B": 8.03e9,  # meta-llama/Meta-Llama-3-8B: 8.03B
    "Llama-3.2-1B": 1.23e9,  # meta-llama/Llama-3.2-1B model card table: 1.23B (tied embeddings)
    "Mistral-7B-v0.3": 7.25e9,  # mistralai/Mistral-7B-v0.3: 7.25B
    "Qwen2.5-7B": 7.61e9,  # Qwen/Qwen2.5-7B model card: "Number of Parameters: 7.61B"
    "Qwen2.5-0.5B": 0.49e9,  # Qwen/Qwen2.5-0.5B model card: "Number of Parameters: 0.49B" (tied)
    "Qwen3-8B": 8.2e9,  # Qwen/Qwen3-8B model card: "Number of Parameters: 8.2B"
    "mamba-2.8b-hf": 2.77e9,  # state-spaces/mamba-2.8b-hf: 2.77B (safetensors)
    "mamba2-2.7b": 2.7e9,  # state-spaces/mamba2-2.7b: 2.7B (arXiv 2405.21060, the Mamba-2 2.7B model)
    "Nemotron-H-8B-Base-8K": 8.1e9,  # nvidia/Nemotron-H-8B-Base-8K: 8.1B (arXiv 2504.03624's 8B model)
}


def _config(name: str) -> Path:
    return DATA / name


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_is_within_1_percent_of_the_published_figure(name):
    spec = load_hf_config(_config(name))
    assert abs(spec.params - PUBLISHED[name]) / PUBLISHED[name] < 0.01


def test_every_test_config_has_a_published_figure():
    assert {p.name for p in DATA.iterdir()} == set(PUBLISHED)


def test_model_is_named_after_its_directory_or_name():
    assert load_hf_config(_config("Qwen3-8B")).name == "Qwen3-8B"
    assert load_hf_config(_config("Qwen3-8B") / "config.json").name == "Qwen3-8B"
    assert load_hf_config(_config("Qwen3-8B"), name="mine").name == "mine"


def test_llama_is_gqa_with_full_rope_and_swiglu():
    spec = load_hf_config(_config("Meta-Llama-3-8B"))
    att, mlp = spec.attention, spec.mlp
    assert (att.n_heads, att.n_kv_heads, att.head_dim, att.rotary_fraction, att.rope_base) == (32, 8, 128, 1.0, 5e5)
    assert (mlp.ffn_hidden, mlp.activation, mlp.gated) == (14336, "silu", True)
    assert spec.pattern == "*-" * 32 and spec.norm == "rmsnorm" and not spec.tie_embeddings


def test_qwen2_has_qkv_biases_without_an_output_bias():
    att = load_hf_config(_config("Qwen2.5-7B")).attention
    assert att.qkv_bias and not att.bias and not att.qk_norm


def test_qwen3_has_qk_norm_and_no_biases():
    att = load_hf_config(_config("Qwen3-8B")).attention
    assert att.qk_norm and not att.qkv_bias and not att.bias and att.head_dim == 128


def test_tied_configs_tie_the_head():
    assert load_hf_config(_config("Qwen2.5-0.5B")).tie_embeddings
    assert load_hf_config(_config("Llama-3.2-1B")).head_params == 0


def test_nemotron_h_attention_has_no_rope_and_its_mlp_is_squared_relu():
    spec = load_hf_config(_config("Nemotron-H-8B-Base-8K"))
    assert spec.attention.rotary_fraction == 0.0
    assert (spec.mlp.activation, spec.mlp.gated) == ("squared_relu", False)
    assert spec.layer_mix == {"mamba2": 24, "mlp": 24, "attention": 4}
    assert (spec.mamba2.nheads, spec.mamba2.headdim, spec.mamba2.ngroups, spec.mamba2.chunk_size) == (128, 64, 8, 128)


def test_mamba_time_step_rank_auto_is_ceil_of_width_over_16(tmp_path):
    data = json.loads((_config("mamba-2.8b-hf") / "config.json").read_text())
    data["time_step_rank"] = "auto"
    data["hidden_size"] = 2500
    path = tmp_path / "m" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    assert load_hf_config(path).mamba.dt_rank == 157  # ceil(2500 / 16)


def test_mamba2_heads_give_the_expand():
    spec = load_hf_config(_config("mamba2-2.7b"))
    assert (spec.mamba2.expand, spec.mamba2.nheads, spec.mamba2.ngroups) == (2, 80, 1)


def test_nemotron_layers_block_type_list_gives_the_same_pattern(tmp_path):
    data = json.loads((_config("Nemotron-H-8B-Base-8K") / "config.json").read_text())
    names = {"M": "mamba", "*": "attention", "-": "mlp"}
    data["layers_block_type"] = [names[c] for c in data.pop("hybrid_override_pattern")]
    path = tmp_path / "n" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    assert load_hf_config(path).pattern == load_hf_config(_config("Nemotron-H-8B-Base-8K")).pattern


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_imported_toml_loads_back_to_an_identical_spec(tmp_path, name):
    spec = load_hf_config(_config(name))
    path = tmp_path / "models.toml"
    path.write_text(model_toml(spec))
    assert load_models_file(path).models[spec.name] == spec


@pytest.mark.parametrize("name", ["Qwen2.5-7B", "Nemotron-H-8B-Base-8K", "mamba-2.8b-hf"])
def test_hf_model_predicts_exactly_what_its_toml_predicts(tmp_path, name):
    import pandas as pd

    from analytic.predict import predict
    from models.registry import get_model

    spec = load_hf_config(_config(name))
    path = tmp_path / "models.toml"
    path.write_text(model_toml(spec))
    for phase in ("prefill", "decode"):
        a = predict(spec, phase, [1, 8], [512, 4096])
        b = predict(get_model(spec.name, path), phase, [1, 8], [512, 4096])
        pd.testing.assert_frame_equal(a, b)


def _write(tmp_path, data, name="model") -> Path:
    path = tmp_path / name / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _qwen3(**changes) -> dict:
    return {**json.loads((_config("Qwen3-8B") / "config.json").read_text()), **changes}


@pytest.mark.parametrize("data,message", [
    ("{not json", "not valid JSON"),
    ({"hello": 1}, "not a Hugging Face model config"),
    ({"architectures": ["GPT2LMHeadModel"]}, "unsupported architecture 'GPT2LMHeadModel'"),
    ({"architectures": ["MixtralForCausalLM"]}, "mixture-of-experts"),
    ({"architectures": ["Zamba2ForCausalLM"]}, "shared blocks"),
    ({"architectures": ["FalconH1ForCausalLM"]}, "parallel attention \\+ SSM heads"),
    (_qwen3(hidden_size="4096"), "hidden_size must be an integer"),
    (_qwen3(tie_word_embeddings="no"), "tie_word_embeddings must be true or false"),
    (_qwen3(use_sliding_window=True, sliding_window=4096), "sliding-window attention"),
    (_qwen3(hidden_act="gelu"), "hidden_act 'gelu'"),
    ({"architectures": ["MistralForCausalLM"], "max_position_embeddings": 32768}, "sliding-window attention"),
    ({"architectures": ["NemotronHForCausalLM"], "hybrid_override_pattern": "MEM*"}, "mixture-of-experts"),
    ({"architectures": ["Mamba2ForCausalLM"], "num_heads": 192, "head_dim": 64}, "num_heads x head_dim"),
])
def test_bad_config_is_a_one_line_spec_error(tmp_path, data, message):
    with pytest.raises(SpecError, match=message) as info:
        load_hf_config(_write(tmp_path, data))
    assert "\n" not in str(info.value)


def test_missing_config_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="config not found"):
        load_hf_config(tmp_path / "nowhere")


def test_mistral_with_a_window_covering_the_context_is_accepted(tmp_path):
    data = {"architectures": ["MistralForCausalLM"], "sliding_window": 32768, "max_position_embeddings": 32768}
    assert load_hf_config(_write(tmp_path, data)).attention.n_kv_heads == 8


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfbench", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args", [
    ["predict", "--hf-config", "no/such/dir"],
    ["models", "--hf-config", str(DATA / "Qwen3-8B"), "--set", "attention.nope=1"],
    ["predict", "--hf-config", str(DATA / "Qwen3-8B"), "--set", "nope=1"],
    ["import-hf", str(DATA)],
])
def test_cli_bad_input_is_one_line_and_exit_2(args):
    done = _cli(*args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr


def test_models_lists_the_hf_model_beside_the_builtins():
    done = _cli("models", "--hf-config", str(DATA / "Nemotron-H-8B-Base-8K"), "--format", "csv")
    names = [line.split(",")[0] for line in done.stdout.splitlines()[1:]]
    assert "Nemotron-H-8B-Base-8K" in names and "mamba2-hybrid-8b" in names


def test_import_hf_prints_toml_that_loads_back(tmp_path):
    done = _cli("import-hf", str(DATA / "Qwen2.5-0.5B"), "--name", "small-qwen")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "m.toml"
    path.write_text(done.stdout)
    assert load_models_file(path).models["small-qwen"] == load_hf_config(DATA / "Qwen2.5-0.5B", name="small-qwen")


def test_hf_override_names_the_change():
    from perfbench.commands.selection import resolve_targets

    (target,) = resolve_targets(hf_config=DATA / "Qwen3-8B", sets=["attention.n_kv_heads=4"])
    assert target.name == "Qwen3-8B[attention.n_kv_heads=4]" and target.spec.attention.n_kv_heads == 4


def test_run_builds_a_tiny_hf_dense_model_on_the_cpu_reference(tmp_path):
    """A two-block Qwen3-shaped config runs through `perfbench run` (reference layers, CPU)."""
    pytest.importorskip("torch")
    tiny = _qwen3(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  num_hidden_layers=2, vocab_size=100, tie_word_embeddings=True)
    config = _write(tmp_path, tiny, "tiny-qwen3")
    done = _cli("run", "--hf-config", str(config.parent), "--cpu-reference", "--batch", "2", "--seqlen", "16",
                "--repeats", "1", "--max-repeats", "1", "--warmup", "0", "--target-ms", "1", "--out",
                str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr[-2000:]
    from perfbench.measure.results import load_results

    frame = load_results(tmp_path / "results")
    assert set(frame["name"]) == {"tiny-qwen3"} and set(frame["status"]) == {"ok"}
    from perfbench.measure.results import recorded_targets

    assert recorded_targets(tmp_path / "results")["tiny-qwen3"].spec == load_hf_config(config.parent)


def test_compare_prices_a_recorded_target_the_registry_does_not_know(tmp_path):
    from analytic.predict import predict
    from models.registry import spec_table
    from perfbench.report.compare import recorded_predictor

    spec = load_hf_config(_config("Nemotron-H-8B-Base-8K"))
    manifest = {"sweep": {"specs": {spec.name: {"kind": "model", "spec": spec_table(spec)}}}}
    (tmp_path / "run-x.json").write_text(json.dumps(manifest))
    predicted = recorded_predictor(tmp_path)(spec.name, "decode", [1, 4], [1024], "h100", None, True)
    expected = predict(spec, "decode", [1, 4], [1024], "h100", None, 1, True)
    assert predicted["time_ms"].tolist() == expected["time_ms"].tolist()
