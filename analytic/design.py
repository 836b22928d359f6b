"""The hybrid design space: other layer mixes and other mixers around a base model, and what each costs.

The paper's hybrid (arXiv 2406.07887 §3: 24 Mamba-2 + 4 attention + 28 MLP of 56 blocks, "43 % / 7 % /
50 %") was chosen for quality. A design keeps the base's block count, d_model, vocabulary and layer
specs and changes the mix: `attention` of its mixer blocks are attention, the rest one SSM kind
(mamba2, mamba3, gdn, mamba), and an MLP share of all blocks (default: the base's) are MLPs. Attention
blocks sit evenly among the mixers and MLPs follow the mixers evenly (the order changes no cost here).
The design with the base's own mix and SSM kind is the base model itself (`is_base`).

Per design and context length: parameters, KV-cache and recurrent-state bytes per sequence, the largest
decode batch that fits, decode tokens/s there and at given batches, and the time to first token (the
prefill of `batch` prompts of `seqlen` tokens). Every number is what `analytic.predict.predict` and
`analytic.memory.max_batch` give for the design's ModelSpec (tests hold them equal); the sweep resolves
the calibration once and evaluates only the points it needs, so 100 designs x 4 lengths take well under
a second.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analytic.calibration import resolve
from analytic.composition import CountedOp, step_ops
from analytic.efficiency import ceilings, graph_step_s, power_capped_s, step_op_times, sustained_s
from analytic.hardware import get_gpu
from analytic.host_chain import host_seconds
from analytic.memory import ALLOCATOR_HEADROOM, memory_per_gpu
from analytic.pipeline import step_time
from models.registry import BUILTIN_LAYERS
from models.specs import LETTERS, MLPSpec, ModelSpec, SpecError

SSM_KINDS = ("mamba2", "mamba3", "gdn", "mamba")
BATCH_LIMIT = 1 << 24  # as analytic.memory.largest_batch
COLUMNS = ["design", "ssm", "attention_layers", "ssm_layers", "mlp_layers", "mix", "is_base", "params",
           "seqlen", "kv_bytes_per_seq", "state_bytes_per_seq", "memory_per_seq_bytes", "max_batch",
           "batch", "at_max_batch", "decode_ms", "decode_tokens_per_s", "ttft_ms", "gpu", "tp", "calibrated"]
_LETTER = {kind: letter for letter, kind in LETTERS.items()}
BLOCK_GROUP = "block"  # analytic.composition's group of the per-block add + norm


@dataclass(frozen=True)
class Design:
    name: str
    ssm: str
    attention: int
    ssm_layers: int
    mlp: int
    model: ModelSpec
    is_base: bool

    @property
    def mix(self) -> str:
        """Shares of SSM / attention / MLP blocks in percent, as the paper writes 43/7/50."""
        n = len(self.model.pattern)
        return "/".join(f"{round(100 * k / n)}" for k in (self.ssm_layers, self.attention, self.mlp))


def _layer_for(kind: str, base: ModelSpec):
    """The base's own spec of a kind, else the built-in 8B layer (at the base's d_model)."""
    spec = getattr(base, kind)
    if spec is not None:
        return spec
    builtin = BUILTIN_LAYERS["attention" if kind == "attention" else kind]
    if builtin.d_model == base.d_model:
        return builtin
    if kind == "mlp":
        return MLPSpec(d_model=base.d_model, ffn_hidden=4 * base.d_model)
    return type(builtin)(d_model=base.d_model)


def design_pattern(n_ssm: int, n_attention: int, n_mlp: int, ssm_letter: str) -> str:
    """Attention evenly among the mixers, MLPs after the mixers as evenly as their count allows."""
    mixers = n_ssm + n_attention
    if mixers == 0:
        return "-" * n_mlp
    attention_at = {int((i + 0.5) * mixers / n_attention) for i in range(n_attention)} if n_attention else set()
    letters, placed = [], 0
    for j in range(mixers):
        letters.append("*" if j in attention_at else ssm_letter)
        target = round((j + 1) * n_mlp / mixers)
        letters += ["-"] * (target - placed)
        placed = target
    return "".join(letters)


def _check_shares(attention: list[int], mlp_shares: list[float] | None) -> None:
    if any(a < 0 for a in attention):
        raise SpecError(f"attention layer counts must be >= 0, got {attention}")
    if mlp_shares is not None and any(not 0.0 <= r < 1.0 for r in mlp_shares):
        raise SpecError(f"MLP shares must be in [0, 1), got {mlp_shares}")


def design_models(base: ModelSpec, attention: list[int], ssm_kinds: list[str],
                  mlp_shares: list[float] | None = None) -> list[Design]:
    """Every (SSM kind, attention count, MLP share) design around `base` (module docstring)."""
    _check_shares(attention, mlp_shares)
    unknown = [k for k in ssm_kinds if k not in SSM_KINDS]
    if unknown:
        raise SpecError(f"unknown SSM kinds {unknown} (use {', '.join(SSM_KINDS)})")
    n_blocks = len(base.pattern)
    base_mix = base.layer_mix
    base_ssm = next((k for k in SSM_KINDS if k in base_mix), None)
    shares = mlp_shares if mlp_shares is not None else [base_mix.get("mlp", 0) / n_blocks]
    designs = []
    for ssm in ssm_kinds:
        for share in shares:
            n_mlp = round(share * n_blocks)
            mixers = n_blocks - n_mlp
            for n_attention in attention:
                if n_attention > mixers:
                    raise SpecError(f"{n_attention} attention layers do not fit {mixers} mixer blocks "
                                    f"({n_blocks} blocks, {n_mlp} MLP)")
                n_ssm = mixers - n_attention
                name = f"{ssm}-a{n_attention}-m{n_mlp}"
                is_base = (ssm == base_ssm and base_mix.get("attention", 0) == n_attention
                           and base_mix.get("mlp", 0) == n_mlp and base_mix.get(ssm, 0) == n_ssm)
                if is_base:
                    model = base
                else:
                    pattern = design_pattern(n_ssm, n_attention, n_mlp, _LETTER[ssm])
                    kinds = {LETTERS[c] for c in pattern}
                    model = ModelSpec(name=name, d_model=base.d_model, vocab_size=base.vocab_size, pattern=pattern,
                                      norm=base.norm, tie_embeddings=base.tie_embeddings, max_seqlen=base.max_seqlen,
                                      description=f"{base.name} design: {name}", source=f"design around {base.name}",
                                      **{kind: _layer_for(kind, base) for kind in kinds})
                designs.append(Design(name, ssm, n_attention, n_ssm, n_mlp, model, is_base))
    return designs


def max_decode_batch(model: ModelSpec, seqlens: np.ndarray, gpu, tp: int = 1) -> np.ndarray:
    """`analytic.memory.max_batch` at each context length in closed form: a decode footprint per GPU
    is fixed (weights) plus a per-sequence part (KV cache, state, activations, logits), linear in batch."""
    total = memory_per_gpu(model, np.array([[1.0], [2.0]]), np.asarray(seqlens)[None, :], tp, phase="decode")
    one, two = total["total_bytes"][0], total["total_bytes"][1]
    per_seq, fixed = two - one, 2 * one - two
    budget = gpu.mem_bytes * ALLOCATOR_HEADROOM
    fits = np.floor((budget - fixed) / per_seq)
    # floor can land one off where the division is exact in reals but not in floats: check both sides
    fits = np.where(fixed + fits * per_seq > budget, fits - 1, fits)
    fits = np.where(fixed + (fits + 1) * per_seq <= budget, fits + 1, fits)
    return np.clip(fits, 0, BATCH_LIMIT).astype(np.int64)


def _counted(ops: list[CountedOp], counts: dict) -> list[CountedOp]:
    """The template's ops with each layer kind's count replaced (scalars, or per-point arrays)."""
    return [CountedOp(c.group, c.op, counts.get(c.group, c.count)) for c in ops]


def _template(designs: list[Design]) -> ModelSpec:
    """One model holding every layer kind the designs use (their specs are shared: `_layer_for`), so
    one op list covers them all; a design lacking a kind runs its ops zero times."""
    kinds = list(dict.fromkeys(kind for d in designs for kind in d.model.layer_mix))
    first = designs[0].model
    specs = {kind: next(getattr(d.model, kind) for d in designs if kind in d.model.layer_mix) for kind in kinds}
    return replace(first, name="design-template", pattern="".join(_LETTER[kind] for kind in kinds),
                   **{kind: specs.get(kind) for kind in LETTERS.values()})


def _sweep_seconds(designs: list[Design], phase: str, b: np.ndarray, L: np.ndarray, per_design: int,
                   ceil) -> np.ndarray:
    """`analytic.pipeline.step_time`'s total at tp=1 for every design, in one evaluation: their op lists
    differ only in how often each layer kind's ops run, so the template's ops are timed once over
    every design's points with per-point counts; the shared clock and the sustained clock take those
    counts as arrays; the graph step and the host chain (sums of counts) are computed per design."""
    template = step_ops("model", _template(designs), phase, b, L)
    mixes = [d.model.layer_mix for d in designs]
    kinds = {c.group for c in template} & set(LETTERS.values())
    per_kind = [{**{kind: mix.get(kind, 0) for kind in kinds}, BLOCK_GROUP: len(d.model.pattern)}
                for mix, d in zip(mixes, designs)]
    counts = {group: np.repeat([c[group] for c in per_kind], per_design).astype(np.float64) for group in per_kind[0]}
    ops = _counted(template, counts)
    times = step_op_times(ops, ceil)
    seconds, _speedup = power_capped_s(ops, times, ceil)
    seconds, _slowdown = sustained_s(seconds, ops, times, ceil)
    out = np.empty_like(seconds)
    for i, design in enumerate(designs):
        part = slice(i * per_design, (i + 1) * per_design)
        mine = _counted(template, per_kind[i])
        if phase == "prefill":
            out[part] = np.maximum(seconds[part], host_seconds("model", design.model, phase, mine, ceil))
        else:
            out[part] = graph_step_s(seconds, mine, ceil)[part]  # an op's kernel count may vary over the points
    return out


def _tp_ms(model: ModelSpec, phase: str, b: np.ndarray, L: np.ndarray, calibration, gpu: str, tp: int) -> np.ndarray:
    """One rank's step time at each point (`analytic.pipeline.step_time`, one call a point: TP sweeps are slower)."""
    return np.array([float(step_time(model, phase, [int(bi)], [int(li)], gpu, calibration, tp).total_s[0]) * 1e3
                     for bi, li in zip(b, L)])


def design_sweep(designs: list[Design], seqlens: list[int], batches: list[int], gpu: str = "h100",
                 calibration="default", tp: int = 1) -> pd.DataFrame:
    """One row per design, context length and batch (the largest that fits, then each given batch)."""
    if not seqlens:
        raise SpecError("give at least one sequence length")
    gpu_spec = get_gpu(gpu)
    cal = resolve(calibration, gpu)
    ceil = ceilings(gpu_spec, cal)
    lengths = np.asarray(seqlens, dtype=np.float64)
    given = [int(b) for b in batches]
    points = len(lengths) * (1 + len(given))
    plan = []  # per design: its batches, lengths, and which rows run
    for design in designs:
        biggest = max_decode_batch(design.model, lengths, gpu_spec, tp)
        rows_b = np.concatenate([biggest, np.repeat(np.array(given, dtype=np.int64), len(lengths))])
        rows_L = np.concatenate([lengths, np.tile(lengths, len(given))])
        plan.append((biggest, rows_b, rows_L))
    decode_ms = np.full((len(designs), points), np.nan)
    ttft_ms = np.full((len(designs), points), np.nan)
    b = np.concatenate([np.maximum(plan[i][1], 1) for i in range(len(designs))]).astype(np.float64)
    L = np.concatenate([plan[i][2] for i in range(len(designs))])  # a batch of 0 (nothing fits): timed at 1, NaN
    for phase, out in (("decode", decode_ms), ("prefill", ttft_ms)):
        if tp > 1:
            out[:] = np.concatenate([_tp_ms(d.model, phase, b[i * points:(i + 1) * points],
                                            L[i * points:(i + 1) * points], calibration, gpu, tp)
                                     for i, d in enumerate(designs)]).reshape(len(designs), points)
        elif designs:
            out[:] = (_sweep_seconds(designs, phase, b, L, points, ceil) * 1e3).reshape(len(designs), points)
    n = len(designs)
    facts = [(d.model.params, d.model.kv_bytes_per_token(), d.model.state_bytes_per_sequence()) for d in designs]
    rows_b = np.concatenate([plan[i][1] for i in range(n)])
    rows_L = np.concatenate([plan[i][2] for i in range(n)])
    kv_per_token = np.repeat([f[1] for f in facts], points)
    state = np.repeat([f[2] for f in facts], points)
    nothing = rows_b == 0
    decode, ttft = np.where(nothing, np.nan, decode_ms.ravel()), np.where(nothing, np.nan, ttft_ms.ravel())

    def each(values) -> np.ndarray:
        return np.repeat(np.asarray(values), points)

    return pd.DataFrame({
        "design": each([d.name for d in designs]), "ssm": each([d.ssm for d in designs]),
        "attention_layers": each([d.attention for d in designs]), "ssm_layers": each([d.ssm_layers for d in designs]),
        "mlp_layers": each([d.mlp for d in designs]), "mix": each([d.mix for d in designs]),
        "is_base": each([d.is_base for d in designs]), "params": each([f[0] for f in facts]),
        "seqlen": rows_L.astype(np.int64), "kv_bytes_per_seq": (rows_L * kv_per_token).astype(np.int64),
        "state_bytes_per_seq": state, "memory_per_seq_bytes": (rows_L * kv_per_token + state).astype(np.int64),
        "max_batch": np.concatenate([np.tile(plan[i][0], 1 + len(given)) for i in range(n)]), "batch": rows_b,
        "at_max_batch": np.tile(np.arange(points) < len(lengths), n), "decode_ms": decode,
        "decode_tokens_per_s": rows_b / decode * 1e3, "ttft_ms": ttft,
        "gpu": gpu, "tp": tp, "calibrated": cal is not None}, columns=COLUMNS)


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Per context length, the designs at their largest batch that no other design beats on both decode
    throughput (higher) and memory per sequence (lower)."""
    rows = frame[frame["at_max_batch"] & frame["decode_tokens_per_s"].notna()]
    keep = []
    for _, group in rows.groupby("seqlen", sort=True):
        ordered = group.sort_values(["memory_per_seq_bytes", "decode_tokens_per_s"], ascending=[True, False])
        best = -np.inf
        for index, row in ordered.iterrows():
            if row["decode_tokens_per_s"] > best:
                keep.append(index)
                best = row["decode_tokens_per_s"]
    return frame.loc[keep]
