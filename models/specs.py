"""Architecture specs: the one source of truth for every layer and model configuration.

Both consumers read these: `analytic/` (FLOP and byte counts) and the real torch layers
(`models.torch_layers`, imported only where used). Nothing here imports torch.

Layer-pattern notation follows Megatron-LM's hybrid models (`megatron/core/ssm/mamba_hybrid_layer_
allocation.py`): `M` Mamba-2, `*` attention, `-` MLP. perfbench adds `m` for a Mamba-1 layer,
`3` for a Mamba-3 layer and `G` for a Gated DeltaNet layer (none of them clashes with Nemotron-H's
`E` for MoE). Each letter is one residual block with its own pre-norm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import cached_property
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

    def decode_state_bytes(self, dtype_bytes: int = 2) -> int:
        return self.state_bytes_per_sequence(dtype_bytes, dtype_bytes)


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

    def decode_state_bytes(self, dtype_bytes: int = 2) -> int:
        return self.state_bytes_per_sequence(dtype_bytes, dtype_bytes)


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


FP32 = 4


@dataclass(frozen=True)
class Mamba3Spec:
    """Mamba-3 mixer as `mamba_ssm.Mamba3` (2.3.2) builds it (arXiv 2603.15569).

    in_proj d -> [z (d_inner), x (d_inner), B, C (ngroups*d_state*mimo_rank each), dt, A, trap
    (nheads each), angles (num_rope_angles)]; no convolution; B and C RMS-normed over d_state, plus
    per-head fp32 biases (nheads, mimo_rank, d_state); data-dependent RoPE on B and C over
    rope_fraction of d_state; trapezoidal recurrence h_t = a_t h_{t-1} + b_t v_{t-1} k_{t-1}^T +
    g_t v_t k_t^T; y gated by silu(z) (or a grouped gated RMSNorm when is_outproj_norm); out_proj.
    `mimo_rank` 1 is SISO (Triton kernels); >1 is MIMO (TileLang kernels, x/z/out rank projections).
    """

    d_model: int
    d_state: int = 128
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    rope_fraction: float = 0.5
    mimo_rank: int = 1
    chunk_size: int = 64
    is_outproj_norm: bool = False
    kind: str = field(default="mamba3", init=False)
    letter: str = field(default="3", init=False)

    def __post_init__(self) -> None:
        _positive("mamba3", d_model=self.d_model, d_state=self.d_state, expand=self.expand,
                  headdim=self.headdim, ngroups=self.ngroups, mimo_rank=self.mimo_rank,
                  chunk_size=self.chunk_size)
        if self.rope_fraction not in (0.5, 1.0):
            raise SpecError(f"mamba3: rope_fraction must be 0.5 or 1.0 (mamba_ssm.Mamba3), got {self.rope_fraction}")
        if self.num_rope_angles <= 0:
            raise SpecError(f"mamba3: d_state {self.d_state} leaves no RoPE angle at rope_fraction {self.rope_fraction}")
        if self.d_inner % self.headdim:
            raise SpecError(f"mamba3: d_inner {self.d_inner} is not a multiple of headdim {self.headdim}")
        if self.nheads % self.ngroups:
            raise SpecError(f"mamba3: nheads {self.nheads} is not a multiple of ngroups {self.ngroups}")

    @property
    def is_mimo(self) -> bool:
        return self.mimo_rank > 1

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def num_rope_angles(self) -> int:
        """Rotated pairs of B and C: int(d_state * rope_fraction) rounded down to even, halved."""
        split = int(self.d_state * self.rope_fraction)
        return (split - split % 2) // 2

    @property
    def bc_dim(self) -> int:
        return self.d_state * self.ngroups * self.mimo_rank

    @property
    def d_in_proj(self) -> int:
        return 2 * self.d_inner + 2 * self.bc_dim + 3 * self.nheads + self.num_rope_angles

    @property
    def params(self) -> int:
        h, n, r = self.nheads, self.d_state, self.mimo_rank
        per_head = 2 * h  # dt_bias, D
        bc = 2 * h * r * n + 2 * n  # B_bias, C_bias; B_norm, C_norm weights
        mimo = 3 * h * r * self.headdim if self.is_mimo else 0
        norm = self.d_inner if self.is_outproj_norm else 0
        return self.d_model * self.d_in_proj + per_head + bc + mimo + norm + self.d_inner * self.d_model

    def state_bytes_per_sequence(self, ssm_state_bytes: int = FP32, io_bytes: int = 2) -> int:
        """Decode cache (`Mamba3.allocate_inference_cache`): the RoPE angle (nheads, angles) and SSM
        (nheads, headdim, d_state) states in fp32, the previous token's K (mimo_rank, nheads, d_state)
        and V (nheads, headdim) in the layer's dtype (the trapezoid needs them). No conv state."""
        h = self.nheads
        return (FP32 * h * self.num_rope_angles + ssm_state_bytes * h * self.headdim * self.d_state
                + io_bytes * (self.mimo_rank * h * self.d_state + h * self.headdim))

    def decode_state_bytes(self, dtype_bytes: int = 2) -> int:
        return self.state_bytes_per_sequence(FP32, dtype_bytes)

    @property
    def prefill_activation_elems_per_token(self) -> float:
        """Prefill tensors alive at once per token, in bf16 elements (analytic/costs/mamba3.py): the
        in_proj output, the angles expanded to every head and their cumsum (fp32), the normed B and C,
        contiguous x and z, the kernel's stored rotated q and k per head, its three fp32 scalars a head, y."""
        h = self.nheads
        return (self.d_in_proj + 2 * 2 * h * self.num_rope_angles + 2 * self.bc_dim + 2 * self.d_inner
                + 2 * h * self.d_state + 3 * 2 * h + self.d_inner)


@dataclass(frozen=True)
class GatedDeltaNetSpec:
    """Gated DeltaNet mixer (arXiv 2412.06464) as Qwen3-Next / Qwen3.5 build it
    (transformers `Qwen3NextGatedDeltaNet`; kernels from flash-linear-attention `ops/gated_delta_rule`).

    in_proj_qkvz d -> [q, k (n_k_heads*head_k_dim each), v, z (n_v_heads*head_v_dim each)];
    in_proj_ba d -> [b, a] (n_v_heads each); depthwise causal conv (silu) over q, k, v; q and k
    L2-normed per head; decay g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b); the gated
    delta rule S_t = e^g S_{t-1} + beta k (v - S^T k)^T per value head (n_v_heads/n_k_heads value heads
    share a key head); o = S^T q / sqrt(head_k_dim); RMSNorm over head_v_dim gated by silu(z); out_proj.
    """

    d_model: int
    n_k_heads: int = 16
    n_v_heads: int = 32
    head_k_dim: int = 128
    head_v_dim: int = 128
    d_conv: int = 4
    conv_bias: bool = False
    output_gate: bool = True
    chunk_size: int = 64
    kind: str = field(default="gdn", init=False)
    letter: str = field(default="G", init=False)

    def __post_init__(self) -> None:
        _positive("gdn", d_model=self.d_model, n_k_heads=self.n_k_heads, n_v_heads=self.n_v_heads,
                  head_k_dim=self.head_k_dim, head_v_dim=self.head_v_dim, d_conv=self.d_conv,
                  chunk_size=self.chunk_size)
        if self.n_v_heads % self.n_k_heads:
            raise SpecError(f"gdn: n_v_heads {self.n_v_heads} is not a multiple of n_k_heads {self.n_k_heads}")
        if self.chunk_size not in (16, 32, 64):
            raise SpecError(f"gdn: chunk_size must be 16, 32 or 64 (fla chunk_gated_delta_rule), got {self.chunk_size}")

    @property
    def key_dim(self) -> int:
        return self.n_k_heads * self.head_k_dim

    @property
    def value_dim(self) -> int:
        return self.n_v_heads * self.head_v_dim

    @property
    def conv_dim(self) -> int:
        return 2 * self.key_dim + self.value_dim

    @property
    def d_in_proj(self) -> int:
        """in_proj_qkvz's and in_proj_ba's outputs together."""
        return self.conv_dim + (self.value_dim if self.output_gate else 0) + 2 * self.n_v_heads

    @property
    def params(self) -> int:
        conv = self.conv_dim * self.d_conv + (self.conv_dim if self.conv_bias else 0)
        per_head = 2 * self.n_v_heads  # A_log, dt_bias
        return self.d_model * self.d_in_proj + conv + per_head + self.head_v_dim + self.value_dim * self.d_model

    def state_bytes_per_sequence(self, ssm_state_bytes: int = FP32, conv_state_bytes: int = 2) -> int:
        """Decode cache: the recurrent state (n_v_heads, head_k_dim, head_v_dim), fp32 as fla returns
        it, and the conv state (conv_dim, d_conv) in the layer's dtype."""
        return (ssm_state_bytes * self.n_v_heads * self.head_k_dim * self.head_v_dim
                + conv_state_bytes * self.conv_dim * self.d_conv)

    def decode_state_bytes(self, dtype_bytes: int = 2) -> int:
        return self.state_bytes_per_sequence(FP32, dtype_bytes)

    @property
    def prefill_activation_elems_per_token(self) -> float:
        """Prefill tensors alive at once per token, in bf16 elements (analytic/costs/gdn.py): the in_proj
        output, the conv output, the L2-normed q and k, w and u, v_new, A (fp32, C per value head), the
        per-chunk states, o and the normed output."""
        hv = self.n_v_heads
        return (self.d_in_proj + self.conv_dim + 2 * self.key_dim + hv * (self.head_k_dim + self.head_v_dim)
                + self.value_dim + 2 * hv * self.chunk_size + hv * self.head_k_dim * self.head_v_dim / self.chunk_size
                + 2 * self.value_dim)


MixerSpec = Union[MambaSpec, Mamba2Spec, Mamba3Spec, GatedDeltaNetSpec, AttentionSpec, MLPSpec]
LETTERS = {"m": "mamba", "M": "mamba2", "3": "mamba3", "G": "gdn", "*": "attention", "-": "mlp"}
# Layers that keep a fixed-size recurrent state per sequence instead of a KV cache.
STATE_KINDS = ("mamba", "mamba2", "mamba3", "gdn")
_LETTER_HELP = "use m Mamba-1, M Mamba-2, 3 Mamba-3, G Gated DeltaNet, * attention, - MLP"


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
    mamba3: Mamba3Spec | None = None
    gdn: GatedDeltaNetSpec | None = None
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
                            f"({_LETTER_HELP})")
        for letter in set(self.pattern):
            spec = getattr(self, LETTERS[letter])
            if spec is None:
                raise SpecError(f"{self.name}: pattern uses {letter!r} but no {LETTERS[letter]} spec is given")
            if spec.d_model != self.d_model:
                raise SpecError(f"{self.name}: {LETTERS[letter]} d_model {spec.d_model} != model d_model {self.d_model}")
        NormSpec(self.d_model, self.norm)  # validates the kind

    @cached_property
    def layers(self) -> tuple[MixerSpec, ...]:
        """The mixer spec of each block in pattern order (computed once: sweeps over many designs read
        it for parameters, memory and host chains)."""
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
        """Recurrent (SSM, conv, delta-rule) state bytes per sequence across all state layers, each in
        the dtype its kernels allocate; independent of context."""
        return sum(s.decode_state_bytes(dtype_bytes) for s in self.layers if s.kind in STATE_KINDS)

    def with_seqlen(self, max_seqlen: int, name: str | None = None) -> "ModelSpec":
        return replace(self, max_seqlen=max_seqlen, name=name or self.name)


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """Layer kinds for a Megatron-style pattern; a one-line SpecError for unknown letters."""
    unknown = sorted(set(pattern) - set(LETTERS))
    if not pattern or unknown:
        raise SpecError(f"layer pattern {pattern!r}: unknown letters {''.join(unknown)!r} "
                        f"({_LETTER_HELP})")
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
