"""Config edits for the What-if page, as pure functions over ModelSpec (testable without Streamlit)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from models.hf import load_hf_config, parse_config, spec_from_config
from models.registry import default_mixer
from models.specs import ModelSpec, SpecError

ATTENTION, MLP = "*", "-"


def attention_count(pattern: str) -> int:
    return pattern.count(ATTENTION)


def with_attention_count(pattern: str, n: int, ssm_letter: str = "M") -> str:
    """The same block sequence with `n` of its mixer blocks attention, spread evenly, the rest SSM.

    MLP blocks stay where they are. Mixer k of K becomes attention when it is the nearest to one
    of n evenly spaced targets, as the paper's hybrid spreads its 4 attention layers.
    """
    mixers = [i for i, c in enumerate(pattern) if c != MLP]
    if not 0 <= n <= len(mixers):
        raise SpecError(f"attention layers must be between 0 and {len(mixers)}, got {n}")
    k = len(mixers)
    chosen = {mixers[min(k - 1, int((j + 0.5) * k / n))] for j in range(n)} if n else set()
    letters = [c if c == MLP else (ATTENTION if i in chosen else (c if c != ATTENTION else ssm_letter))
               for i, c in enumerate(pattern)]
    return "".join(letters)


@dataclass(frozen=True)
class Edits:
    """What the What-if page lets a person change; None leaves the base value."""

    d_state: int | None = None
    expand: int | None = None
    headdim: int | None = None
    ngroups: int | None = None
    n_attention: int | None = None
    n_kv_heads: int | None = None
    ffn_hidden: int | None = None
    pattern: str | None = None


def _changes(spec, **values) -> dict:
    return {k: v for k, v in values.items() if v is not None and hasattr(spec, k)}


def apply_edits(base: ModelSpec, edits: Edits, name: str | None = None) -> ModelSpec:
    """A new ModelSpec with the edits applied (SpecError, one line, for an impossible config)."""
    pattern = edits.pattern or base.pattern
    if edits.n_attention is not None and edits.n_attention != attention_count(pattern):
        ssm = "m" if "m" in pattern and "M" not in pattern else "M"
        pattern = with_attention_count(pattern, edits.n_attention, ssm)
    # A layer kind the base lacks gets the default for its width (the 8B layers at d_model 4096).
    mamba2 = base.mamba2 or (default_mixer("mamba2", base.d_model) if "M" in pattern else None)
    if mamba2 is not None:
        mamba2 = replace(mamba2, **_changes(mamba2, d_state=edits.d_state, expand=edits.expand,
                                              headdim=edits.headdim, ngroups=edits.ngroups))
    mamba = base.mamba
    if mamba is not None:
        mamba = replace(mamba, **_changes(mamba, d_state=edits.d_state, expand=edits.expand))
    attention = base.attention or (default_mixer("attention", base.d_model) if ATTENTION in pattern else None)
    if attention is not None and edits.n_kv_heads is not None:
        attention = replace(attention, n_kv_heads=edits.n_kv_heads)
    mlp = base.mlp
    if mlp is not None and edits.ffn_hidden is not None:
        mlp = replace(mlp, ffn_hidden=edits.ffn_hidden)
    return replace(base, name=name or f"{base.name} (edited)", pattern=pattern, mamba=mamba,
                   mamba2=mamba2, attention=attention, mlp=mlp)


def hf_base(path: str = "", upload: bytes | None = None, upload_name: str = "uploaded") -> ModelSpec:
    """The What-if page's base model from a Hugging Face config: an uploaded config.json (named
    `upload_name`) if there is one, else the config at `path` (a file or a model directory)."""
    if upload is not None:
        where = f"uploaded {upload_name}"
        return spec_from_config(parse_config(upload, where), upload_name, where)
    if not path.strip():
        raise SpecError("give the path of a config.json (or a model directory), or upload one")
    return load_hf_config(Path(path.strip()).expanduser())
