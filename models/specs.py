"""Architecture specs: the one source of truth for every layer and model configuration.

Both consumers read these: `analytic/` (FLOP and byte counts) and the real torch layers
(`models.torch_layers`, imported only where used). Nothing here imports torch.

Layer-pattern notation follows Megatron-LM's hybrid models (`megatron/core/ssm/mamba_hybrid_layer_
allocation.py`): `M` Mamba-2, `*` attention, `-` MLP. perfbench adds `m` for a Mamba-1 layer.
Each letter is one residual block with its own pre-norm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Union


class SpecError(ValueError):
    """A configuration that cannot describe a real layer or model (one-line message)."""


def _positive(name: str, **values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise SpecError(f"{name}: {key} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class NormSpec:
    """Pre-norm of a residual block. LayerNorm carries a bias; RMSNorm does not."""

    d_model: int
    kind: str = "rmsnorm"  # "rmsnorm" | "layernorm"
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _positive("norm", d_model=self.d_model)
        if self.kind not in ("rmsnorm", "layernorm"):
            raise SpecError(f"norm: unknown kind {self.kind!r} (rmsnorm, layernorm)")

    @property
    def params(self) -> int:
        return self.d_model * (2 if self.kind == "layernorm" else 1)


@dataclass(frozen=True)
class MambaSpec:
    """Mamba-1 mixer as `mamba_ssm.Mamba` builds it (arXiv 2312.00752, Alg. 2).

    in_proj d -> 2*d_inner (x, z); depthwise causal conv1d over x; x_proj d_inner -> dt_rank + 2*d_state;
    dt_proj dt_rank -> d_inner (with bias); selective scan with A (d_inner, d_state) and D (d_inner);
    out_proj d_inner -> d.
    """

    d_model: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 256
    conv_bias: bool = True
    bias: bool = False
    kind: str = field(default="mamba", init=False)
    letter: str = field(default="m", init=False)

    def __post_init__(self) -> None:
        _positive("mamba", d_model=self.d_model, d_state=self.d_state, d_conv=self.d_conv,
                  expand=self.expand, dt_rank=self.dt_rank)

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def params(self) -> int:
        d, di, n, r = self.d_model, self.d_inner, self.d_state, self.dt_rank
        in_proj = d * 2 * di + (2 * di if self.bias else 0)
        conv = di * self.d_conv + (di if self.conv_bias else 0)
        x_proj = di * (r + 2 * n)
        dt_proj = r * di + di
        a_log, d_skip = di * n, di
        out_proj = di * d + (d if self.bias else 0)
        return in_proj + conv + x_proj + dt_proj + a_log + d_skip + out_proj

    def state_bytes_per_sequence(self, ssm_state_bytes: int = 2, conv_state_bytes: int = 2) -> int:
        """Decode cache: conv state (d_inner, d_conv) and SSM state (d_inner, d_state).

        `Mamba.allocate_inference_cache` allocates both in the layer's dtype (bf16 here).
        """
        di = self.d_inner
        return di * self.d_conv * conv_state_bytes + di * self.d_state * ssm_state_bytes


@dataclass(frozen=True)
class Mamba2Spec:
    """Mamba-2 mixer as `mamba_ssm.Mamba2` builds it (arXiv 2405.21060, SSD).

    in_proj d -> [z (d_inner), x (d_inner), B (ngroups*d_state), C (ngroups*d_state), dt (nheads)];
    depthwise conv over x,B,C; chunked SSD scan; gated RMSNorm (grouped) then out_proj d_inner -> d.
    """

    d_model: int
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 8
    chunk_size: int = 128
    conv_bias: bool = True
    bias: bool = False
    rmsnorm: bool = True
    kind: str = field(default="mamba2", init=False)
    letter: str = field(default="M", init=False)

    def __post_init__(self) -> None:
        _positive("mamba2", d_model=self.d_model, d_state=self.d_state, d_conv=self.d_conv,
                  expand=self.expand, headdim=self.headdim, ngroups=self.ngroups,
                  chunk_size=self.chunk_size)
        if self.d_inner % self.headdim:
            raise SpecError(f"mamba2: d_inner {self.d_inner} is not a multiple of headdim {self.headdim}")
        if self.nheads % self.ngroups:
            raise SpecError(f"mamba2: nheads {self.nheads} is not a multiple of ngroups {self.ngroups}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.d_state

    @property
    def d_in_proj(self) -> int:
        return 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads

    @property
    def params(self) -> int:
        d, di, h = self.d_model, self.d_inner, self.nheads
        in_proj = d * self.d_in_proj + (self.d_in_proj if self.bias else 0)
        conv = self.conv_dim * self.d_conv + (self.conv_dim if self.conv_bias else 0)
        per_head = 3 * h  # A_log, D, dt_bias
        norm = di if self.rmsnorm else 0
        out_proj = di * d + (d if self.bias else 0)
        return in_proj + conv + per_head + norm + out_proj

    def state_bytes_per_sequence(self, ssm_state_bytes: int = 2, conv_state_bytes: int = 2) -> int:
        """Decode cache: conv state (conv_dim, d_conv) and SSM state (nheads, headdim, d_state).

        `Mamba2.allocate_inference_cache` allocates both in the layer's dtype unless told otherwise.
        """
        return (self.conv_dim * self.d_conv * conv_state_bytes
                + self.nheads * self.headdim * self.d_state * ssm_state_bytes)


@dataclass(frozen=True)
class AttentionSpec:
    """Causal self-attention with GQA (n_kv_heads < n_heads) or MHA, optional partial RoPE.

    `bias`: biases on the q/k/v and output projections (Megatron's add_bias_linear); `qkv_bias`:
    on q/k/v only, none on the output projection (Qwen2, transformers `Qwen2Attention`).
    `qk_norm`: RMSNorm over each head's head_dim channels of q and of k, one head_dim weight each,
    before RoPE (Qwen3, transformers `Qwen3Attention.q_norm`/`k_norm`).
    """

    d_model: int
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = 128
    rotary_fraction: float = 0.0  # 0 = no position embedding in the layer
    rope_base: float = 10000.0
    bias: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    norm_eps: float = 1e-6  # the q/k norms' epsilon
    kind: str = field(default="attention", init=False)
    letter: str = field(default="*", init=False)

    def __post_init__(self) -> None:
        _positive("attention", d_model=self.d_model, n_heads=self.n_heads,
                  n_kv_heads=self.n_kv_heads, head_dim=self.head_dim)
        if self.n_heads % self.n_kv_heads:
            raise SpecError(f"attention: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if not 0.0 <= self.rotary_fraction <= 1.0:
            raise SpecError(f"attention: rotary_fraction must be in [0, 1], got {self.rotary_fraction}")
        if not self.rope_base > 1.0 or not self.norm_eps > 0.0:
            raise SpecError(f"attention: rope_base must be > 1 and norm_eps > 0, got {self.rope_base}, {self.norm_eps}")

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def qkv_dim(self) -> int:
        return self.q_dim + 2 * self.kv_dim

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias or self.qkv_bias

    @property
    def params(self) -> int:
        d = self.d_model
        biases = (self.qkv_dim if self.has_qkv_bias else 0) + (d if self.bias else 0)
        norms = 2 * self.head_dim if self.qk_norm else 0
        return d * self.qkv_dim + self.q_dim * d + biases + norms

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.kv_dim * dtype_bytes


@dataclass(frozen=True)
class MLPSpec:
    """Feed-forward block: fc1 d -> ffn (x2 when gated), activation, fc2 ffn -> d."""

    d_model: int
    ffn_hidden: int = 16384
    activation: str = "squared_relu"  # "squared_relu" | "gelu" | "silu" | "relu"
    gated: bool = False
    bias: bool = False
    kind: str = field(default="mlp", init=False)
    letter: str = field(default="-", init=False)

    def __post_init__(self) -> None:
        _positive("mlp", d_model=self.d_model, ffn_hidden=self.ffn_hidden)
        if self.activation not in ("squared_relu", "gelu", "silu", "relu"):
            raise SpecError(f"mlp: unknown activation {self.activation!r}")

    @property
    def fc1_out(self) -> int:
        return self.ffn_hidden * (2 if self.gated else 1)

    @property
    def params(self) -> int:
        d = self.d_model
        extra = (self.fc1_out + d) if self.bias else 0
        return d * self.fc1_out + self.ffn_hidden * d + extra


MixerSpec = Union[MambaSpec, Mamba2Spec, AttentionSpec, MLPSpec]
LETTERS = {"m": "mamba", "M": "mamba2", "*": "attention", "-": "mlp"}


@dataclass(frozen=True)
class ModelSpec:
    """A whole language model: embedding, residual blocks in `pattern` order, final norm, LM head.

    `pattern` uses one letter per block (see module docstring). The mixer specs for letters that
    do not occur may be None.
    """

    name: str
    d_model: int
    vocab_size: int
    pattern: str
    norm: str = "rmsnorm"
    mamba: MambaSpec | None = None
    mamba2: Mamba2Spec | None = None
    attention: AttentionSpec | None = None
    mlp: MLPSpec | None = None
    tie_embeddings: bool = False
    max_seqlen: int = 4096
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        _positive(self.name, d_model=self.d_model, vocab_size=self.vocab_size, max_seqlen=self.max_seqlen)
        if not self.pattern:
            raise SpecError(f"{self.name}: empty layer pattern")
        unknown = sorted(set(self.pattern) - set(LETTERS))
        if unknown:
            raise SpecError(f"{self.name}: unknown letters {''.join(unknown)!r} in layer pattern "
                            f"(use m Mamba-1, M Mamba-2, * attention, - MLP)")
        for letter in set(self.pattern):
            spec = getattr(self, LETTERS[letter])
            if spec is None:
                raise SpecError(f"{self.name}: pattern uses {letter!r} but no {LETTERS[letter]} spec is given")
            if spec.d_model != self.d_model:
                raise SpecError(f"{self.name}: {LETTERS[letter]} d_model {spec.d_model} != model d_model {self.d_model}")
        NormSpec(self.d_model, self.norm)  # validates the kind

    @property
    def layers(self) -> tuple[MixerSpec, ...]:
        return tuple(getattr(self, LETTERS[letter]) for letter in self.pattern)

    @property
    def block_norm(self) -> NormSpec:
        return NormSpec(self.d_model, self.norm)

    def count(self, kind: str) -> int:
        return sum(1 for spec in self.layers if spec.kind == kind)

    @property
    def layer_mix(self) -> dict[str, int]:
        mix: dict[str, int] = {}
        for spec in self.layers:
            mix[spec.kind] = mix.get(spec.kind, 0) + 1
        return mix

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.d_model

    @property
    def head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab_size * self.d_model

    @property
    def params(self) -> int:
        norm = self.block_norm.params
        blocks = sum(spec.params + norm for spec in self.layers)
        return self.embedding_params + blocks + norm + self.head_params

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token adds across all attention layers."""
        return sum(s.kv_bytes_per_token(dtype_bytes) for s in self.layers if s.kind == "attention")

    def state_bytes_per_sequence(self, dtype_bytes: int = 2) -> int:
        """SSM + conv state bytes per sequence across all SSM layers; independent of context."""
        return sum(s.state_bytes_per_sequence(dtype_bytes, dtype_bytes)
                   for s in self.layers if s.kind in ("mamba", "mamba2"))

    def with_seqlen(self, max_seqlen: int, name: str | None = None) -> "ModelSpec":
        return replace(self, max_seqlen=max_seqlen, name=name or self.name)


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """Layer kinds for a Megatron-style pattern; a one-line SpecError for unknown letters."""
    unknown = sorted(set(pattern) - set(LETTERS))
    if not pattern or unknown:
        raise SpecError(f"layer pattern {pattern!r}: unknown letters {''.join(unknown)!r} "
                        f"(use m Mamba-1, M Mamba-2, * attention, - MLP)")
    return tuple(LETTERS[c] for c in pattern)


# ----------------------------------------------------------------------------- typed fields

_SCALAR_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def settable_fields(cls) -> dict[str, type]:
    """The scalar init fields of a spec class with their Python types (what a file or `--set` may give)."""
    out = {}
    for f in fields(cls):
        kind = _SCALAR_TYPES.get(str(f.type))
        if f.init and kind is not None and f.name != "name":
            out[f.name] = kind
    return out


def typed_value(cls, key: str, value, where: str):
    """`value` checked against the field's type (an int is a float, a bool is not an int);
    a one-line SpecError naming the field for an unknown key or a value of the wrong type."""
    types = settable_fields(cls)
    if key not in types:
        raise SpecError(f"{where}: {cls.__name__} has no field {key!r} (fields: {', '.join(sorted(types))})")
    want = types[key]
    ok = (isinstance(value, bool) if want is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else
          isinstance(value, want) and not isinstance(value, bool))
    if not ok:
        raise SpecError(f"{where}: {key} must be {want.__name__}, got {value!r}")
    return float(value) if want is float else value


def parse_value(cls, key: str, text: str, where: str):
    """A `KEY=VALUE` text value parsed as the field's type (one-line SpecError if it is not one)."""
    want = settable_fields(cls).get(key)
    if want is None:
        return typed_value(cls, key, text, where)  # raises: unknown field
    try:
        if want is bool:
            low = text.strip().lower()
            if low not in _TRUE + _FALSE:
                raise ValueError(text)
            return low in _TRUE
        return want(text) if want is not str else text
    except ValueError:
        raise SpecError(f"{where}: {key} must be {want.__name__}, got {text!r}") from None
