"""One rank's share of a layer or model under tensor parallelism: the per-rank specs.

Megatron-style sharding (Shoeybi et al., arXiv 1909.08053, §3), without sequence parallelism:
- attention: n_heads/N query heads and n_kv_heads/N KV heads per rank (QKV column-parallel over
  heads, the output projection row-parallel);
- MLP: ffn_hidden/N units (fc1 column-parallel, fc2 row-parallel);
- Mamba-2: nheads/N heads and ngroups/N groups per rank, as `mamba_ssm.Mamba2(process_group=...)`
  splits them (in_proj column-parallel, conv, SSD scan, gated norm and state local, out_proj row-parallel);
- Mamba-1: d_inner/N channels; dt_rank and d_state stay whole (mamba_ssm has no TP Mamba-1);
- Mamba-3: d_inner/N channels, hence nheads/N heads; the B/C groups split where N divides them, else
  every rank computes the shared B and C (mamba_ssm's default is one group), and the RoPE angle
  projection, which is per layer, not per head, on every rank;
- Gated DeltaNet: n_k_heads/N key heads with their n_v_heads/N value heads (each rank keeps whole
  delta-rule states), in_proj column-parallel, out_proj row-parallel, as vLLM's Qwen3-Next layer;
- embedding and LM head: vocabulary-parallel, V/N rows per rank.
Norms and the residual stream stay replicated.

A shard is the layer's own spec with the split fields replaced (`dataclasses.replace`), so every
derived size (conv_dim, d_in_proj, params, state bytes) comes from the spec class itself. Mamba's
d_inner is derived (expand * d_model), so its shards are the spec subclassed with the degree `tp`
dividing d_inner: the same fields, the same properties, one number changed. The cost model
(`analytic.composition`), the memory model and the real and reference layers (`perfbench.tp.layers`) all
shard through here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from models.specs import LETTERS, Mamba2Spec, Mamba3Spec, MambaSpec, ModelSpec, SpecError


@dataclass(frozen=True)
class Mamba2Shard(Mamba2Spec):
    """One rank's Mamba-2 mixer: d_inner/N channels, hence nheads/N heads of headdim; ngroups is
    already the rank's own (ngroups/N)."""

    tp: int = 1

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model // self.tp


@dataclass(frozen=True)
class MambaShard(MambaSpec):
    """One rank's Mamba-1 mixer: d_inner/N channels; dt_rank and d_state stay whole."""

    tp: int = 1

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model // self.tp


@dataclass(frozen=True)
class Mamba3Shard(Mamba3Spec):
    """One rank's Mamba-3 mixer: d_inner/N channels, hence nheads/N heads; ngroups is the rank's own
    (ngroups/N where N divides it, else all of them, replicated)."""

    tp: int = 1

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model // self.tp


def check_tp(tp) -> int:
    """`tp` as an int, or a one-line SpecError unless it is a positive integer."""
    if isinstance(tp, bool) or not hasattr(tp, "__index__") or tp < 1:
        raise SpecError(f"tp must be a positive integer, got {tp!r}")
    return int(tp)


def _divides(tp: int, what: str, value: int, where: str) -> None:
    if value % tp:
        raise SpecError(f"tp={tp}: {where} has {value} {what}, not divisible by {tp}")


def _subclassed(spec, shard_class, tp: int, **changes):
    """`spec` as its shard class at degree `tp`, with `changes` to its fields."""
    values = {f.name: getattr(spec, f.name) for f in fields(spec) if f.init}
    return shard_class(**{**values, **changes, "tp": tp})


def shard_layer(spec, tp: int, where: str | None = None):
    """The per-rank spec of a mixer at tensor-parallel degree `tp` (the spec itself at tp=1)."""
    tp = check_tp(tp)
    if tp == 1:
        return spec
    where = where or spec.kind
    if spec.kind == "attention":
        _divides(tp, "query heads", spec.n_heads, where)
        _divides(tp, "KV heads", spec.n_kv_heads, where)
        return replace(spec, n_heads=spec.n_heads // tp, n_kv_heads=spec.n_kv_heads // tp)
    if spec.kind == "mlp":
        _divides(tp, "hidden units (ffn_hidden)", spec.ffn_hidden, where)
        return replace(spec, ffn_hidden=spec.ffn_hidden // tp)
    if spec.kind == "mamba2":
        _divides(tp, "heads", spec.nheads, where)
        _divides(tp, "groups", spec.ngroups, where)
        return _subclassed(spec, Mamba2Shard, tp, ngroups=spec.ngroups // tp)
    if spec.kind == "mamba":
        _divides(tp, "inner channels (d_inner)", spec.d_inner, where)
        return _subclassed(spec, MambaShard, tp)
    if spec.kind == "mamba3":
        _divides(tp, "heads", spec.nheads, where)
        groups = spec.ngroups // tp if spec.ngroups % tp == 0 else spec.ngroups
        return _subclassed(spec, Mamba3Shard, tp, ngroups=groups)
    if spec.kind == "gdn":
        _divides(tp, "key heads", spec.n_k_heads, where)
        return replace(spec, n_k_heads=spec.n_k_heads // tp, n_v_heads=spec.n_v_heads // tp)
    raise SpecError(f"cannot shard a {spec.kind!r} layer")


def allreduced_widths(spec) -> tuple[tuple[str, int], ...]:
    """The partial sums a rank's share of a mixer leaves to all-reduce, in call order, as (the projection
    that makes them, their width per token): the row-parallel output projection's; Mamba-1's x_proj's
    first, which reduces over d_inner: its small (dt, B, C) output is summed before dt_proj
    (column-parallel) and the scan (the natural split; mamba_ssm has no TP Mamba-1)."""
    out = (("out", spec.d_model),)
    if spec.kind == "mamba":
        return (("x_proj", spec.dt_rank + 2 * spec.d_state),) + out
    return out


def shard_model(spec: ModelSpec, tp: int) -> ModelSpec:
    """One rank's model: vocabulary V/N, each mixer the pattern uses replaced by its shard (a
    ModelSpec like any other, so op lists and memory footprints apply to it unchanged)."""
    tp = check_tp(tp)
    if tp == 1:
        return spec
    kinds = [LETTERS[letter] for letter in dict.fromkeys(spec.pattern)]  # first-appearance order
    shards = {kind: shard_layer(getattr(spec, kind), tp, f"{spec.name} {kind}") for kind in kinds}
    _divides(tp, "vocabulary entries", spec.vocab_size, f"{spec.name} embedding/LM head")
    return replace(spec, vocab_size=spec.vocab_size // tp, **shards)
