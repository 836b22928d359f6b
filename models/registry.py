"""Named configurations: the paper's four 8B models, their layers, and user models from TOML.

Sources: NVIDIA Megatron-LM `examples/mamba/` (train.sh,
run_text_gen_server_8b.sh, run_text_gen_server_8b_gpt3.sh), `megatron/core/ssm/mamba_mixer.py`
defaults, and arXiv 2406.07887 (Waleffe et al., 2024) §3. Parameter counts were checked against
modules built on an H100 (8,539,869,184 Transformer with RMSNorm; 8,654,517,248 hybrid).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from models.specs import (LETTERS, AttentionSpec, GatedDeltaNetSpec, Mamba2Spec, Mamba3Spec, MambaSpec, MixerSpec,
                          MLPSpec, ModelSpec, SpecError, settable_fields, typed_value)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

@dataclass(frozen=True)
class Target:
    """A layer (MixerSpec) or a whole model (ModelSpec) under the name its results carry."""

    kind: str  # "layer" | "model"
    name: str
    spec: object


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

# Mamba-3 in place of Mamba-2: the Mamba-2 8B's d_state 128, head dim 64 (128 heads), expand 2;
# mamba_ssm 2.3.2 Mamba3's own defaults for the rest (arXiv 2603.15569; modules/mamba3.py): one B/C
# group, RoPE on half of d_state, SISO, chunk 64 ("Recommended: 64 for SISO").
MAMBA3_8B = Mamba3Spec(d_model=D_MODEL, d_state=128, expand=2, headdim=64, ngroups=1, rope_fraction=0.5,
                       mimo_rank=1, chunk_size=64)
# Gated DeltaNet at the 8B scale: Qwen3.5's dense 9B text config (transformers / vLLM
# `Qwen3_5TextConfig`: hidden_size 4096, linear_num_key_heads 16, linear_num_value_heads 32,
# linear_key_head_dim 128, linear_value_head_dim 128, linear_conv_kernel_dim 4), the same linear-
# attention shapes as Qwen3-Next-80B-A3B; fla's chunk size 64.
GDN_8B = GatedDeltaNetSpec(d_model=D_MODEL, n_k_heads=16, n_v_heads=32, head_k_dim=128, head_v_dim=128,
                           d_conv=4, output_gate=True, chunk_size=64)

HYBRID_PATTERN = "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"
# The paper's hybrid with each Mamba-2 block a Mamba-3 block (same order, same attention and MLPs).
MAMBA3_HYBRID_PATTERN = HYBRID_PATTERN.replace("M", "3")
# Gated DeltaNet 3:1 with attention as Qwen3-Next / Qwen3.5 interleave them (full_attention_interval 4),
# each mixer followed by the paper's MLP: 56 blocks = 21 GDN + 7 attention + 28 MLP.
GDN_HYBRID_PATTERN = "G-G-G-*-" * 7

BUILTIN_LAYERS: dict[str, MixerSpec] = {
    "mamba": MAMBA_8B,
    "mamba2": MAMBA2_8B,
    "mamba3": MAMBA3_8B,
    "gdn": GDN_8B,
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

# Newer mixers at the paper's scale: not in the paper, so kept out of PAPER_MODELS.
_NEW_MIXER_MODELS = (
    ModelSpec(name="mamba3-hybrid-8b", d_model=D_MODEL, vocab_size=VOCAB, pattern=MAMBA3_HYBRID_PATTERN,
              mamba3=MAMBA3_8B, attention=ATTENTION_GQA_8B, mlp=MLP_8B,
              description="Mamba-3-Hybrid 8B: the paper's hybrid with Mamba-3 (SISO) for Mamba-2",
              source="Megatron-LM run_text_gen_server_8b.sh pattern; mamba_ssm 2.3.2 Mamba3 (arXiv 2603.15569)"),
    ModelSpec(name="gdn-hybrid-8b", d_model=D_MODEL, vocab_size=VOCAB, pattern=GDN_HYBRID_PATTERN,
              gdn=GDN_8B, attention=ATTENTION_GQA_8B, mlp=MLP_8B,
              description="Gated DeltaNet hybrid 8B: 21 GDN + 7 GQA attention (3:1) + 28 MLP",
              source="Qwen3.5 Qwen3_5TextConfig linear-attention shapes, 3:1 interleave; the paper's attention and MLP"),
)

CONTEXT_VARIANTS = {"4k": 4096, "16k": 16384, "32k": 32768, "128k": 131072}


def _builtin_models() -> dict[str, ModelSpec]:
    table: dict[str, ModelSpec] = {}
    for spec in _BASE_MODELS + _NEW_MIXER_MODELS:
        table[spec.name] = spec
        for suffix, seqlen in CONTEXT_VARIANTS.items():
            variant = f"{spec.name}-{suffix}"
            table[variant] = spec.with_seqlen(seqlen, variant)
    return table


BUILTIN_MODELS: dict[str, ModelSpec] = _builtin_models()
PAPER_MODELS = tuple(spec.name for spec in _BASE_MODELS)
NEW_MIXER_MODELS = tuple(spec.name for spec in _NEW_MIXER_MODELS)

SPEC_TYPES = {"mamba": MambaSpec, "mamba2": Mamba2Spec, "mamba3": Mamba3Spec, "gdn": GatedDeltaNetSpec,
              "attention": AttentionSpec, "mlp": MLPSpec}


def default_mixer(kind: str, d_model: int) -> MixerSpec:
    """The layer a model gets for a pattern letter whose table it omits: the spec class's defaults,
    with what scales with the width taken from d_model as the reference implementations do:
    Mamba-1 dt_rank = ceil(d/16) (mamba_ssm's "auto"), Mamba-2 groups = gcd(8, heads) so the heads
    split evenly, attention heads of 128 covering d_model with gcd(8, heads) KV heads, Mamba-3 at
    mamba_ssm's defaults, Gated DeltaNet value heads of 128 covering d_model with half as many key heads
    (Qwen3.5's shapes at 4096), MLP 4 d."""
    if kind not in SPEC_TYPES:
        raise SpecError(f"unknown layer kind {kind!r} ({', '.join(SPEC_TYPES)})")
    if kind == "mamba":
        return MambaSpec(d_model=d_model, dt_rank=math.ceil(d_model / 16))
    if kind == "mamba2":
        nheads = 2 * d_model // 64
        return Mamba2Spec(d_model=d_model, ngroups=math.gcd(8, nheads) if nheads else 1)
    if kind == "attention":
        heads = max(1, d_model // 128)
        return AttentionSpec(d_model=d_model, n_heads=heads, n_kv_heads=math.gcd(8, heads), head_dim=128)
    if kind == "mamba3":
        return Mamba3Spec(d_model=d_model)
    if kind == "gdn":  # value heads of 128 covering d_model, half as many key heads (Qwen3.5 at 4096)
        v_heads = max(1, d_model // 128)
        return GatedDeltaNetSpec(d_model=d_model, n_k_heads=v_heads // 2 if v_heads % 2 == 0 else v_heads,
                                 n_v_heads=v_heads, head_k_dim=128, head_v_dim=128)
    return MLPSpec(d_model=d_model, ffn_hidden=4 * d_model)


def mixer_from_table(kind: str, table: dict, d_model: int, where: str) -> MixerSpec:
    """A layer spec from a file's table: each key checked against the class's fields and types."""
    cls = SPEC_TYPES[kind]
    values = {key: typed_value(cls, key, value, f"{where} [{kind}]") for key, value in table.items()}
    return cls(**{"d_model": d_model, **values})


def complete_model(name: str, d_model: int, mixers: dict, where: str, **fields_) -> ModelSpec:
    """A ModelSpec whose pattern letters without a mixer spec get `default_mixer`s."""
    pattern = fields_.get("pattern", "")
    mixers = dict(mixers)
    for letter in set(pattern):
        kind = LETTERS.get(letter)
        if kind is not None and mixers.get(kind) is None:
            mixers[kind] = default_mixer(kind, d_model)
    return ModelSpec(name=name, d_model=d_model, **fields_, **mixers)


@dataclass(frozen=True)
class ModelsFile:
    """What a models file defines: `[models.NAME]` model tables and `[layers.NAME]` layer tables."""

    path: Path
    models: dict
    layers: dict


def load_models_file(path: Path) -> ModelsFile:
    """Models and named layers from a TOML file; a name a built-in already has is refused.

    Example::

        [models.my-hybrid]
        d_model = 4096
        vocab_size = 256000
        pattern = "M-M*-"          # the MLP (-) table is omitted: default_mixer gives it
        [models.my-hybrid.mamba2]
        d_state = 64
        [models.my-hybrid.attention]
        n_heads = 32
        n_kv_heads = 8

        [layers.mamba2-small-state]   # --layer mamba2-small-state
        kind = "mamba2"
        d_state = 32
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"models file not found: {path}") from None
    except IsADirectoryError:
        raise SpecError(f"models file {path} is a directory (give a .toml file)") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file") from None
    except OSError as exc:
        raise SpecError(f"cannot read models file {path}: {exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"models", "layers"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level tables {unknown} (models, layers)")
    models, layers = data.get("models", {}), data.get("layers", {})
    for section, table in (("models", models), ("layers", layers)):
        if not isinstance(table, dict):
            raise SpecError(f"{path}: [{section}] must be a table of {section[:-1]} tables")
    out_models: dict[str, ModelSpec] = {}
    out_layers: dict[str, MixerSpec] = {}
    for name, table in layers.items():
        if name in BUILTIN_LAYERS:
            raise SpecError(f"{path}: layer {name!r} redefines a built-in layer (choose another name)")
        out_layers[name] = _guarded(f"{path}: layer {name!r}", _layer_from_table, table)
    for name, table in models.items():
        if name in BUILTIN_MODELS:
            raise SpecError(f"{path}: model {name!r} redefines a built-in model (choose another name)")
        where = f"{path}: model {name!r}"
        out_models[name] = _guarded(where, _model_from_table, name, table, where, str(path))
    return ModelsFile(path, out_models, out_layers)


def load_models_toml(path: Path) -> dict[str, ModelSpec]:
    """The `[models.NAME]` tables of a models file (see `load_models_file`)."""
    return load_models_file(path).models


def _guarded(where: str, build, *args):
    """`build(*args)` with a stray TypeError/ValueError from a dataclass turned into one SpecError line."""
    try:
        return build(*args)
    except SpecError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise SpecError(f"{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _layer_from_table(table) -> MixerSpec:
    if not isinstance(table, dict):
        raise SpecError("must be a table")
    table = dict(table)
    kind = table.pop("kind", None)
    if kind not in SPEC_TYPES:
        raise SpecError(f"needs kind = one of {', '.join(SPEC_TYPES)}, got {kind!r}")
    d_model = typed_value(SPEC_TYPES[kind], "d_model", table.pop("d_model", D_MODEL), "d_model")
    return mixer_from_table(kind, table, d_model, f"kind {kind}")


def _model_from_table(name: str, table, where: str, source: str) -> ModelSpec:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: must be a table")
    table = dict(table)
    d_model = typed_value(ModelSpec, "d_model", table.pop("d_model", D_MODEL), where)
    mixers = {}
    for kind in SPEC_TYPES:
        if kind in table:
            sub = table.pop(kind)
            if not isinstance(sub, dict):
                raise SpecError(f"{where}: [{kind}] must be a table of {kind} hyper-parameters")
            mixers[kind] = mixer_from_table(kind, sub, d_model, where)
    values = {key: typed_value(ModelSpec, key, value, where) for key, value in table.items()}
    values.setdefault("source", source)
    return complete_model(name, d_model, mixers, where, **values)


def _file(models_file: Path | None) -> ModelsFile | None:
    return load_models_file(models_file) if models_file is not None else None


def get_model(name: str, models_file: Path | None = None) -> ModelSpec:
    table = all_models(models_file)
    if name not in table:
        known = ", ".join(PAPER_MODELS + NEW_MIXER_MODELS)
        extra = f"; in {models_file}: {', '.join(table.keys() - BUILTIN_MODELS.keys()) or 'none'}" if models_file else ""
        raise SpecError(f"unknown model {name!r} (built in: {known}, each also with -4k/-16k/-32k/-128k{extra})")
    return table[name]


def get_layer(name: str, models_file: Path | None = None) -> MixerSpec:
    table = all_layers(models_file)
    if name not in table:
        raise SpecError(f"unknown layer {name!r} (known: {', '.join(table)})")
    return table[name]


def all_models(models_file: Path | None = None) -> dict[str, ModelSpec]:
    loaded = _file(models_file)
    return {**BUILTIN_MODELS, **(loaded.models if loaded else {})}


def all_layers(models_file: Path | None = None) -> dict[str, MixerSpec]:
    loaded = _file(models_file)
    return {**BUILTIN_LAYERS, **(loaded.layers if loaded else {})}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


def spec_table(spec) -> dict:
    """A models-file table of a model or layer spec, every field written out: `model_toml` writes it,
    run manifests record it, and `spec_from_table` reads it back to an equal spec."""
    if isinstance(spec, ModelSpec):
        table = {name: getattr(spec, name) for name in settable_fields(ModelSpec)}
        for kind in SPEC_TYPES:
            mixer = getattr(spec, kind)
            if mixer is not None:
                table[kind] = {name: getattr(mixer, name) for name in settable_fields(type(mixer))
                               if name != "d_model"}
        return table
    return {"kind": spec.kind, **{name: getattr(spec, name) for name in settable_fields(type(spec))}}


def spec_from_table(kind: str, name: str, table: dict, where: str = "spec table"):
    """The spec a `spec_table` describes ("model" or "layer"); one-line SpecError if it does not."""
    if kind == "model":
        return _guarded(where, _model_from_table, name, table, where, table.get("source", ""))
    return _guarded(where, _layer_from_table, table)


def model_toml(spec: ModelSpec) -> str:
    """A models-file entry that loads back (`load_models_file`) to a spec equal to `spec`."""
    key = f"models.{json.dumps(spec.name)}"
    table = spec_table(spec)
    lines = [f"[{key}]"] + [f"{name} = {_toml_value(value)}" for name, value in table.items()
                             if not isinstance(value, dict)]
    for kind, mixer in table.items():
        if isinstance(mixer, dict):
            lines += ["", f"[{key}.{kind}]"] + [f"{name} = {_toml_value(value)}" for name, value in mixer.items()]
    return "\n".join(lines) + "\n"
