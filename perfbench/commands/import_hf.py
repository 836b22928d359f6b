"""`perfbench import-hf`: a Hugging Face config.json as a models-file entry (TOML), to edit."""

from __future__ import annotations

from pathlib import Path

import typer

from models.hf import load_hf_config
from models.registry import model_toml
from perfbench.commands.selection import NameOption


def import_hf_command(
    path: Path = typer.Argument(..., help="A config.json, or a directory holding one."),
    name: NameOption = None,
) -> None:
    """Print the models-file TOML of a Hugging Face config: every field written out, so editing one
    and passing the file to --models-file gives exactly that change (see docs/models.md)."""
    spec = load_hf_config(path, name=name)
    typer.echo(f"# perfbench models file: {spec.name}, imported from {spec.source} ({spec.params / 1e9:.3f}B parameters)")
    typer.echo(model_toml(spec), nl=False)
