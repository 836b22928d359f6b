"""Named configurations: the paper's four 8B models, their layers, and user models from TOML.

Sources (see ../shared/paper-8b-configs.md): NVIDIA Megatron-LM `examples/mamba/` (train.sh,
run_text_gen_server_8b.sh, run_text_gen_server_8b_gpt3.sh), `megatron/core/ssm/mamba_mixer.py`
defaults, and arXiv 2406.07887 (Waleffe et al., 2024) §3. Parameter counts were checked against
modules built on an H100 (8,539,869,184 Transformer with RMSNorm; 8,654,517,248 hybrid).
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from models.specs import (AttentionSpec, Mamba2Spec, MambaSpec, MixerSpec, MLPSpec, ModelSpec,
                          SpecError)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

D_MODEL = 4096
VOCAB = 256_000  # SentencePiece vocabulary shared by all four models (arXiv 2406.07887 §3)

# Mamba-1 8B: d_inner 8192 (expand 2), d_conv 4, dt_rank 256 = ceil(4096/16).
# d_state 128, not mamba_ssm's default 16: arXiv 2406.07887 Table 1 gives "State Dim 128" for the
# Mamba 8B model and 8.15B parameters; with 128 this spec counts 8,148,783,104 (8.15B), with 16 it
# would count 7.99B. (mamba_ssm issue #249 confirms 16 only for the original Mamba-7B.)
MAMBA_8B = MambaSpec(d_model=D_MODEL, d_state=128, d_conv=4, expand=2, dt_rank=256)
# Mamba-2 8B: expand 2, head dim 64 (128 heads), d_state 128, 8 groups, chunk 128 (Megatron).
MAMBA2_8B = Mamba2Spec(d_model=D_MODEL, d_state=128, d_conv=4, expand=2, headdim=64, ngroups=8,
                       chunk_size=128)
# Hybrid attention: GQA 32 query heads x 128, 8 KV heads, no position embedding.
ATTENTION_GQA_8B = AttentionSpec(d_model=D_MODEL, n_heads=32, n_kv_heads=8, head_dim=128)
# Transformer attention: MHA 32 x 128, RoPE on half of each head (rotary fraction 0.5).
ATTENTION_MHA_8B = AttentionSpec(d_model=D_MODEL, n_heads=32, n_kv_heads=32, head_dim=128,
                                 rotary_fraction=0.5)
# MLP: 4096 -> 16384 -> 4096, squared ReLU, not gated.
MLP_8B = MLPSpec(d_model=D_MODEL, ffn_hidden=16384, activation="squared_relu", gated=False)

HYBRID_PATTERN = "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"

BUILTIN_LAYERS: dict[str, MixerSpec] = {
    "mamba": MAMBA_8B,
    "mamba2": MAMBA2_8B,
    "attention": ATTENTION_GQA_8B,
    "attention-mha": ATTENTION_MHA_8B,
    "mlp": MLP_8B,
}

_BASE_MODELS = (
    ModelSpec(name="transformer-8b", d_model=D_MODEL, vocab_size=VOCAB, pattern="*-" * 32,
              norm="layernorm", attention=ATTENTION_MHA_8B, mlp=MLP_8B,
              description="Transformer 8B: 32 x (MHA + MLP), RoPE 0.5, LayerNorm",
              source="Megatron-LM examples/mamba/run_text_gen_server_8b_gpt3.sh"),
    ModelSpec(name="mamba-8b", d_model=D_MODEL, vocab_size=VOCAB, pattern="m" * 56,
              mamba=MAMBA_8B, description="Mamba 8B: 56 Mamba-1 layers",
              source="arXiv 2406.07887 §3; mamba_ssm Mamba defaults"),
    ModelSpec(name="mamba2-8b", d_model=D_MODEL, vocab_size=VOCAB, pattern="M" * 56,
              mamba2=MAMBA2_8B, description="Mamba-2 8B: 56 Mamba-2 layers",
              source="Megatron-LM examples/mamba/train.sh; mamba_mixer.py"),
    ModelSpec(name="mamba2-hybrid-8b", d_model=D_MODEL, vocab_size=VOCAB, pattern=HYBRID_PATTERN,
              mamba2=MAMBA2_8B, attention=ATTENTION_GQA_8B, mlp=MLP_8B,
              description="Mamba-2-Hybrid 8B: 24 Mamba-2 + 4 GQA attention + 28 MLP",
              source="Megatron-LM examples/mamba/run_text_gen_server_8b.sh"),
)

CONTEXT_VARIANTS = {"4k": 4096, "16k": 16384, "32k": 32768, "128k": 131072}


def _builtin_models() -> dict[str, ModelSpec]:
    table: dict[str, ModelSpec] = {}
    for spec in _BASE_MODELS:
        table[spec.name] = spec
        for suffix, seqlen in CONTEXT_VARIANTS.items():
            variant = f"{spec.name}-{suffix}"
            table[variant] = spec.with_seqlen(seqlen, variant)
    return table


BUILTIN_MODELS: dict[str, ModelSpec] = _builtin_models()
PAPER_MODELS = tuple(spec.name for spec in _BASE_MODELS)

_SPEC_TYPES = {"mamba": MambaSpec, "mamba2": Mamba2Spec, "attention": AttentionSpec, "mlp": MLPSpec}


def _mixer_from_table(kind: str, table: dict, d_model: int, where: str) -> MixerSpec:
    cls = _SPEC_TYPES[kind]
    allowed = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown {kind} keys {unknown} (allowed: {sorted(allowed)})")
    return cls(**{"d_model": d_model, **table})


def load_models_toml(path: Path) -> dict[str, ModelSpec]:
    """User models from a TOML file; each `[models.NAME]` table is a ModelSpec.

    Example::

        [models.my-hybrid]
        d_model = 4096
        vocab_size = 256000
        pattern = "M-M*-"
        [models.my-hybrid.mamba2]
        d_state = 64
        [models.my-hybrid.attention]
        n_heads = 32
        n_kv_heads = 8
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"models file not found: {path}") from None
    except IsADirectoryError:
        raise SpecError(f"models file {path} is a directory; give the TOML file itself") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (a models file is TOML)") from None
    except OSError as exc:
        raise SpecError(f"cannot read models file {path}: {exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    out: dict[str, ModelSpec] = {}
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise SpecError(f"{path}: [models] must be a table of model tables")
    for name, table in models.items():
        where = f"{path}: model {name!r}"
        try:
            out[name] = _model_from_table(name, table, where, str(path))
        except SpecError:
            raise
        except (TypeError, ValueError, AttributeError) as exc:
            raise SpecError(f"{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return out


def _model_from_table(name: str, table, where: str, source: str) -> ModelSpec:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: must be a table")
    table = dict(table)
    d_model = table.pop("d_model", D_MODEL)
    mixers = {}
    for kind in _SPEC_TYPES:
        if kind in table:
            sub = table.pop(kind)
            if not isinstance(sub, dict):
                raise SpecError(f"{where}: [{kind}] must be a table of {kind} hyper-parameters")
            mixers[kind] = _mixer_from_table(kind, sub, d_model, where)
    allowed = {"vocab_size", "pattern", "norm", "tie_embeddings", "max_seqlen", "description"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown keys {unknown}")
    return ModelSpec(name=name, d_model=d_model, source=source, **table, **mixers)


def get_model(name: str, models_file: Path | None = None) -> ModelSpec:
    table = dict(BUILTIN_MODELS)
    if models_file is not None:
        table.update(load_models_toml(models_file))
    if name not in table:
        known = ", ".join(PAPER_MODELS)
        raise SpecError(f"unknown model {name!r} (built in: {known}, each also with -4k/-16k/-32k/-128k)")
    return table[name]


def get_layer(name: str) -> MixerSpec:
    if name not in BUILTIN_LAYERS:
        raise SpecError(f"unknown layer {name!r} (known: {', '.join(BUILTIN_LAYERS)})")
    return BUILTIN_LAYERS[name]


def all_models(models_file: Path | None = None) -> dict[str, ModelSpec]:
    table = dict(BUILTIN_MODELS)
    if models_file is not None:
        table.update(load_models_toml(models_file))
    return table
