"""Hugging Face `config.json` -> ModelSpec (torch-free). Filled in by the next commit."""

from __future__ import annotations

from pathlib import Path

from models.specs import ModelSpec, SpecError


def load_hf_config(path: Path, name: str | None = None) -> ModelSpec:
    raise SpecError("--hf-config is not implemented yet")
