"""One rank's shard of the real (or reference) layers and models, built from the shared specs.

The split is the one `analytic.composition` costs (Megatron-style, no sequence parallelism, `models.sharding`):
- attention / MLP: the layer of the per-rank spec (`models.sharding.shard_layer`: n_heads/N and
  n_kv_heads/N heads, or ffn_hidden/N units) wrapped in `TPMixer`, which all-reduces the
  row-parallel output projection's partial sums. The output bias lives on rank 0 only.
- Mamba-2, real: `mamba_ssm.Mamba2(process_group=..., sequence_parallel=False)` (column-parallel
  in_proj, row-parallel out_proj with its all-reduce inside). mamba_ssm 2.3.2 builds the gated
  RMSNorm of the *step* path with group size d_ssm_local // ngroups_global, while its fused
  prefill path uses d_ssm_local // ngroups_local; the first is wrong under TP (sharded decode
  would not match one GPU), so `TPMamba2` sets the norm's group size to the per-rank one.
- Mamba-2, reference: `models.reference.RefMamba2` on the per-rank `Mamba2Shard` + `TPMixer`.
- Mamba-1, reference: `RefMamba` on the per-rank `MambaShard` with x_proj's output all-reduced
  (it sums over d_inner) + `TPMixer`. mamba_ssm has no tensor-parallel Mamba-1, so the real
  Mamba-1 layer is unavailable under TP (points are recorded as skipped).
- embedding / LM head: vocabulary-parallel (`VocabParallelEmbedding`; logits all-gathered).

`shard_layer_state` / `shard_layer_cache` cut a one-GPU layer's weights and decode cache into a
rank's share, so a sharded layer can be checked against the unsharded one on the same numbers.
Every collective here is graph-capturable (static shapes, no host sync).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from models.reference import RefMamba, build_reference_layer
from models.sharding import check_tp, shard_layer, shard_model
from models.specs import ModelSpec
from models.stack import ModelSteps, blocks_and_final_norm, fused_norm_available
from models.torch_layers import KernelUnavailable, Mamba2Layer, build_layer, weights_module

OUTPUT_PROJ = {"attention": "out_proj", "mlp": "fc2", "mamba": "out_proj", "mamba2": "out_proj"}


def _all_gather(out: torch.Tensor, t: torch.Tensor, group) -> None:
    """all_gather_single (torch >= 2.13) or all_gather_into_tensor (older): same semantics."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, t, group=group)


def _all_reduce(t: torch.Tensor, group) -> torch.Tensor:
    dist.all_reduce(t, group=group)
    return t


# ----------------------------------------------------------------------------- layers

class TPMixer(nn.Module):
    """A per-rank layer whose output is a partial sum: all-reduce it (forward and decode)."""

    def __init__(self, inner: nn.Module, spec, rank: int, group):
        super().__init__()
        self.inner, self.spec, self.group = inner, spec, group
        out = getattr(inner, OUTPUT_PROJ[spec.kind])
        if rank != 0 and out.bias is not None:
            out.bias = None  # row-parallel bias: added once, by rank 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _all_reduce(self.inner(x), self.group)

    def forward_with_cache(self, x: torch.Tensor):
        out, cache = self.inner.forward_with_cache(x)
        return _all_reduce(out, self.group), cache

    def allocate_cache(self, batch: int, context: int, dtype=None):
        return self.inner.allocate_cache(batch, context, dtype)

    def decode(self, x: torch.Tensor, cache) -> torch.Tensor:
        return _all_reduce(self.inner.decode(x, cache), self.group)


class TPRefMamba(RefMamba):
    """Reference Mamba-1 on d_inner/N channels; x_proj's (dt, B, C) partial sums are all-reduced."""

    def __init__(self, shard, group, device=None, dtype=None):
        super().__init__(shard, device=device, dtype=dtype)
        self.group = group

    def _project(self, x: torch.Tensor):
        dt_bcs = _all_reduce(self.x_proj(x), self.group)
        dt, b, c = torch.split(dt_bcs, [self.spec.dt_rank, self.spec.d_state, self.spec.d_state], -1)
        delta = F.softplus(F.linear(dt, self.dt_proj.weight) + self.dt_proj.bias)
        return delta, b, c


class TPMamba2(Mamba2Layer):
    """`mamba_ssm.Mamba2` with a process group (its own all-reduce), the spec's hyper-parameters."""

    def __init__(self, spec, group, device=None, dtype=None):
        super().__init__(spec, device=device, dtype=dtype, process_group=group, sequence_parallel=False)
        if spec.rmsnorm:  # see module docstring: the step path's norm groups must be per rank
            self.inner.norm.group_size = self.inner.d_ssm // self.inner.ngroups



def build_tp_layer(spec, rank: int, tp: int, group, device="cuda", dtype=torch.bfloat16,
                   reference: bool = False, attn_backend: str | None = None) -> nn.Module:
    """Rank `rank`'s shard of the layer `spec` (forward / allocate_cache / decode, `.spec` = full)."""
    local = shard_layer(spec, tp)
    if spec.kind == "mamba":
        if not reference:
            raise KernelUnavailable("Mamba-1 has no tensor-parallel layer in mamba_ssm (perfbench "
                                    "models its split; measure it with --cpu-reference)")
        return TPMixer(TPRefMamba(local, group, device=device, dtype=dtype), spec, rank, group)
    if spec.kind == "mamba2" and not reference:
        return TPMamba2(spec, group, device=device, dtype=dtype)
    if reference:
        inner = build_reference_layer(local, device=device, dtype=dtype)
    else:
        inner = build_layer(local, device=device, dtype=dtype, attn_backend=attn_backend)
    return TPMixer(inner, spec, rank, group)


def tp_weights_module(layer: nn.Module) -> nn.Module:
    """The module whose state_dict `shard_layer_state` produces (inside the TP wrapper)."""
    return getattr(layer, "inner", layer)


# ----------------------------------------------------------------------------- weight and cache shards

def _blocks(sizes: list[int], rank: int, tp: int) -> torch.Tensor:
    """Indices of rank `rank`'s contiguous 1/tp of each consecutive block of the given sizes."""
    out, start = [], 0
    for size in sizes:
        part = size // tp
        out.append(torch.arange(start + rank * part, start + (rank + 1) * part))
        start += size
    return torch.cat(out)


def _row_index(spec, tp: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows of the column-parallel input projection, channels of the row-parallel output's input)."""
    if spec.kind == "attention":  # wqkv rows [q (heads x hd), k, v]; heads are contiguous
        return _blocks([spec.q_dim, spec.kv_dim, spec.kv_dim], rank, tp), _blocks([spec.q_dim], rank, tp)
    if spec.kind == "mlp":
        fc1 = _blocks([spec.ffn_hidden] * (2 if spec.gated else 1), rank, tp)
        return fc1, _blocks([spec.ffn_hidden], rank, tp)
    if spec.kind == "mamba2":  # in_proj rows [z, x, B, C, dt]
        gn = spec.ngroups * spec.d_state
        return (_blocks([spec.d_inner, spec.d_inner, gn, gn, spec.nheads], rank, tp),
                _blocks([spec.d_inner], rank, tp))
    return _blocks([spec.d_inner, spec.d_inner], rank, tp), _blocks([spec.d_inner], rank, tp)  # [x, z]


def shard_layer_state(spec, state: dict, rank: int, tp: int) -> dict:
    """Rank `rank`'s share of a one-GPU layer's state_dict (reference or real parameter names)."""
    check_tp(tp)
    rows, inner = _row_index(spec, tp, rank)
    out_name = OUTPUT_PROJ[spec.kind]
    in_name = {"attention": "wqkv", "mlp": "fc1"}.get(spec.kind, "in_proj")
    per_channel: dict = {}
    if spec.kind == "mamba2":
        gn = spec.ngroups * spec.d_state
        conv = _blocks([spec.d_inner, gn, gn], rank, tp)
        heads = _blocks([spec.nheads], rank, tp)
        per_channel = {"conv1d.weight": conv, "conv1d.bias": conv, "dt_bias": heads, "A_log": heads,
                       "D": heads, "norm.weight": inner}
    elif spec.kind == "mamba":
        per_channel = {"conv1d.weight": inner, "conv1d.bias": inner, "dt_proj.weight": inner,
                       "dt_proj.bias": inner, "A_log": inner, "D": inner}
    shard = {}
    for name, value in state.items():
        if name in (f"{in_name}.weight", f"{in_name}.bias"):
            shard[name] = value[rows.to(value.device)]
        elif name == f"{out_name}.weight" or (spec.kind == "mamba" and name == "x_proj.weight"):
            shard[name] = value[:, inner.to(value.device)]
        elif name == f"{out_name}.bias":
            if rank == 0:
                shard[name] = value
        elif name in per_channel:
            shard[name] = value[per_channel[name].to(value.device)]
        elif spec.kind == "attention" and name in ("q_norm.weight", "k_norm.weight"):
            shard[name] = value  # one head_dim weight shared by every head: replicated
        else:
            raise KeyError(f"{spec.kind}: no sharding rule for parameter {name!r}")
    return {k: v.clone() for k, v in shard.items()}


def shard_layer_cache(spec, cache, rank: int, tp: int) -> tuple:
    """Rank `rank`'s share of a one-GPU layer's decode cache (same layouts as allocate_cache)."""
    if spec.kind == "mlp":
        return ()
    if spec.kind == "attention":
        heads = _blocks([spec.n_kv_heads], rank, tp)
        k, v, *rest = cache
        dim = 1 if rest == [] else 2  # SDPA (B, Hkv, L, hd); flash_attn (B, L, Hkv, hd) + seqlens
        return (k.index_select(dim, heads.to(k.device)), v.index_select(dim, heads.to(v.device)), *rest)
    conv, ssm = cache
    if spec.kind == "mamba2":
        gn = spec.ngroups * spec.d_state
        channels = _blocks([spec.d_inner, gn, gn], rank, tp)
        heads = _blocks([spec.nheads], rank, tp)
        return conv.index_select(1, channels.to(conv.device)), ssm.index_select(1, heads.to(ssm.device))
    channels = _blocks([spec.d_inner], rank, tp)
    return conv.index_select(1, channels.to(conv.device)), ssm.index_select(1, channels.to(ssm.device))


# ----------------------------------------------------------------------------- whole models

class VocabParallelEmbedding(nn.Module):
    """Rows [rank*V/N, (rank+1)*V/N) of the embedding; other ids give zeros; one all-reduce.

    Graph-safe (no boolean indexing): ids are shifted, clamped and the rows multiplied by a mask.
    """

    def __init__(self, vocab_size: int, d_model: int, rank: int, tp: int, group, device=None, dtype=None):
        super().__init__()
        self.local = vocab_size // tp
        self.start, self.group = rank * self.local, group
        self.weight = nn.Parameter(torch.randn(self.local, d_model, device=device, dtype=dtype))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.start
        valid = (local >= 0) & (local < self.local)
        out = F.embedding(local.clamp(0, self.local - 1), self.weight) * valid.unsqueeze(-1).to(self.weight.dtype)
        return _all_reduce(out, self.group)


class TPLanguageModel(ModelSteps, nn.Module):
    """`models.stack.LanguageModel` for one rank: sharded mixers, vocabulary-parallel ends.

    Norms and the residual stream are replicated. `prefill` and `decode` return the full (B, V)
    logits on every rank (all-gathered), as `LanguageModel` does.
    """

    def __init__(self, spec: ModelSpec, mixers: list[nn.Module], rank: int, tp: int, group,
                 device=None, dtype=None, fused_norm: bool = False):
        super().__init__()
        shard_model(spec, tp)  # validates the split (vocabulary and every mixer)
        self.spec, self.rank, self.tp, self.group = spec, rank, tp, group
        self.embedding = VocabParallelEmbedding(spec.vocab_size, spec.d_model, rank, tp, group, device, dtype)
        self.blocks, self.norm_f = blocks_and_final_norm(spec, mixers, device, dtype, fused_norm)
        if spec.tie_embeddings:
            self.lm_head = None
        else:
            self.lm_head = nn.Linear(spec.d_model, spec.vocab_size // tp, bias=False, device=device, dtype=dtype)

    def _logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight if self.lm_head is None else self.lm_head.weight
        local = F.linear(last_hidden, weight)  # (B, V/N)
        if self.tp == 1:
            return local
        batch, part = local.shape
        gathered = torch.empty(self.tp * batch, part, device=local.device, dtype=local.dtype)
        _all_gather(gathered, local.contiguous(), self.group)
        return gathered.view(self.tp, batch, part).permute(1, 0, 2).reshape(batch, self.tp * part)


def build_tp_model(spec: ModelSpec, rank: int, tp: int, group, device="cuda", dtype=torch.bfloat16,
                   reference: bool = False, attn_backend: str | None = None) -> TPLanguageModel:
    mixers = [build_tp_layer(s, rank, tp, group, device, dtype, reference, attn_backend) for s in spec.layers]
    fused = not reference and fused_norm_available(device)
    return TPLanguageModel(spec, mixers, rank, tp, group, device, dtype, fused_norm=fused)


def load_sharded_model(tp_model: TPLanguageModel, full_model: nn.Module, rank: int, tp: int) -> None:
    """Copy rank `rank`'s share of a one-GPU `models.stack.LanguageModel`'s weights into tp_model."""
    spec = tp_model.spec
    part = spec.vocab_size // tp
    rows = slice(rank * part, (rank + 1) * part)
    with torch.no_grad():
        tp_model.embedding.weight.copy_(full_model.embedding.weight[rows])
        if tp_model.lm_head is not None:
            tp_model.lm_head.weight.copy_(full_model.lm_head.weight[rows])
        tp_model.norm_f.load_state_dict(full_model.norm_f.state_dict())
        for layer_spec, mine, full in zip(spec.layers, tp_model.blocks, full_model.blocks):
            mine.norm.load_state_dict(full.norm.state_dict())
            state = shard_layer_state(layer_spec, weights_module(full.mixer).state_dict(), rank, tp)
            tp_weights_module(mine.mixer).load_state_dict(state)


__all__ = ["TPLanguageModel", "TPMamba2", "TPMixer", "TPRefMamba", "VocabParallelEmbedding", "build_tp_layer",
           "build_tp_model", "load_sharded_model", "shard_layer_cache", "shard_layer_state",
           "tp_weights_module"]
