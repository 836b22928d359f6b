"""The model files under examples/: each loads, predicts, and matches the model it is shaped after."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytic.predict import predict
from models.hf import load_hf_config
from models.registry import get_layer, load_models_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HF = Path(__file__).parent / "data" / "hf"
SHAPED_AFTER = {"llama3-8b": "Meta-Llama-3-8B", "mamba2-2.7b": "mamba2-2.7b",
                "nemotron-h-8b": "Nemotron-H-8B-Base-8K"}


def _models() -> dict:
    out = {}
    for path in sorted(EXAMPLES.glob("*.toml")):
        for name, spec in load_models_file(path).models.items():
            out[name] = spec
    return out


def test_the_three_starting_points_are_there():
    assert set(SHAPED_AFTER) <= set(_models())


@pytest.mark.parametrize("name", sorted(_models()))
def test_example_model_predicts_both_phases(name):
    spec = _models()[name]
    for phase in ("prefill", "decode"):
        frame = predict(spec, phase, [1, 8], [1024])
        assert (frame["time_ms"] > 0).all() and frame["fits"].all()


@pytest.mark.parametrize("name", sorted(SHAPED_AFTER))
def test_example_has_the_parameters_of_the_model_it_is_shaped_after(name):
    reference = load_hf_config(HF / SHAPED_AFTER[name])
    spec = _models()[name]
    assert spec.params == reference.params
    assert spec.layers == reference.layers


def test_example_custom_layer_is_usable_with_layer():
    spec = get_layer("nemotron-h-mamba2", EXAMPLES / "nemotron-h-8b.toml")
    assert spec == load_hf_config(HF / "Nemotron-H-8B-Base-8K").mamba2
