"""`perfbench models`: the known models with parameter counts, layer mix and decode state."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
import typer

from models.registry import all_models
from perfbench.output import emit


def models_frame(models_file: Path | None = None) -> pd.DataFrame:
    rows = []
    for spec in all_models(models_file).values():
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
    models_file: Optional[Path] = typer.Option(None, "--models-file", help="TOML file with more models"),
) -> None:
    """List models: parameters, layer pattern, KV bytes per token vs fixed SSM+conv state per sequence."""
    frame = models_frame(models_file)
    if format == "table":
        shown = frame.drop(columns=["layers"]).assign(params=frame["params"].map(lambda p: f"{p / 1e9:.3f}B"))
        emit(shown, "table", title="perfbench models (bf16 state and cache)", keep=["name"],
             priority=["params", "kv_bytes_per_token", "state_bytes_per_sequence", "n_layers", "max_seqlen",
                       "layer_mix"])
    else:
        emit(frame, format)
