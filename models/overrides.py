"""`--set KEY=VALUE` overrides of a layer or a model spec, checked against the spec's fields.

A layer takes its own fields (`d_state=64`). A model takes its top-level fields (`d_model`,
`vocab_size`, `pattern`, `norm`, `tie_embeddings`, `max_seqlen`) and its mixers' fields as
`KIND.FIELD` (`mamba2.d_state=64`). A new d_model reaches every mixer; a pattern letter with no
mixer spec yet gets the default one (`models.registry.default_mixer`). The result is validated
as any spec is and carries a name that shows what changed: `mamba2[d_state=64]`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from models.registry import SPEC_TYPES, complete_model, default_mixer
from models.specs import MixerSpec, ModelSpec, SpecError, parse_value

MODEL_SETTABLE = ("d_model", "vocab_size", "pattern", "norm", "tie_embeddings", "max_seqlen")


def parse_assignments(items: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """("KEY", "VALUE") pairs from `KEY=VALUE` strings, in order (one-line error for a malformed one)."""
    pairs = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. d_state=64 or mamba2.d_state=64")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def label(name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """The name an overridden spec's results carry: `name[k=v,k2=v2]` (the name alone without any)."""
    return f"{name}[{','.join(f'{k}={v}' for k, v in pairs)}]" if pairs else name


def override_layer(spec: MixerSpec, pairs: Sequence[tuple[str, str]], where: str = "--set") -> MixerSpec:
    """The layer spec with each field replaced (the spec validates the result)."""
    cls = type(spec)
    changes = {key: parse_value(cls, key, value, where) for key, value in pairs}
    return replace(spec, **changes)


def override_model(spec: ModelSpec, pairs: Sequence[tuple[str, str]], where: str = "--set") -> ModelSpec:
    """The model spec with its top-level and `KIND.FIELD` overrides applied, named `label(...)`."""
    if not pairs:
        return spec
    top: dict = {}
    mixer_changes: dict[str, dict] = {}
    for key, value in pairs:
        kind, dot, field_name = key.partition(".")
        if dot:
            if kind not in SPEC_TYPES:
                raise SpecError(f"{where} {key}: unknown layer kind {kind!r} ({', '.join(SPEC_TYPES)})")
            mixer_changes.setdefault(kind, {})[field_name] = parse_value(SPEC_TYPES[kind], field_name, value, where)
        elif key in MODEL_SETTABLE:
            top[key] = parse_value(ModelSpec, key, value, where)
        else:
            raise SpecError(f"{where}: a model has no field {key!r} (top level: {', '.join(MODEL_SETTABLE)}; "
                            f"a layer's: KIND.FIELD with KIND one of {', '.join(SPEC_TYPES)})")
    d_model = top.pop("d_model", spec.d_model)
    mixers = {}
    for kind in SPEC_TYPES:
        mixer = getattr(spec, kind)
        if mixer is None and kind in mixer_changes:
            mixer = default_mixer(kind, d_model)
        if mixer is not None:
            mixer = replace(mixer, d_model=d_model, **mixer_changes.get(kind, {}))
        mixers[kind] = mixer
    rest = {name: getattr(spec, name) for name in MODEL_SETTABLE if name != "d_model"}
    rest.update(top)
    return complete_model(label(spec.name, pairs), d_model, mixers, where, description=spec.description,
                          source=spec.source, **rest)

