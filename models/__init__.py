"""Architecture specs (torch-free) and, in submodules imported on use, the real torch layers."""

from models.registry import (BUILTIN_LAYERS, BUILTIN_MODELS, PAPER_MODELS, all_models, get_layer,
                             get_model, load_models_toml)
from models.specs import (AttentionSpec, GatedDeltaNetSpec, Mamba2Spec, Mamba3Spec, MambaSpec, MixerSpec,
                          MLPSpec, ModelSpec, NormSpec, SpecError, parse_pattern)

__all__ = ["AttentionSpec", "BUILTIN_LAYERS", "BUILTIN_MODELS", "GatedDeltaNetSpec", "Mamba2Spec", "Mamba3Spec",
           "MambaSpec", "MixerSpec", "MLPSpec", "ModelSpec", "NormSpec", "PAPER_MODELS", "SpecError",
           "all_models", "get_layer", "get_model", "load_models_toml", "parse_pattern"]
