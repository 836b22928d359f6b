"""The shared model-selection options: one resolver, the same options on every command, --set overrides."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from models.registry import MAMBA2_8B, get_model
from models.specs import SpecError
from perfbench.cli import app
from perfbench.commands.selection import resolve_selection, resolve_targets, selection_arguments

def _options(command: str) -> dict:
    import typer.main

    click_command = typer.main.get_command(app).commands[command]
    return {opt: param.help for param in click_command.params for opt in getattr(param, "opts", [])}


@pytest.mark.parametrize("command", ["predict", "run", "trace", "calibrate", "models"])
def test_every_command_has_the_shared_options_with_one_help_text(command):
    reference = _options("predict")
    flags = ["--model", "--models-file", "--hf-config", "--name", "--set"] + (["--layer"] if command != "models" else [])
    assert {flag: _options(command)[flag] for flag in flags} == {flag: reference[flag] for flag in flags}


def test_layer_override_changes_the_field_and_names_the_target():
    (target,) = resolve_targets(layer="mamba2", sets=["d_state=64", "headdim=128"])
    assert (target.kind, target.name) == ("layer", "mamba2[d_state=64,headdim=128]")
    assert (target.spec.d_state, target.spec.headdim, target.spec.expand) == (64, 128, MAMBA2_8B.expand)


def test_model_override_reaches_the_mixer():
    (target,) = resolve_targets(model="mamba2-8b", sets=["mamba2.d_state=64"])
    assert target.name == "mamba2-8b[mamba2.d_state=64]"
    assert target.spec.mamba2.d_state == 64 and target.spec.pattern == get_model("mamba2-8b").pattern


def test_model_d_model_override_reaches_every_mixer():
    (target,) = resolve_targets(model="mamba2-hybrid-8b", sets=["d_model=2048"])
    assert {layer.d_model for layer in target.spec.layers} == {2048}


def test_pattern_override_adds_a_default_mixer_for_a_new_letter():
    (target,) = resolve_targets(model="mamba2-8b", sets=["pattern=M*M-"])
    assert target.spec.attention is not None and target.spec.attention.d_model == 4096
    assert target.spec.layer_mix == {"mamba2": 2, "attention": 1, "mlp": 1}


@pytest.mark.parametrize("sets,message", [
    (["nope=1"], "no field 'nope'"),
    (["d_state=1.5"], "d_state must be int"),
    (["rmsnorm=maybe"], "rmsnorm must be bool"),
    (["d_state"], "expected KEY=VALUE"),
    (["headdim=100"], "not a multiple of headdim"),
])
def test_bad_layer_override_is_a_spec_error(sets, message):
    with pytest.raises(SpecError, match=message):
        resolve_targets(layer="mamba2", sets=sets)


@pytest.mark.parametrize("sets,message", [
    (["mamba3.d_state=1"], "unknown layer kind 'mamba3'"),
    (["n_layers=3"], "a model has no field 'n_layers'"),
    (["mamba2.nope=1"], "no field 'nope'"),
])
def test_bad_model_override_is_a_spec_error(sets, message):
    with pytest.raises(SpecError, match=message):
        resolve_targets(model="mamba2-8b", sets=sets)


def test_layer_and_model_together_are_refused():
    with pytest.raises(SpecError, match="exactly one kind of target"):
        resolve_targets(model="mamba2-8b", layer="mamba2")


def test_each_target_carries_arguments_selecting_it_alone():
    selected = resolve_selection(layer="mamba2,mlp", sets=["d_model=1024"])
    assert [args for _, args in selected] == [["--layer", "mamba2", "--set", "d_model=1024"],
                                             ["--layer", "mlp", "--set", "d_model=1024"]]


def test_selection_arguments_reselect_the_same_targets():
    args = selection_arguments(model="mamba2-8b", sets=["mamba2.d_state=64"])
    again = resolve_targets(model=args[1], sets=[args[3]])
    assert again == resolve_targets(model="mamba2-8b", sets=["mamba2.d_state=64"])


def test_cli_override_error_is_one_line_and_exit_2():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "perfbench", "predict", "--layer", "mamba2", "--set", "nope=1"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nope" in done.stderr


def test_predict_shows_the_overridden_name():
    result = CliRunner().invoke(app, ["predict", "--layer", "mamba2", "--set", "d_state=64", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "mamba2[d_state=64]" in result.output


def test_trace_children_get_the_selection_and_each_point_its_own_target():
    from pathlib import Path

    from perfbench.traces.capture import TraceRequest, run_arguments

    selected = resolve_selection(layer="mamba2,mlp", sets=["d_model=1024"])
    request = TraceRequest(kind="layer", targets=tuple(t.name for t, _ in selected), phases=("decode",),
                           batches=(1,), seqlens=(64,),
                           selection=tuple(selection_arguments(layer="mamba2,mlp", sets=["d_model=1024"])),
                           selectors=tuple(tuple(a) for _, a in selected), resolved=tuple(t for t, _ in selected))
    whole = run_arguments(request, Path("r"))
    assert whole[:4] == ["--layer", "mamba2,mlp", "--set", "d_model=1024"]
    point = run_arguments(request, Path("r"), [("mlp[d_model=1024]", "decode", 1, 64)])
    assert point[:4] == ["--layer", "mlp", "--set", "d_model=1024"]
