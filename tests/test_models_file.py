"""Models files: named layers, omitted layer tables, built-in names kept, bad paths one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from models.registry import default_mixer, get_layer, get_model, load_models_file
from models.specs import SpecError


def _write(tmp_path, text: str):
    path = tmp_path / "models.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_layers_table_defines_a_named_layer(tmp_path):
    path = _write(tmp_path, """
        [layers.small-state]
        kind = "mamba2"
        d_model = 2048
        d_state = 32
    """)
    spec = get_layer("small-state", path)
    assert (spec.kind, spec.d_model, spec.d_state) == ("mamba2", 2048, 32)


def test_layers_table_without_a_kind_is_refused(tmp_path):
    path = _write(tmp_path, "[layers.x]\nd_state = 32\n")
    with pytest.raises(SpecError, match="needs kind"):
        load_models_file(path)


def test_omitted_layer_table_gets_the_default_for_the_model_width(tmp_path):
    path = _write(tmp_path, """
        [models.wide]
        d_model = 2048
        vocab_size = 1000
        pattern = "m*-"
    """)
    spec = get_model("wide", path)
    assert spec.mamba == default_mixer("mamba", 2048)
    assert spec.mamba.dt_rank == 128  # ceil(2048 / 16), mamba_ssm's "auto"
    assert (spec.attention.n_heads, spec.attention.head_dim) == (16, 128)
    assert spec.mlp.ffn_hidden == 4 * 2048


@pytest.mark.parametrize("section,name", [("models", "mamba2-8b"), ("layers", "mamba2")])
def test_a_file_that_redefines_a_builtin_name_is_refused(tmp_path, section, name):
    body = 'vocab_size = 1000\npattern = "M"\n' if section == "models" else 'kind = "mamba2"\n'
    path = _write(tmp_path, f'[{section}."{name}"]\n{body}')
    with pytest.raises(SpecError, match="redefines a built-in"):
        load_models_file(path)


def test_a_directory_as_models_file_is_refused(tmp_path):
    with pytest.raises(SpecError, match="is a directory"):
        load_models_file(tmp_path)


def test_a_model_field_of_the_wrong_type_is_refused(tmp_path):
    path = _write(tmp_path, '[models.x]\nvocab_size = "big"\npattern = "M"\n')
    with pytest.raises(SpecError, match="vocab_size must be int"):
        load_models_file(path)


def test_directory_models_file_on_the_cli_is_one_line_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "perfbench", "models", "--models-file", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr


def test_named_layer_with_overrides_on_the_cli(tmp_path):
    path = _write(tmp_path, '[layers.small-state]\nkind = "mamba2"\nd_state = 32\n')
    done = subprocess.run([sys.executable, "-m", "perfbench", "predict", "--layer", "small-state", "--models-file",
                           str(path), "--set", "headdim=128", "--format", "csv"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "small-state[headdim=128]" in done.stdout


def test_the_models_file_example_in_the_docs_loads(tmp_path):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    path = _write(tmp_path, re.search(r"```toml\n(.*?)```", text, re.S).group(1))
    loaded = load_models_file(path)
    assert set(loaded.models) == {"my-hybrid", "mamba2-2.7b"} and set(loaded.layers) == {"small-state"}
    assert loaded.models["my-hybrid"].mamba2.d_state == 64
