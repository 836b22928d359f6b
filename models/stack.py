"""Whole language models from a ModelSpec: embedding, pre-norm residual blocks, final norm, LM head.

The block order is the spec's pattern; each block is `residual += mixer(norm(residual))`, written
as mamba_ssm's `Block` does (`modules/block.py`): the add and the norm are one step, fused in
mamba_ssm's Triton `layer_norm_fn` when it is importable on CUDA, plain torch otherwise. Weights
are random (each layer's own initialisation) in the dtype asked (bf16 for measurement); timing
needs no trained checkpoint, and the GPU machine has no network.

- `prefill(ids)`: time-to-first-token work: the prompt forward, LM head on the LAST position only,
  returns (B, vocab) logits. Caches are not written (decode measurements start from random caches).
- `allocate_cache(batch, context)` / `decode(ids, caches)`: one new token per sequence at position
  `context` through every layer's decode path, static shapes (capturable in one CUDA graph).

`build_model(spec, device="meta", layers="reference")` builds without memory, for parameter counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.reference import build_reference_layer
from models.specs import ModelSpec, NormSpec
from models.torch_layers import build_layer, cache_bytes, prefill_bytes_per_token


def fused_norm_available(device) -> bool:
    """mamba_ssm's Triton add+norm kernel runs only on CUDA and only where mamba_ssm imports."""
    if torch.device(device).type != "cuda":
        return False
    try:
        from mamba_ssm.ops.triton.layer_norm import layer_norm_fn  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


class AddNorm(nn.Module):
    """residual = x + residual (x alone for the first block); returns (norm(residual), residual)."""

    def __init__(self, spec: NormSpec, device=None, dtype=None, fused: bool = False):
        super().__init__()
        self.kind, self.eps, self.fused = spec.kind, spec.eps, fused
        self.weight = nn.Parameter(torch.ones(spec.d_model, device=device, dtype=dtype))
        if spec.kind == "layernorm":
            self.bias = nn.Parameter(torch.zeros(spec.d_model, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None):
        if self.fused:
            from mamba_ssm.ops.triton.layer_norm import layer_norm_fn

            return layer_norm_fn(x, self.weight, self.bias, residual=residual, eps=self.eps, prenorm=True,
                                 is_rms_norm=self.kind == "rmsnorm")
        residual = x if residual is None else x + residual
        if self.kind == "layernorm":
            out = F.layer_norm(residual, (residual.shape[-1],), self.weight, self.bias, self.eps)
        else:
            out = F.rms_norm(residual, (residual.shape[-1],), self.weight, self.eps)
        return out, residual


class Block(nn.Module):
    """One letter of the pattern: pre-norm (fused with the residual add) and a mixer."""

    def __init__(self, mixer: nn.Module, norm: AddNorm):
        super().__init__()
        self.norm, self.mixer = norm, mixer

    def forward(self, hidden, residual):
        normed, residual = self.norm(hidden, residual)
        return self.mixer(normed), residual

    def decode(self, hidden, residual, cache):
        normed, residual = self.norm(hidden, residual)
        return self.mixer.decode(normed, cache), residual


class ModelSteps:
    """Prefill and decode over `embedding`, `blocks`, `norm_f` and `_logits`, shared by the
    single-GPU model and its tensor-parallel shard (`perfbench.tp.layers.TPLanguageModel`)."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.prefill(input_ids)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Prompt forward; logits (B, vocab) of the last position only (time to first token)."""
        hidden, residual = self.embedding(input_ids), None
        for block in self.blocks:
            hidden, residual = block(hidden, residual)
        normed, _ = self.norm_f(hidden[:, -1:], residual[:, -1:])
        return self._logits(normed[:, 0])

    def allocate_cache(self, batch: int, context: int, dtype=None) -> list:
        return [block.mixer.allocate_cache(batch, context, dtype) for block in self.blocks]

    def decode(self, input_ids: torch.Tensor, caches: list) -> torch.Tensor:
        """One token per sequence (input_ids (B, 1)) at position `context`; logits (B, vocab)."""
        hidden, residual = self.embedding(input_ids), None
        for block, cache in zip(self.blocks, caches):
            hidden, residual = block.decode(hidden, residual, cache)
        normed, _ = self.norm_f(hidden, residual)
        return self._logits(normed[:, 0])


def blocks_and_final_norm(spec: ModelSpec, mixers, device, dtype, fused_norm: bool):
    """The pattern's blocks (each mixer behind its fused add+norm) and the final add+norm."""
    blocks = nn.ModuleList(Block(mixer, AddNorm(spec.block_norm, device=device, dtype=dtype, fused=fused_norm))
                           for mixer in mixers)
    return blocks, AddNorm(spec.block_norm, device=device, dtype=dtype, fused=fused_norm)


class LanguageModel(ModelSteps, nn.Module):
    """Embedding -> blocks in pattern order -> final norm -> LM head (untied unless the spec ties)."""

    def __init__(self, spec: ModelSpec, mixers: list[nn.Module], device=None, dtype=None, fused_norm=False):
        super().__init__()
        self.spec = spec
        self.embedding = nn.Embedding(spec.vocab_size, spec.d_model, device=device, dtype=dtype)
        self.blocks, self.norm_f = blocks_and_final_norm(spec, mixers, device, dtype, fused_norm)
        if spec.tie_embeddings:
            self.lm_head = None
        else:
            self.lm_head = nn.Linear(spec.d_model, spec.vocab_size, bias=False, device=device, dtype=dtype)

    def _logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(last_hidden, weight)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final-norm output for every position (B, L, d); used by checks, not by timing."""
        hidden, residual = self.embedding(input_ids), None
        for block in self.blocks:
            hidden, residual = block(hidden, residual)
        return self.norm_f(hidden, residual)[0]



def build_model(spec: ModelSpec, device="cuda", dtype=torch.bfloat16, layers: str = "real",
                attn_backend: str | None = None, fused_norm: bool | None = None) -> LanguageModel:
    """The whole model; layers "real" (models.torch_layers) or "reference" (models.reference)."""
    if layers == "real":
        def make(mixer_spec):
            return build_layer(mixer_spec, device=device, dtype=dtype, attn_backend=attn_backend)
    elif layers == "reference":
        def make(mixer_spec):
            return build_reference_layer(mixer_spec, device=device, dtype=dtype)
    else:
        raise ValueError(f"layers must be 'real' or 'reference', got {layers!r}")
    if fused_norm is None:
        fused_norm = layers == "real" and fused_norm_available(device)
    return LanguageModel(spec, [make(s) for s in spec.layers], device=device, dtype=dtype, fused_norm=fused_norm)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def estimate_model_bytes(spec: ModelSpec, phase: str, batch: int, seqlen: int, dtype_bytes: int = 2) -> int:
    """Weights + caches + activation peak of one measured point (a bound for skipping, not a model).

    Prefill holds the residual stream and the hidden state (2 x d per token) plus the largest
    layer's activations; decode holds every layer's cache at context `seqlen`. Logits are (B, vocab).
    """
    weights = spec.params * dtype_bytes
    kinds = {s.kind: s for s in spec.layers}
    per_token = max(prefill_bytes_per_token(s, dtype_bytes) for s in kinds.values())
    logits = batch * spec.vocab_size * 4
    stream = 2 * spec.d_model * dtype_bytes
    if phase == "prefill":
        return weights + batch * seqlen * (per_token + stream) + logits
    caches = sum(cache_bytes(s, batch, seqlen, dtype_bytes) for s in spec.layers)
    return weights + caches + batch * (per_token + stream) + logits
