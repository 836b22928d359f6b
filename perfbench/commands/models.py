"""`perfbench models`: the known models with parameter counts, layer mix and decode state."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from models.registry import all_models
from perfbench.commands.selection import (HfConfigOption, ModelOption, ModelsFileOption, NameOption, SetOption,
                                          listed_models)
from perfbench.output import emit


def models_frame(models_file: Path | None = None, specs=None) -> pd.DataFrame:
    """One row per model: `specs`, or every known model (built in and the models file's)."""
    rows = []
    for spec in specs if specs is not None else all_models(models_file).values():
        mix = spec.layer_mix
        rows.append({
            "name": spec.name, "params": spec.params, "layers": spec.pattern,
            "n_layers": len(spec.pattern),
            "layer_mix": ", ".join(f"{n} {k}" for k, n in mix.items()),
            "max_seqlen": spec.max_seqlen,
            "kv_bytes_per_token": spec.kv_bytes_per_token(),
            "state_bytes_per_sequence": spec.state_bytes_per_sequence(),
        })
    return pd.DataFrame(rows)


def models_command(
    format: str = typer.Option("table", "--format", help="table | json | csv | markdown"),
    model: ModelOption = None,
    models_file: ModelsFileOption = None,
    hf_config: HfConfigOption = None,
    name: NameOption = None,
    sets: SetOption = None,
) -> None:
    """List models: parameters, layer pattern, KV bytes per token vs fixed SSM+conv state per sequence."""
    frame = models_frame(specs=listed_models(model, models_file, hf_config, sets, name))
    if format == "table":
        shown = frame.drop(columns=["layers"]).assign(params=frame["params"].map(lambda p: f"{p / 1e9:.3f}B"))
        emit(shown, "table", title="perfbench models (bf16 state and cache)")
    else:
        emit(frame, format)
