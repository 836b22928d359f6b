"""The model-selection options every command shares, defined once, and the one resolver behind them.

`--model`, `--layer`, `--models-file`, `--hf-config`, `--name` and `--set` mean the same in
`models`, `predict`, `run`, `trace` and `calibrate`: each command declares them with the
`Annotated` types below and turns them into targets with `resolve_targets` (a plain function,
callable without typer). A target is `models.registry.Target(kind, name, spec)`: kind "layer" or
"model", the name its results carry (an overridden spec's name shows the overrides:
`mamba2[d_state=64]`), and the spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional, Sequence

import typer

from models.hf import load_hf_config
from models.overrides import label, override_layer, override_model, parse_assignments
from models.registry import BUILTIN_LAYERS, PAPER_MODELS, Target, all_models, get_layer, get_model
from models.specs import SpecError
from perfbench.sizes import parse_names

ModelOption = Annotated[Optional[str], typer.Option(
    "--model", help="Model names, comma-separated, or 'all' (the paper's four 8B models); "
                    "see `perfbench models`.")]
LayerOption = Annotated[Optional[str], typer.Option(
    "--layer", help="Layer names, comma-separated, or 'all' (mamba, mamba2, attention, attention-mha, mlp, "
                    "or a layer of --models-file).")]
ModelsFileOption = Annotated[Optional[Path], typer.Option(
    "--models-file", help="TOML file with more models (its models.NAME tables) and layers (layers.NAME); "
                          "see docs/models.md.")]
HfConfigOption = Annotated[Optional[Path], typer.Option(
    "--hf-config", help="A Hugging Face config.json, or a directory holding one: the model it describes "
                        "(named after the directory unless --name).")]
NameOption = Annotated[Optional[str], typer.Option(
    "--name", help="Name of the --hf-config model (default: its directory's name).")]
SetOption = Annotated[Optional[List[str]], typer.Option(
    "--set", help="Override a field, KEY=VALUE (repeatable): a layer's (d_state=64) or a model's "
                  "(d_model=2048, pattern=M*M-, mamba2.d_state=64).")]


def resolve_targets(model: str | None = None, layer: str | None = None, models_file: Path | None = None,
                    hf_config: Path | None = None, sets: Sequence[str] | None = None,
                    name: str | None = None) -> list[Target]:
    """The targets the options select, overrides applied; one-line errors (SpecError) otherwise.

    Exactly one of `layer`, or `model` and/or `hf_config`, must be given. 'all' means every built-in
    layer, or the paper's four models. `sets` apply to every selected target.
    """
    return [target for target, _ in resolve_selection(model, layer, models_file, hf_config, sets, name)]


def resolve_selection(model: str | None = None, layer: str | None = None, models_file: Path | None = None,
                      hf_config: Path | None = None, sets: Sequence[str] | None = None,
                      name: str | None = None) -> list[tuple[Target, list[str]]]:
    """`resolve_targets`, each target with the command-line arguments that select it alone
    (for a child `perfbench run` of one target, as `perfbench trace --ncu` starts)."""
    if layer is not None and (model is not None or hf_config is not None):
        raise SpecError("give exactly one kind of target: --layer NAMES, or --model NAMES and/or --hf-config PATH")
    if layer is None and model is None and hf_config is None:
        raise SpecError("give --model NAMES, --layer NAMES or --hf-config PATH")
    if name is not None and hf_config is None:
        raise SpecError("--name names the --hf-config model: give --hf-config too")
    pairs = parse_assignments(sets)
    common = selection_arguments(models_file=models_file, sets=sets)
    if layer is not None:
        names = parse_names(layer)
        names = list(BUILTIN_LAYERS) if names == ["all"] else names
        return [(Target("layer", label(n, pairs), override_layer(get_layer(n, models_file), pairs)),
                 ["--layer", n, *common]) for n in names]
    chosen = []
    if model is not None:
        names = parse_names(model)
        names = list(PAPER_MODELS) if names == ["all"] else names
        chosen += [(get_model(n, models_file), ["--model", n, *common]) for n in names]
    if hf_config is not None:
        chosen.append((load_hf_config(hf_config, name=name),
                       selection_arguments(hf_config=hf_config, name=name, sets=sets)))
    return [(Target("model", spec.name, spec), args)
            for spec, args in ((override_model(spec, pairs), args) for spec, args in chosen)]


def listed_models(model: str | None = None, models_file: Path | None = None, hf_config: Path | None = None,
                  sets: Sequence[str] | None = None, name: str | None = None) -> list:
    """The ModelSpecs `perfbench models` lists: the selected ones, or every known model (built in,
    the models file's) with the --hf-config model beside them."""
    if model is None and not sets:
        extra = [t.spec for t in resolve_targets(hf_config=hf_config, name=name)] if hf_config else []
        return list(all_models(models_file).values()) + extra
    if model is None and hf_config is None:
        raise SpecError("--set needs the model it changes: give --model or --hf-config")
    return [t.spec for t in resolve_targets(model=model, models_file=models_file, hf_config=hf_config,
                                            sets=sets, name=name)]


def selection_arguments(model: str | None = None, layer: str | None = None, models_file: Path | None = None,
                        hf_config: Path | None = None, sets: Sequence[str] | None = None,
                        name: str | None = None) -> list[str]:
    """The same selection as command-line arguments (for a child `perfbench run`)."""
    args: list[str] = []
    for flag, value in (("--model", model), ("--layer", layer), ("--models-file", models_file),
                        ("--hf-config", hf_config), ("--name", name)):
        if value is not None:
            args += [flag, str(value)]
    for item in sets or ():
        args += ["--set", item]
    return args
