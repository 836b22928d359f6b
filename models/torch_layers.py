"""The real layers perfbench measures, built from the shared specs (never a second copy of a value).

- Mamba-1: `mamba_ssm.Mamba` (CUDA selective scan; the fused `mamba_inner_fn` path with
  causal_conv1d); decode through `allocate_inference_cache` + `step` (causal_conv1d_update and the
  Triton `selective_state_update`).
- Mamba-2: `mamba_ssm.Mamba2` (Triton SSD chunked scan with the spec's chunk_size, not mamba_ssm's
  default 256; fused conv+scan+gated-norm+out_proj path when causal_conv1d is importable); decode
  through `allocate_inference_cache` + `step`.
- Attention: GQA or MHA with partial RoPE; `flash_attn` when importable, else torch SDPA under one
  explicit backend (`torch.nn.attention.sdpa_kernel`): flash, cudnn, efficient or math. The decode
  step writes the new token's K/V into a cache pre-filled to the context and attends over
  context + 1 keys; for GQA the query heads of a group are folded into the query-length axis
  (one token per sequence), so no backend needs K/V expanded (FlashAttention-2 does the same).
- MLP with the spec's activation.

Every layer has the interface the harness and `models.stack` use, shared with `models.reference`:
`forward(x)` over (B, L, d); `allocate_cache(batch, context)` -> tuple of tensors; `decode(x, cache)`
for x (B, 1, d) at position `context`, updating the cache in place with static shapes (graph-safe).

torch is imported here; mamba_ssm and flash_attn only when importable (GPU machine). Layers that
need them raise KernelUnavailable elsewhere.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import nn

from models.reference import RefMLP, apply_rope, attention_projections, rope_tables, rotary_dim
from models.specs import AttentionSpec, Mamba2Spec, MambaSpec, MixerSpec

SDPA_BACKENDS = ("flash", "cudnn", "efficient", "math")
ATTN_BACKENDS = SDPA_BACKENDS + ("flash_attn",)


class KernelUnavailable(RuntimeError):
    """The library a real layer needs is not importable here (one-line message)."""


_DISTRIBUTIONS = {"pynvml": "nvidia-ml-py", "mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d",
                  "flash_attn": "flash-attn"}


def module_version(name: str) -> str:
    """Installed version of a module, '' if it does not import."""
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken extension raises more than ImportError
        return ""
    version = getattr(module, "__version__", None)
    if version is None:
        from importlib import metadata

        try:
            version = metadata.version(_DISTRIBUTIONS.get(name, name))
        except metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


def conv_backend() -> str:
    """Which depthwise-conv path the Mamba layers take: the causal_conv1d kernels or torch's conv1d."""
    return "causal_conv1d" if module_version("causal_conv1d") else "torch"


def default_attn_backend(device: str | torch.device) -> str:
    """flash_attn if importable on CUDA, SDPA's flash kernel otherwise; the math kernel on CPU."""
    if torch.device(device).type != "cuda":
        return "math"
    return "flash_attn" if module_version("flash_attn") else "flash"


def sdpa_context(backend: str):
    """A context manager that lets SDPA use exactly one backend (an error if it cannot run)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    table = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    if backend not in table:
        raise ValueError(f"unknown SDPA backend {backend!r} ({', '.join(table)})")
    return sdpa_kernel([table[backend]])


# ----------------------------------------------------------------------------- attention

class Attention(nn.Module):
    """Causal self-attention from an AttentionSpec; parameters `wqkv` and `out_proj`, and with
    qk_norm `q_norm`/`k_norm` (torch's fused `F.rms_norm` per head, before RoPE)."""

    def __init__(self, spec: AttentionSpec, device=None, dtype=None, backend: str = "flash"):
        super().__init__()
        if backend not in ATTN_BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r} ({', '.join(ATTN_BACKENDS)})")
        if backend == "flash_attn" and not module_version("flash_attn"):
            raise KernelUnavailable("attention backend flash_attn: flash-attn is not installed")
        self.spec, self.backend = spec, backend
        attention_projections(self, spec, device, dtype)
        self.gqa_prefill = "native"  # becomes "expand" if the SDPA backend rejects enable_gqa
        self._rope: dict = {}

    @property
    def groups(self) -> int:
        return self.spec.n_heads // self.spec.n_kv_heads

    def _rope_for(self, start: int, length: int, device, dtype):
        """cos/sin for positions [start, start+length), memoised so graphs capture constants."""
        key = (start, length, str(device), dtype)
        if key not in self._rope:
            positions = torch.arange(start, start + length, device=device)
            self._rope[key] = rope_tables(self.spec, positions, dtype)
        return self._rope[key]

    def _qkv(self, u: torch.Tensor, start: int):
        s = self.spec
        q, k, v = torch.split(self.wqkv(u), [s.q_dim, s.kv_dim, s.kv_dim], dim=-1)
        q = q.unflatten(-1, (s.n_heads, s.head_dim))
        k = k.unflatten(-1, (s.n_kv_heads, s.head_dim))
        v = v.unflatten(-1, (s.n_kv_heads, s.head_dim))
        if s.qk_norm:
            q = F.rms_norm(q, (s.head_dim,), self.q_norm.weight, s.norm_eps)
            k = F.rms_norm(k, (s.head_dim,), self.k_norm.weight, s.norm_eps)
        if rotary_dim(s):
            cos, sin = self._rope_for(start, u.shape[1], u.device, u.dtype)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v  # (B, L, heads, head_dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        batch, seqlen, _ = u.shape
        q, k, v = self._qkv(u, 0)
        if self.backend == "flash_attn":
            from flash_attn import flash_attn_func

            out = flash_attn_func(q, k, v, causal=True)
        else:
            out = self._sdpa_prefill(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            out = out.transpose(1, 2)
        return self.out_proj(out.reshape(batch, seqlen, self.spec.q_dim))

    def _sdpa_prefill(self, q, k, v):
        gqa = self.groups > 1
        with sdpa_context(self.backend):
            if gqa and self.gqa_prefill == "native":
                try:
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                except RuntimeError:
                    self.gqa_prefill = "expand"  # this backend has no GQA: repeat K/V heads
            if gqa:
                k = k.repeat_interleave(self.groups, dim=1)
                v = v.repeat_interleave(self.groups, dim=1)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def allocate_cache(self, batch: int, context: int, dtype=None):
        """K/V for `context` earlier tokens plus the new token's slot.

        SDPA layout (B, n_kv_heads, context + 1, head_dim); flash_attn layout
        (B, context + 1, n_kv_heads, head_dim) plus int32 cache_seqlens (= context).
        """
        s = self.spec
        dtype = dtype or self.wqkv.weight.dtype
        dev = self.wqkv.weight.device
        if self.backend == "flash_attn":
            shape = (batch, context + 1, s.n_kv_heads, s.head_dim)
            seqlens = torch.full((batch,), context, dtype=torch.int32, device=dev)
            return (torch.zeros(shape, device=dev, dtype=dtype), torch.zeros(shape, device=dev, dtype=dtype),
                    seqlens)
        shape = (batch, s.n_kv_heads, context + 1, s.head_dim)
        return torch.zeros(shape, device=dev, dtype=dtype), torch.zeros(shape, device=dev, dtype=dtype)

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        batch = u.shape[0]
        s = self.spec
        if self.backend == "flash_attn":
            from flash_attn import flash_attn_with_kvcache

            kc, vc, seqlens = cache
            q, k, v = self._qkv(u, kc.shape[1] - 1)
            out = flash_attn_with_kvcache(q, kc, vc, k=k, v=v, cache_seqlens=seqlens, causal=True)
            return self.out_proj(out.reshape(batch, 1, s.q_dim))
        kc, vc = cache
        context = kc.shape[2] - 1
        q, k, v = self._qkv(u, context)
        kc[:, :, context].copy_(k[:, 0])
        vc[:, :, context].copy_(v[:, 0])
        # One query per sequence: the G query heads sharing a KV head become G query rows.
        qf = q[:, 0].reshape(batch, s.n_kv_heads, self.groups, s.head_dim)
        with sdpa_context(self.backend):
            out = F.scaled_dot_product_attention(qf, kc, vc)
        return self.out_proj(out.reshape(batch, 1, s.q_dim))


# ----------------------------------------------------------------------------- MLP

class MLP(RefMLP):
    """The reference MLP's weights and cache-free decode, with the activation applied in place
    where it can be (inference only: no autograd needs the pre-activation)."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.spec.gated or self.spec.activation != "squared_relu" or torch.is_grad_enabled():
            return super().forward(u)
        return self.fc2(torch.relu_(self.fc1(u)).square_())


# ----------------------------------------------------------------------------- Mamba

def _mamba_ssm():
    try:
        import mamba_ssm
    except Exception as exc:  # noqa: BLE001 - missing CUDA extensions raise ImportError or OSError
        raise KernelUnavailable(f"mamba_ssm is not importable here ({type(exc).__name__}: {exc})"
                                .splitlines()[0]) from None
    return mamba_ssm


class MambaSSMLayer(nn.Module):
    """The layer interface over a mamba_ssm module held as `inner`: its forward, its inference
    cache and its `step` (one token with the conv and SSM states updated in place)."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.inner(u)

    def allocate_cache(self, batch: int, context: int, dtype=None):
        return self.inner.allocate_inference_cache(batch, context, dtype=dtype)

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        return self.inner.step(u, *cache)[0]


class MambaLayer(MambaSSMLayer):
    """`mamba_ssm.Mamba` (Mamba-1) with the spec's d_state, d_conv, expand, dt_rank."""

    def __init__(self, spec: MambaSpec, device=None, dtype=None):
        super().__init__()
        mamba_ssm = _mamba_ssm()
        self.spec = spec
        self.inner = mamba_ssm.Mamba(d_model=spec.d_model, d_state=spec.d_state, d_conv=spec.d_conv,
                                     expand=spec.expand, dt_rank=spec.dt_rank, conv_bias=spec.conv_bias,
                                     bias=spec.bias, use_fast_path=True, layer_idx=0, device=device,
                                     dtype=dtype)



class Mamba2Layer(MambaSSMLayer):
    """`mamba_ssm.Mamba2` with the spec's d_state, headdim, ngroups, chunk_size, d_conv, expand, rmsnorm.

    The memory-efficient fused path needs causal_conv1d (mamba_ssm #467); without it the layer
    runs the unfused path with torch's conv1d, and results record conv_backend "torch".
    """

    def __init__(self, spec: Mamba2Spec, device=None, dtype=None, **mamba2_kwargs):
        """`mamba2_kwargs` go to `mamba_ssm.Mamba2` as they are (a process group, for one)."""
        super().__init__()
        mamba_ssm = _mamba_ssm()
        self.spec = spec
        self.inner = mamba_ssm.Mamba2(d_model=spec.d_model, d_state=spec.d_state, d_conv=spec.d_conv,
                                      expand=spec.expand, headdim=spec.headdim, ngroups=spec.ngroups,
                                      rmsnorm=spec.rmsnorm, bias=spec.bias, conv_bias=spec.conv_bias,
                                      chunk_size=spec.chunk_size,
                                      use_mem_eff_path=conv_backend() == "causal_conv1d",
                                      layer_idx=0, device=device, dtype=dtype, **mamba2_kwargs)



# ----------------------------------------------------------------------------- building

def build_layer(spec: MixerSpec, device="cuda", dtype=torch.bfloat16, attn_backend: str | None = None
                ) -> nn.Module:
    """The real layer for a mixer spec, weights random (each library's own initialisation)."""
    if spec.kind == "mamba":
        return MambaLayer(spec, device=device, dtype=dtype)
    if spec.kind == "mamba2":
        return Mamba2Layer(spec, device=device, dtype=dtype)
    if spec.kind == "attention":
        return Attention(spec, device=device, dtype=dtype,
                         backend=attn_backend or default_attn_backend(device if device != "meta" else "cpu"))
    if spec.kind == "mlp":
        return MLP(spec, device=device, dtype=dtype)
    raise ValueError(f"unknown layer kind {spec.kind!r}")


def weights_module(layer: nn.Module) -> nn.Module:
    """The module whose state_dict matches the reference layer's (the library module for Mamba)."""
    return getattr(layer, "inner", layer)


def layer_kernels(layer: nn.Module) -> dict:
    """attn_backend / conv_backend values and other kernel-path facts for a result row."""
    kind = getattr(layer, "spec", None) and layer.spec.kind
    info = {"attn_backend": "", "conv_backend": ""}
    if kind == "attention":
        info["attn_backend"] = layer.backend
        info["gqa_prefill"] = layer.gqa_prefill if layer.groups > 1 else "mha"
        if layer.groups == 1:
            info["gqa_decode"] = "mha"
        else:
            info["gqa_decode"] = "native" if layer.backend == "flash_attn" else "fold"
    elif kind in ("mamba", "mamba2"):
        info["conv_backend"] = conv_backend()
    return info


def randomize_(tensors, generator: torch.Generator | None = None, scale: float = 0.5) -> None:
    """Fill every floating tensor of a cache with N(0, scale^2) values: never time on zeros."""
    for t in tensors:
        if t.is_floating_point():
            t.normal_(0.0, scale, generator=generator)


def fill_cache_(layer: nn.Module, cache) -> None:
    """A cache 'at context L' with random contents (KV entries, conv and SSM states)."""
    randomize_(cache)


# ----------------------------------------------------------------------------- memory estimates

def prefill_bytes_per_token(spec: MixerSpec, dtype_bytes: int = 2) -> int:
    """Activation bytes one prompt token holds at the layer's peak (input and output included).

    Counted from the forward paths above and mamba_ssm 2.3.2's kernels (Mamba-2's chunked scan keeps
    fp32 chunk states, nheads x headdim x d_state per chunk, and the CB matrix per group), then
    checked against torch.cuda.max_memory_allocated on an H100 (bundled sweep, 2026-11-23): measured
    bytes/token were attention GQA 37.9K, MHA+RoPE 67.7K, Mamba-1 112.2K, Mamba-2 129.4K, MLP 50.2K;
    these formulas give 2-16 % more. A bound used only to skip points that cannot fit.
    """
    d = spec.d_model
    margin = 1.05
    if spec.kind == "mlp":
        extra = spec.ffn_hidden if (spec.gated or spec.activation != "squared_relu") else 0
        elems = 2 * d + spec.fc1_out + extra
    elif spec.kind == "attention":
        rope = spec.q_dim + spec.kv_dim if rotary_dim(spec) else 0  # rotated copies of q and k
        norms = 2 * (spec.q_dim + spec.kv_dim) if spec.qk_norm else 0  # contiguous and normed q, k
        elems = 2 * d + spec.qkv_dim + spec.q_dim + rope + norms
    elif spec.kind == "mamba":
        elems = 2 * d + 6 * spec.d_inner + spec.dt_rank + 4 * spec.d_state
    elif spec.kind == "mamba2":
        elems = 2 * d + spec.d_in_proj + spec.conv_dim + 2 * spec.d_inner
        fp32 = spec.nheads * spec.headdim * spec.d_state / spec.chunk_size + spec.ngroups * spec.chunk_size
        return int(margin * (elems * dtype_bytes + fp32 * 4))
    else:
        raise ValueError(f"unknown layer kind {spec.kind!r}")
    return int(margin * elems * dtype_bytes)


def cache_bytes(spec: MixerSpec, batch: int, context: int, dtype_bytes: int = 2) -> int:
    """Decode cache of one layer: KV for context + 1 tokens, or the conv and SSM states."""
    if spec.kind == "attention":
        return batch * (context + 1) * spec.kv_bytes_per_token(dtype_bytes)
    if spec.kind in ("mamba", "mamba2"):
        return batch * spec.state_bytes_per_sequence(dtype_bytes, dtype_bytes)
    return 0


def decode_bytes_per_sequence(spec: MixerSpec, dtype_bytes: int = 2) -> int:
    """Activations of one decode step per sequence (excluding the cache)."""
    return prefill_bytes_per_token(spec, dtype_bytes)


def estimate_layer_bytes(spec: MixerSpec, phase: str, batch: int, seqlen: int, dtype_bytes: int = 2) -> int:
    """Weights + cache + activations of one measured point (prefill: seqlen is the prompt)."""
    weights = spec.params * dtype_bytes
    if phase == "prefill":
        return weights + batch * seqlen * prefill_bytes_per_token(spec, dtype_bytes)
    return weights + cache_bytes(spec, batch, seqlen, dtype_bytes) + batch * decode_bytes_per_sequence(spec, dtype_bytes)


__all__ = ["ATTN_BACKENDS", "Attention", "KernelUnavailable", "MLP", "Mamba2Layer", "MambaLayer",
           "SDPA_BACKENDS", "build_layer", "cache_bytes", "conv_backend", "default_attn_backend",
           "estimate_layer_bytes", "fill_cache_", "layer_kernels", "module_version",
           "prefill_bytes_per_token", "randomize_", "sdpa_context", "weights_module"]

