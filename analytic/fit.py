"""Fit each op class's ceilings (t0, bw, rate) to its kernels' microbenchmarks.

A sample is one kernel family run alone at one size, with the measured time. It names either the
layer ops it stands for (a spec, phase, batch, seqlen and op names: the fit then times exactly the
ops the cost model will time, e.g. the five SSD kernels together), or raw bytes/FLOPs/kernels.
The fit minimises squared relative error of  sum(kernels*t0 + max(bytes/bw, flops/rate))  over a
log-spaced grid, then refines around the best point. Three (four for attention decode) physical
parameters per class, fitted on sizes chosen off the evaluation grid, never on layer sweeps.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from analytic.costs import layer_ops
from analytic.efficiency import (ATTN_DECODE_LATENCIES, EXTRA_PARAMS, ClassCeiling, Ceilings,
                                 attention_decode_latency_counts, attention_decode_plan, attention_decode_stream_s,
                                 attention_prefill_compute_s, host_time, op_time, prefill_slots)
from analytic.families import attention_decode as flash_decode
from analytic.families import chunk_programs
from analytic.families import ssd as ssd_family
from analytic.families.attention_prefill import SCORE_RATE, TILE
from analytic.families.selective_scan import BLOCK_SLOTS, STATE_OVERHEAD, scan_work
from analytic.ops import ATTN_DECODE, ATTN_PREFILL, ELEMENTWISE, GEMM, SELECTIVE_SCAN, SSD, STATE_UPDATE, Op, gemm
from models.registry import BUILTIN_LAYERS
from models.specs import AttentionSpec, Mamba2Spec, MambaSpec, MLPSpec

_SPEC_TYPES = {"mamba": MambaSpec, "mamba2": Mamba2Spec, "attention": AttentionSpec, "mlp": MLPSpec}


def sample_ops(sample: dict) -> list[Op]:
    """The cost model's ops for one calibration sample (see module docstring)."""
    if "layer" in sample:
        base = BUILTIN_LAYERS.get(sample["layer"])
        spec_fields = sample.get("spec", {})
        if base is None:
            spec = _SPEC_TYPES[sample["kind"]](**spec_fields)
        else:
            spec = replace(base, **spec_fields) if spec_fields else base
        ops = layer_ops(spec, sample["phase"], np.array([float(sample["batch"])]),
                        np.array([float(sample["seqlen"])]))
        wanted = set(sample["ops"])
        return [op for op in ops if op.name in wanted]
    if sample.get("class") == GEMM:
        return [gemm("gemm", np.array([float(sample["m"])]), int(sample["n"]), int(sample["k"]))]
    family = {"family": sample["family"]} if "family" in sample else {}
    return [Op(sample.get("name", "raw"), sample["class"], np.array([float(sample["flops"])]),
               np.array([float(sample["bytes"])]), int(sample.get("kernels", 1)), family)]


def samples_by_family(samples: dict) -> dict:
    """Samples regrouped by the ceilings their ops run at: a layer sample fits its ops' kernel family
    where one of them names one (e.g. Mamba-1's state update, filed under its class by calibrations before
    2026-11-24), else its op's class (the `*_shapes` families' samples join their class's)."""
    grouped: dict[str, list] = {}
    for key, items in samples.items():
        for sample in items:
            group = key
            if "layer" in sample:
                ops = sample_ops(sample)
                if ops:  # the first op naming a family (a fused call's norms and gates time at their class)
                    family = next((op.shape["family"] for op in ops if (op.shape or {}).get("family")), None)
                    group = family or ops[0].op_class
            grouped.setdefault(group, []).append(sample)
    return grouped


def _predict(samples_ops: list[list[Op]], eager: np.ndarray, base: Ceilings, op_class: str,
             cand: ClassCeiling) -> np.ndarray:
    classes = dict(base.classes)
    classes[op_class] = cand
    ceil = replace(base, classes=classes)
    out = []
    for ops, is_eager in zip(samples_ops, eager):
        gpu = sum(float(op_time(op, ceil)[0][0]) for op in ops)
        out.append(max(gpu, sum(host_time(op, ceil) for op in ops)) if is_eager else gpu)
    return np.array(out)


def _candidate(params: dict) -> ClassCeiling:
    return ClassCeiling(params["t0_s"], params["bw_bytes_s"], params["flops_s"],
                        {k: params[k] for k in EXTRA_PARAMS if k in params}, params.get("host_s", 10e-6))


SCAN_STATE_OVERHEADS = (0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)
SCAN_BLOCKS_PER_SM = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # resident scan blocks per SM (0: no wave term)


def fit_selective_scan(samples: list[dict], base: Ceilings) -> dict:
    """Per-thread-configuration scan rates and the rate table over (length, tokens) of the 8B spec,
    on the scan's work (analytic.families.selective_scan.scan_work).

    The scan is compute-bound, so each sample gives its rate directly. Samples of the 8B spec alone
    (the paper's d_state 128, d_inner 8192) fix the rates on 9 FLOPs per padded element, as before.
    Samples of other specs (d_state 16-256, other d_inner) also fix the per-channel share n0 and the
    resident blocks: the pair whose work, at the 8B table's rates, predicts every sample best (least
    mean squared relative error; the 8B samples' own predictions barely move with either).
    """
    ops = [sample_ops(s)[0] for s in samples]
    reference = [i for i, s in enumerate(samples) if _is_reference_scan(s)]
    if not reference or len(reference) == len(samples):
        return _fit_scan_at(samples, ops, base, 0.0, 0.0, with_terms=False)
    best = None
    for n0 in SCAN_STATE_OVERHEADS:
        for per_sm in SCAN_BLOCKS_PER_SM:
            fitted = _fit_scan_at(samples, ops, base, n0, per_sm * base.gpu.sm_count)
            if best is None or fitted["fit_mean_sq_err"] < best["fit_mean_sq_err"]:
                best = fitted
    return best


def _is_reference_scan(sample: dict) -> bool:
    return sample.get("spec") in (None, spec_fields(BUILTIN_LAYERS["mamba"]))


def _fit_scan_at(samples: list[dict], ops: list[Op], base: Ceilings, state_overhead: float,
                 block_slots: float, with_terms: bool = True) -> dict:
    """The scan's rates with the per-channel share and block slots fixed (0, 0: work = padded FLOPs);
    `with_terms` records both (and the mean squared error the choice between them minimises)."""
    params = {"t0_s": base.graph_kernel_s, "bw_bytes_s": base.copy_bw_bytes_s,
              "flops_s": base.classes[SELECTIVE_SCAN].flops_s}
    if with_terms:
        params.update({STATE_OVERHEAD: state_overhead, BLOCK_SLOTS: block_slots})
    rates: dict[str, list] = {}
    for sample, op in zip(samples, ops):
        chunk = int(np.asarray(op.shape["chunk"]).ravel()[0])
        even = bool(np.asarray(op.shape.get("even", True)).ravel()[0])
        flops = float(np.asarray(scan_work(op, state_overhead, block_slots)).ravel()[0])
        key = str(chunk) if even else "uneven"
        rates.setdefault(key, []).append(flops / max(float(sample["time_s"]) - params["t0_s"], 1e-9))
    for key, values in rates.items():
        params[f"flops_s_{key}"] = float(np.median(values))
    params["flops_s"] = float(np.median([v for vals in rates.values() for v in vals]))
    table = scan_rate_table(samples, params["t0_s"], state_overhead, block_slots)
    if table:
        params["rate_table"] = table
    cal_classes = dict(base.classes)
    cal_classes[SELECTIVE_SCAN] = _candidate(params)
    ceil = replace(base, classes=cal_classes)
    measured = np.array([float(s["time_s"]) for s in samples])
    pred = np.array([float(op_time(op, ceil)[0][0]) for op in ops])
    rel = (pred - measured) / measured
    mean_sq = {"fit_mean_sq_err": float(np.mean(rel ** 2))} if with_terms else {}
    return {**params, "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel))), **mean_sq}


def scan_rate_table(samples: list[dict], t0_s: float, state_overhead: float = 0.0, block_slots: float = 0.0) -> dict:
    """{"even"|"uneven": {"seqlen": [...], "tokens": [[...]], "rate": [[...]]}} from the scan samples
    of the 8B spec: the rate on the scan's work at each measured (sequence length, total tokens).
    Samples of other specs (another d_state) fit the work's terms instead (fit_selective_scan)."""
    grouped: dict[str, dict[int, dict[float, list]]] = {}
    for sample in samples:
        if not _is_reference_scan(sample):
            continue
        op = sample_ops(sample)[0]
        L = int(sample["seqlen"])
        tokens = float(sample["batch"]) * L
        even = bool(np.asarray(op.shape.get("even", True)).ravel()[0])
        flops = float(np.asarray(scan_work(op, state_overhead, block_slots)).ravel()[0])
        rate = flops / max(float(sample["time_s"]) - t0_s, 1e-9)
        grouped.setdefault("even" if even else "uneven", {}).setdefault(L, {}).setdefault(tokens, []).append(rate)
    table = {}
    for path, by_length in grouped.items():
        lengths = sorted(by_length)
        table[path] = {"seqlen": lengths,
                       "tokens": [sorted(by_length[L]) for L in lengths],
                       "rate": [[float(np.median(by_length[L][t])) for t in sorted(by_length[L])] for L in lengths]}
    return table


def spec_fields(spec) -> dict:
    """A layer spec's constructor fields, as a calibration sample stores them."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(spec).items() if k not in ("kind", "letter")}


def fit_attention_prefill(samples: list[dict], base: Ceilings) -> dict:
    """FlashAttention prefill's aggregate tile rate, CTA slots per SM and host dispatch, in closed form.

    Each sample is one SDPA call timed alone from an idle GPU, so its host dispatch precedes the
    kernel: time = host + launch floor + busiest slot's tiles / per-slot rate. For each candidate
    slot count and host dispatch the rate is the samples' median; the best candidate has the
    smallest median |error| (a small call's dispatch swings by +-30 % between otherwise equal calls).
    The kernel is compute-bound at these head sizes; its byte ceiling is the copy bandwidth.
    Samples over several head dims also fix the softmax's rate on score elements
    (analytic.families.attention_prefill): a tile's time is then its FLOPs at the tensor rate plus
    its 128 x 128 scores at that rate, both by least squares on relative error.
    """
    t0 = base.graph_kernel_s
    ops = [sample_ops(s)[0] for s in samples]
    measured = np.array([float(s["time_s"]) for s in samples])
    several_head_dims = len({int(op.shape.get("head_dim", 0)) for op in ops}) > 1
    best = None
    for per_sm in ((1.0, 2.0, 3.0, 4.0) if several_head_dims else (1.0, 2.0)):
        if several_head_dims:
            slots = [prefill_slots(op, per_sm, base.gpu) for op in ops]
        else:
            slots = [base.gpu.sm_count * per_sm] * len(ops)
        unit = np.array([float(np.asarray(attention_prefill_compute_s(op, n, 1.0)).ravel()[0])
                         for op, n in zip(ops, slots)])
        scores = unit * TILE * TILE / np.array([float(op.shape["tile_flop"]) for op in ops])
        for host in np.arange(0.0, 60e-6, 0.5e-6):
            kernel = measured - host - t0
            if (kernel <= 0).any():
                break
            if several_head_dims:
                inv_rate, inv_score = _nonnegative_relative_lstsq(np.stack([unit, scores], axis=1), kernel)
                if inv_rate <= 0:
                    continue
                rate, score_rate = 1.0 / inv_rate, (1.0 / inv_score if inv_score > 0 else None)
                pred = host + t0 + unit / rate + (scores / score_rate if score_rate else 0.0)
            else:
                rate, score_rate = float(np.median(unit / kernel)), None
                pred = host + t0 + unit / rate
            rel = pred / measured - 1
            score = float(np.median(np.abs(rel)))
            if best is None or score < best[0]:
                best = (score, float(np.max(np.abs(rel))), per_sm, host, rate, score_rate)
    score, worst, per_sm, host, rate, score_rate = best
    return {"t0_s": t0, "bw_bytes_s": base.copy_bw_bytes_s, "flops_s": rate, "host_s": host,
            "ctas_per_sm": per_sm, **({SCORE_RATE: score_rate} if score_rate else {}), "n_samples": len(samples),
            "fit_median_abs_err": score, "fit_max_abs_err": worst}


def _nonnegative_relative_lstsq(units: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(a, b) >= 0 minimising the squared relative error of a * units[:, 0] + b * units[:, 1] against
    target; b = 0 (and a alone) where the free solution makes b negative."""
    design = units / target[:, None]
    a, b = np.linalg.lstsq(design, np.ones(len(target)), rcond=None)[0]
    if b <= 0:
        a, b = float(design[:, 0] @ np.ones(len(target)) / (design[:, 0] @ design[:, 0])), 0.0
    return float(a), float(b)


def fit_attention_decode(samples: list[dict], base: Ceilings, steps: int = 21) -> dict:
    """FlashAttention-2 decode: stream caps (split-KV and plain kernel), per-CTA rate and CTAs per SM
    on a grid; for each, the fixed latencies (launch floor, the combine kernel's fixed and per-split
    cost, the latency per wave of CTAs) by least squares on relative error, as they enter linearly.
    Each sample is one SDPA call replayed in a CUDA graph over rotated caches, so no host term."""
    ops = [next(op for op in sample_ops(s) if op.op_class == ATTN_DECODE) for s in samples]
    measured = np.array([float(s["time_s"]) for s in samples])
    sm = base.gpu.sm_count
    plans = [attention_decode_plan(op, sm) for op in ops]
    splits, n_ctas, per_cta = (np.array([float(np.asarray(p[i]).ravel()[0]) for p in plans]) for i in range(3))
    other = np.array([float((op.bytes_ - op.shape["kv_bytes"]).ravel()[0]) for op in ops])
    head_dims = [float(op.shape.get("head_dim", 0)) for op in ops]
    # Samples over several head dims also fix the CTAs' softmax cost per padded score element
    # (analytic.families.attention_decode); 0 keeps the head-dim-blind per-CTA rate.
    score_costs = (0.0, *np.geomspace(1e-11, 1e-9, 9)) if len(set(head_dims)) > 1 and min(head_dims) > 0 else (0.0,)
    copy = base.copy_bw_bytes_s
    caps = np.geomspace(0.4 * copy, 1.25 * copy, steps)
    best = None
    for per_sm in (1.0, 2.0):
        slots = sm * per_sm
        design = attention_decode_latency_counts(splits, n_ctas, slots) / measured[:, None]
        for cap_split in caps:
            for cap_nosplit in caps:
                for per_cta_bw in np.geomspace(copy / 400, copy / 10, steps + 10):
                    for score_s in score_costs:
                        rate = flash_decode.per_cta_rate(per_cta_bw, score_s, head_dims) if score_s else per_cta_bw
                        stream = attention_decode_stream_s(splits, n_ctas, per_cta, cap_split, cap_nosplit, rate,
                                                           slots) + other / cap_split
                        coef = np.maximum(np.linalg.lstsq(design, 1.0 - stream / measured, rcond=None)[0], 0.0)
                        rel = (stream + design @ coef * measured) / measured - 1.0
                        score = float(np.mean(rel ** 2))
                        if best is None or score < best[0]:
                            best = (score, rel, per_sm, cap_split, cap_nosplit, per_cta_bw, score_s, coef)
    _score, rel, per_sm, cap_split, cap_nosplit, per_cta_bw, score_s, coef = best
    return {"bw_bytes_s": float(cap_split), "flops_s": base.classes[ATTN_DECODE].flops_s,
            "bw_nosplit_bytes_s": float(cap_nosplit), "bw_per_cta_bytes_s": float(per_cta_bw),
            **({flash_decode.CTA_SCORE_S: float(score_s)} if score_s else {}),
            "ctas_per_sm": per_sm, **{k: float(v) for k, v in zip(ATTN_DECODE_LATENCIES, coef)},
            "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel)))}


def _spans_hyperparameters(ops_list: list[list[Op]]) -> bool:
    """Whether the samples ran more than one set of their kernel's hyper-parameters."""
    return len({tuple(sorted(ops[0].shape.get("hparams", {}).items())) for ops in ops_list if ops and ops[0].shape}) > 1


def _spans_program_counts(ops_list: list[list[Op]]) -> bool:
    """Whether the samples' sequence-long programs (shape "program_ctas") come in more than one count."""
    counts = {float(np.asarray(op.shape["program_ctas"]).ravel()[0])
              for ops in ops_list for op in ops if op.shape and "program_ctas" in op.shape}
    return len(counts) > 1


def _program_footprints(ops_list: list[list[Op]]) -> set[float]:
    """The distinct on-chip footprints of the samples' sequence-long programs (analytic.families.chunk_programs)."""
    return {float(np.asarray(op.shape["program_bytes"]).ravel()[0])
            for ops in ops_list for op in ops if chunk_programs.sequence_programs(op)}


PROGRAM_LATENCIES = (0.0, *np.geomspace(0.25e-6, 32e-6, 29))


def fit_sequence_programs(op_class: str, samples: list[dict], base: Ceilings) -> dict:
    """A kernel family whose programs walk whole sequences, sampled at several footprints (Mamba-3's
    chunk kernel at d_state 64 and 128, fla's state passing): the on-chip budget that sets how many
    programs an SM holds, each chunk's fixed latency, the FLOP rate of one program an SM, and the launch
    floor, byte ceiling and host dispatch, on a grid (analytic.families.chunk_programs).

    The budget only matters at multiples of the sampled footprints, so those are its candidates. The
    loss is the mean |relative error|, as for SSD (fit_ssd says why)."""
    ops_list = [sample_ops(s) for s in samples]
    measured = np.array([float(s["time_s"]) for s in samples])
    eager = np.array([s.get("mode", "graph") == "eager" for s in samples])
    sm = base.gpu.sm_count
    ours = [[op for op in ops if op.shape and op.shape.get("family", op.op_class) == op_class] for ops in ops_list]
    others = [[op for op in ops if all(op is not o for o in own)] for ops, own in zip(ops_list, ours)]
    fixed = np.array([sum(float(op_time(op, base)[0][0]) for op in rest) for rest in others])
    others_host = np.array([sum(host_time(op, base) for op in rest) for rest in others])
    n_own = np.array([float(sum(op.kernels for op in own)) for own in ours])
    flat = [(i, op) for i, own in enumerate(ours) for op in own]
    rows = np.array([i for i, _ in flat])
    bytes_ = np.array([float(op.bytes_[0]) for _, op in flat])
    work = np.array([float(op.flops[0]) for _, op in flat])
    kernels = np.array([float(op.kernels) for _, op in flat])
    is_prog = np.array([chunk_programs.sequence_programs(op) for _, op in flat])
    footprints = sorted(_program_footprints(ops_list))
    budgets = sorted({f * m * 1.0001 for f in footprints for m in range(1, chunk_programs.MAX_SLOTS + 1)})
    t0s, bws, _, hosts = ssd_grids(base)  # its FLOP grid is SSD's; one program an SM runs far below it
    rates = np.geomspace(base.gemm_peak_flops / 400, base.gemm_peak_flops / 2, 60)
    hosts = hosts if eager.any() else np.array([0.0])

    def per_sample(op_s):  # (..., op) -> (..., sample)
        out = np.zeros(op_s.shape[:-1] + (len(samples),))
        np.add.at(np.moveaxis(out, -1, 0), rows, np.moveaxis(op_s, -1, 0))
        return out

    best = None
    for budget in budgets:
        prog_unit = np.zeros(len(flat))  # waves x chunks: seconds per unit of chunk latency
        prog_work = work.copy()  # FLOP-seconds at rate 1 (waves x chunks x per-chunk FLOPs x SMs)
        for j, (_, op) in enumerate(flat):
            if is_prog[j]:
                prog_work[j] = float(chunk_programs.sequence_program_time(op, op.flops, 1.0, budget, 0.0, sm)[0])
                prog_unit[j] = float(chunk_programs.sequence_program_time(op, op.flops, 1.0, budget, 1.0, sm)[0]) \
                    - prog_work[j]
        for latency in PROGRAM_LATENCIES:
            compute = prog_unit * latency + prog_work / rates[:, None]  # (rate, op)
            mem = bytes_[None, :] / bws[:, None]  # (bw, op)
            for t0 in t0s:
                op_s = t0 * kernels + np.maximum(compute[:, None, :], mem[None, :, :])  # (rate, bw, op)
                gpu = per_sample(op_s) + fixed  # (rate, bw, sample)
                host = hosts[:, None] * n_own[None, :] + others_host[None, :]  # (host, sample)
                pred = np.where(eager, np.maximum(gpu[:, :, None, :], host[None, None]), gpu[:, :, None, :])
                err = np.mean(np.abs(pred / measured - 1.0), axis=-1)  # (rate, bw, host)
                i, j, k = np.unravel_index(int(np.argmin(err)), err.shape)
                if best is None or err[i, j, k] < best[0]:
                    best = (float(err[i, j, k]), {"t0_s": float(t0), "bw_bytes_s": float(bws[j]),
                                                  "flops_s": float(rates[i]), "host_s": float(hosts[k]),
                                                  chunk_programs.PROGRAM_BUDGET: float(budget),
                                                  chunk_programs.CHUNK_LATENCY: float(latency)})
    params = best[1]
    if not eager.any():
        params.pop("host_s")
    rel = (_predict(ops_list, eager, base, op_class, _candidate(params)) - measured) / measured
    return {**params, "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel)))}


SSD_TILE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SSD_WORKING_SETS = tuple(np.geomspace(0.5e9, 4e9, 7))  # bytes of fp32 chunk states
SSD_SLOWDOWNS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
SSD_CAUSAL_BLOCKS = (0.0, 64.0, 128.0)  # _chunk_scan_fwd's autotuned BLOCK_SIZE_M (0: the term off)
SSD_POLISH_STEPS = (1.08, 1.02, 1.005)  # the refinement's factors after the grid (its FLOP rates 5.8 % apart)
SSD_REFINED = 8  # grid points refined: the best of each of this many discrete-term combinations


def ssd_grids(base: Ceilings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The SSD fit's candidate launch floors, byte and FLOP ceilings and host costs per Triton launch."""
    return (np.geomspace(0.25e-6, 16e-6, 13), np.geomspace(base.copy_bw_bytes_s / 3, base.copy_bw_bytes_s * 1.25, 25),
            np.geomspace(base.gemm_peak_flops / 40, base.gemm_peak_flops / 2, 50), np.geomspace(2e-6, 256e-6, 43))


def fit_ssd(samples: list[dict], base: Ceilings) -> dict:
    """Mamba-2's five SSD kernels over head dim, state size, groups and chunk size
    (analytic.families.ssd): the launch floor, byte and FLOP ceilings and host dispatch shared by the
    five, the head-dim tile weight, the chunk scan's causal row block and the working-set reach and
    slowdown, on a grid; then the continuous ones (floor, ceilings, host, tile weight) refined
    (`_refine`) from the best grid point of each of the SSD_REFINED best combinations of the discrete
    terms, the lowest error after refinement kept: the grid's FLOP-rate steps are as wide as the effects
    that choose between those combinations.

    The fit minimises the mean |relative error|, not its square: a call timed eagerly from an idle GPU
    waits on its five Triton launches, whose host cost differs between sessions by up to 2x (the 8B
    samples of one session at 600-880 us, the spread's at 420 us); squared, those few host-bound
    samples would set the GPU ceilings."""
    ops_list = [sample_ops(s) for s in samples]
    measured = np.array([float(s["time_s"]) for s in samples])
    eager = np.array([s.get("mode", "graph") == "eager" for s in samples])
    n_kernels = np.array([sum(op.kernels for op in ops) for ops in ops_list], dtype=np.float64)
    width = max(len(ops) for ops in ops_list)

    def stacked(values):  # (sample, kernel) with zero padding
        out = np.zeros((len(ops_list), width))
        for i, row in enumerate(values):
            out[i, :len(row)] = row
        return out

    n_ops = stacked([[1.0] * len(ops) for ops in ops_list])
    bytes_ = stacked([[float(op.bytes_[0]) for op in ops] for ops in ops_list])
    t0s, bws, rates, hosts = ssd_grids(base)
    rates = rates[:, None, None]
    hosts = hosts if eager.any() else np.array([0.0])
    host_s = hosts[:, None] * n_kernels[None, :]  # (host, sample)
    best = {}  # (weight, block, reach, slowdown) -> (grid error, params)
    for weight, block in itertools.product(SSD_TILE_WEIGHTS, SSD_CAUSAL_BLOCKS):
        terms = {ssd_family.HEADDIM_TILE_WEIGHT: weight, ssd_family.CAUSAL_BLOCK_M: block}
        work = stacked([[float(op.flops[0]) * ssd_family.work_factor(op, terms) for op in ops] for ops in ops_list])
        for reach in SSD_WORKING_SETS:
            for slowdown in SSD_SLOWDOWNS:
                if slowdown == 0 and reach != SSD_WORKING_SETS[0]:
                    continue
                scale = np.array([float(ssd_family.working_set_factor(ops[0], reach, slowdown)[0]) for ops in ops_list])
                for t0 in t0s:
                    for bw in bws:
                        gpu = ((t0 * n_ops + np.maximum(bytes_ / bw, work[None] / rates)).sum(axis=2)) * scale
                        pred = np.where(eager, np.maximum(gpu[:, None, :], host_s), gpu[:, None, :])
                        err = np.mean(np.abs(pred / measured - 1.0), axis=2)  # (rate, host)
                        i, j = np.unravel_index(int(np.argmin(err)), err.shape)
                        combo = (weight, block, reach, slowdown)
                        if combo not in best or err[i, j] < best[combo][0]:
                            best[combo] = (float(err[i, j]), {
                                "t0_s": float(t0), "bw_bytes_s": float(bw), "flops_s": float(rates[i, 0, 0]),
                                "host_s": float(hosts[j]), ssd_family.HEADDIM_TILE_WEIGHT: float(weight),
                                ssd_family.CAUSAL_BLOCK_M: float(block), ssd_family.WORKING_SET_BYTES: float(reach),
                                ssd_family.WORKING_SET_SLOWDOWN: float(slowdown)})

    def mean_abs_err(candidate: dict) -> float:
        work = stacked([[float(op.flops[0]) * ssd_family.work_factor(op, candidate) for op in ops] for ops in ops_list])
        scale = np.array([float(ssd_family.working_set_factor(ops[0], candidate[ssd_family.WORKING_SET_BYTES],
                                                              candidate[ssd_family.WORKING_SET_SLOWDOWN])[0])
                          for ops in ops_list])
        gpu = (candidate["t0_s"] * n_ops + np.maximum(bytes_ / candidate["bw_bytes_s"], work / candidate["flops_s"])
               ).sum(axis=1) * scale
        pred = np.where(eager, np.maximum(gpu, candidate.get("host_s", 0.0) * n_kernels), gpu)
        return float(np.mean(np.abs(pred / measured - 1.0)))

    refined = []
    for _, params in sorted(best.values(), key=lambda item: item[0])[:SSD_REFINED]:
        if not eager.any():
            params.pop("host_s")
        continuous = [k for k in ("t0_s", "bw_bytes_s", "flops_s", "host_s", ssd_family.HEADDIM_TILE_WEIGHT)
                      if params.get(k, 0.0) > 0]
        params = _refine(mean_abs_err, params, continuous, SSD_POLISH_STEPS)
        refined.append((mean_abs_err(params), params))
    params = min(refined, key=lambda item: item[0])[1]
    rel = (_predict(ops_list, eager, base, SSD, _candidate(params)) - measured) / measured
    return {**params, "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel)))}


def _refine(loss, params: dict, keys: list[str], steps: tuple[float, ...]) -> dict:
    """Coordinate descent from a grid's best `params`: each of `keys` multiplied or divided by each of
    `steps` in turn (coarse to fine) while that lowers `loss`."""
    best = loss(params)
    for step in steps:
        improved = True
        while improved:
            improved = False
            for key in keys:
                for factor in (step, 1.0 / step):
                    trial = {**params, key: params[key] * factor}
                    value = loss(trial)
                    if value < best - 1e-12:
                        params, best, improved = trial, value, True
    return params


def fit_class(op_class: str, samples: list[dict], base: Ceilings, steps: int = 9) -> dict:
    """Best (t0_s, bw_bytes_s, flops_s[, bw_per_cta_bytes_s, host_s]) for one class, with its fit error."""
    if op_class == SELECTIVE_SCAN:
        return fit_selective_scan(samples, base)
    if op_class == ATTN_PREFILL and all(s.get("mode") == "eager" for s in samples):
        return fit_attention_prefill(samples, base)
    if op_class == ATTN_DECODE and all(s.get("mode", "graph") == "graph" for s in samples):
        return fit_attention_decode(samples, base)
    ops_list = [sample_ops(s) for s in samples]
    if op_class == SSD and _spans_hyperparameters(ops_list):
        return fit_ssd(samples, base)
    if len(_program_footprints(ops_list)) > 1:
        return fit_sequence_programs(op_class, samples, base)
    measured = np.array([float(s["time_s"]) for s in samples])
    eager = np.array([s.get("mode", "graph") == "eager" for s in samples])
    current = base.classes.get(op_class) or base.classes[ELEMENTWISE]  # a kernel family starts from its class
    centre = {"t0_s": max(current.t0_s, 1e-7), "bw_bytes_s": current.bw_bytes_s, "flops_s": current.flops_s}
    if eager.any():
        centre["host_s"] = current.host_s
    if op_class == ATTN_DECODE:
        centre["bw_per_cta_bytes_s"] = current.extra.get("bw_per_cta_bytes_s", current.bw_bytes_s / 64)
        centre["bw_nosplit_bytes_s"] = current.extra.get("bw_nosplit_bytes_s", current.bw_bytes_s)
    if op_class in (ATTN_PREFILL, ATTN_DECODE):
        centre["ctas_per_sm"] = 1.0
    # Samples of several state sizes or head dims: each wave of the state update's programs pays its
    # loads' latency (analytic.families.state_update), fitted with the programs an SM holds.
    program_waves = _spans_hyperparameters(ops_list) and all(ops[0].op_class == STATE_UPDATE for ops in ops_list)
    if program_waves:
        centre.update(wave_s=current.extra.get("wave_s", 0.5e-6), ctas_per_sm=4.0)
    # Chunk kernels whose programs walk whole sequences (analytic.families.chunk_programs): samples at
    # several program counts fix how many an SM holds.
    sequence_programs = _spans_program_counts(ops_list)
    if sequence_programs:
        centre["ctas_per_sm"] = current.extra.get("ctas_per_sm", 1.0)
    span = {k: 8.0 for k in centre}
    span["ctas_per_sm"] = 1.0
    if op_class == ATTN_DECODE or program_waves:  # memory-bound: the FLOP rate never binds
        span["flops_s"] = 1.0
    if op_class == GEMM:  # the tensor-core ceiling is measured (the best GEMM rate), not fitted
        centre["flops_s"], span["flops_s"] = base.gemm_peak_flops, 1.0
    def loss(params: dict) -> float:  # mean squared relative error over the samples
        pred = _predict(ops_list, eager, base, op_class, _candidate(params))
        return float(np.mean(((pred - measured) / measured) ** 2))

    best, best_err = dict(centre), np.inf
    steps = steps if len(centre) <= 3 else max(5, steps - 2 * (len(centre) - 3))
    for _round in range(4):
        grids = {k: (np.geomspace(centre[k] / span[k], centre[k] * span[k], steps if span[k] > 1.0 else 1)
                     if k != "ctas_per_sm"
                     else np.array([1.0, 2.0] if op_class == ATTN_PREFILL else [2.0, 4.0, 8.0, 16.0] if program_waves
                                   else [1.0, 2.0, 3.0, 4.0])) for k in centre}
        keys = list(grids)
        mesh = np.meshgrid(*[grids[k] for k in keys], indexing="ij")
        for idx in np.ndindex(mesh[0].shape):
            params = {k: float(mesh[i][idx]) for i, k in enumerate(keys)}
            err = loss(params)
            if err < best_err:
                best, best_err = params, err
        centre = best
        span = {k: (v ** 0.5 if k != "ctas_per_sm" else v) for k, v in span.items()}
    # The last grid is still ~14 % between points (5 steps over a 1.3x span): polish the free continuous
    # figures by coordinate descent, so a fit does not land a few per cent off its samples' centre.
    free = [k for k, v in span.items() if v > 1.0 and k != "ctas_per_sm"]
    best = _refine(loss, best, free, SSD_POLISH_STEPS)
    rel = (_predict(ops_list, eager, base, op_class, _candidate(best)) - measured) / measured
    return {**best, "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel)))}
