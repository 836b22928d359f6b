"""Fit each op class's ceilings (t0, bw, rate) to its kernels' microbenchmarks.

A sample is one kernel family run alone at one size, with the measured time. It names either the
layer ops it stands for (a spec, phase, batch, seqlen and op names: the fit then times exactly the
ops the cost model will time, e.g. the five SSD kernels together), or raw bytes/FLOPs/kernels.
The fit minimises squared relative error of  sum(kernels*t0 + max(bytes/bw, flops/rate))  over a
log-spaced grid, then refines around the best point. Three (four for attention decode) physical
parameters per class, fitted on sizes chosen off the evaluation grid, never on layer sweeps.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from analytic.costs import layer_ops
from analytic.efficiency import (ATTN_DECODE_LATENCIES, EXTRA_PARAMS, ClassCeiling, Ceilings,
                                 attention_decode_latency_counts, attention_decode_plan, attention_decode_stream_s,
                                 attention_prefill_compute_s, host_time, op_time)
from analytic.ops import ATTN_DECODE, ATTN_PREFILL, ELEMENTWISE, GEMM, SELECTIVE_SCAN, Op, gemm
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


def fit_selective_scan(samples: list[dict], base: Ceilings) -> dict:
    """Per-thread-configuration scan rates: each configuration's median of padded FLOPs / time.

    The scan is compute-bound at the 8B sizes (d_state 128), so each sample gives its rate directly.
    """
    params = {"t0_s": base.graph_kernel_s, "bw_bytes_s": base.copy_bw_bytes_s,
              "flops_s": base.classes[SELECTIVE_SCAN].flops_s}
    rates: dict[str, list] = {}
    for sample in samples:
        op = sample_ops(sample)[0]
        chunk = int(np.asarray(op.shape["chunk"]).ravel()[0])
        even = bool(np.asarray(op.shape.get("even", True)).ravel()[0])
        flops = 9.0 * float(np.asarray(op.shape["padded_elements"]).ravel()[0])
        key = str(chunk) if even else "uneven"
        rates.setdefault(key, []).append(flops / max(float(sample["time_s"]) - params["t0_s"], 1e-9))
    for key, values in rates.items():
        params[f"flops_s_{key}"] = float(np.median(values))
    params["flops_s"] = float(np.median([v for vals in rates.values() for v in vals]))
    table = scan_rate_table(samples, params["t0_s"])
    if table:
        params["rate_table"] = table
    cal_classes = dict(base.classes)
    cal_classes[SELECTIVE_SCAN] = _candidate(params)
    ceil = replace(base, classes=cal_classes)
    ops_list = [sample_ops(s) for s in samples]
    measured = np.array([float(s["time_s"]) for s in samples])
    pred = np.array([sum(float(op_time(op, ceil)[0][0]) for op in ops) for ops in ops_list])
    rel = (pred - measured) / measured
    return {**params, "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel)))}


def scan_rate_table(samples: list[dict], t0_s: float) -> dict:
    """{"even"|"uneven": {"seqlen": [...], "tokens": [[...]], "rate": [[...]]}} from the scan samples
    of the 8B spec: the rate on padded elements at each measured (sequence length, total tokens).
    Samples of other specs (another d_state) are left to the per-configuration rates."""
    grouped: dict[str, dict[int, dict[float, list]]] = {}
    for sample in samples:
        if sample.get("spec") not in (None, spec_fields(BUILTIN_LAYERS["mamba"])):
            continue
        op = sample_ops(sample)[0]
        L = int(sample["seqlen"])
        tokens = float(sample["batch"]) * L
        even = bool(np.asarray(op.shape.get("even", True)).ravel()[0])
        flops = 9.0 * float(np.asarray(op.shape["padded_elements"]).ravel()[0])
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
    """
    t0 = base.graph_kernel_s
    ops = [sample_ops(s)[0] for s in samples]
    measured = np.array([float(s["time_s"]) for s in samples])
    best = None
    for per_sm in (1.0, 2.0):
        slots = base.gpu.sm_count * per_sm
        unit = np.array([float(np.asarray(attention_prefill_compute_s(op, slots, 1.0)).ravel()[0]) for op in ops])
        for host in np.arange(0.0, 60e-6, 0.5e-6):
            kernel = measured - host - t0
            if (kernel <= 0).any():
                break
            rate = float(np.median(unit / kernel))
            rel = (host + t0 + unit / rate) / measured - 1
            score = float(np.median(np.abs(rel)))
            if best is None or score < best[0]:
                best = (score, float(np.max(np.abs(rel))), per_sm, host, rate)
    score, worst, per_sm, host, rate = best
    return {"t0_s": t0, "bw_bytes_s": base.copy_bw_bytes_s, "flops_s": rate, "host_s": host,
            "ctas_per_sm": per_sm, "n_samples": len(samples), "fit_median_abs_err": score,
            "fit_max_abs_err": worst}


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
    copy = base.copy_bw_bytes_s
    caps = np.geomspace(0.4 * copy, 1.25 * copy, steps)
    best = None
    for per_sm in (1.0, 2.0):
        slots = sm * per_sm
        design = attention_decode_latency_counts(splits, n_ctas, slots) / measured[:, None]
        for cap_split in caps:
            for cap_nosplit in caps:
                for per_cta_bw in np.geomspace(copy / 400, copy / 10, steps + 10):
                    stream = attention_decode_stream_s(splits, n_ctas, per_cta, cap_split, cap_nosplit, per_cta_bw,
                                                       slots) + other / cap_split
                    coef = np.maximum(np.linalg.lstsq(design, 1.0 - stream / measured, rcond=None)[0], 0.0)
                    rel = (stream + design @ coef * measured) / measured - 1.0
                    score = float(np.mean(rel ** 2))
                    if best is None or score < best[0]:
                        best = (score, rel, per_sm, cap_split, cap_nosplit, per_cta_bw, coef)
    _score, rel, per_sm, cap_split, cap_nosplit, per_cta_bw, coef = best
    return {"bw_bytes_s": float(cap_split), "flops_s": base.classes[ATTN_DECODE].flops_s,
            "bw_nosplit_bytes_s": float(cap_nosplit), "bw_per_cta_bytes_s": float(per_cta_bw),
            "ctas_per_sm": per_sm, **{k: float(v) for k, v in zip(ATTN_DECODE_LATENCIES, coef)},
            "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel)))}


def fit_class(op_class: str, samples: list[dict], base: Ceilings, steps: int = 9) -> dict:
    """Best (t0_s, bw_bytes_s, flops_s[, bw_per_cta_bytes_s, host_s]) for one class, with its fit error."""
    if op_class == SELECTIVE_SCAN:
        return fit_selective_scan(samples, base)
    if op_class == ATTN_PREFILL and all(s.get("mode") == "eager" for s in samples):
        return fit_attention_prefill(samples, base)
    if op_class == ATTN_DECODE and all(s.get("mode", "graph") == "graph" for s in samples):
        return fit_attention_decode(samples, base)
    ops_list = [sample_ops(s) for s in samples]
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
    span = {k: 8.0 for k in centre}
    span["ctas_per_sm"] = 1.0
    if op_class == ATTN_DECODE:  # one query per sequence: memory-bound, the FLOP rate never binds
        span["flops_s"] = 1.0
    if op_class == GEMM:  # the tensor-core ceiling is measured (the best GEMM rate), not fitted
        centre["flops_s"], span["flops_s"] = base.gemm_peak_flops, 1.0
    best, best_err = dict(centre), np.inf
    steps = steps if len(centre) <= 3 else max(5, steps - 2 * (len(centre) - 3))
    for _round in range(4):
        grids = {k: (np.geomspace(centre[k] / span[k], centre[k] * span[k], steps if span[k] > 1.0 else 1)
                     if k != "ctas_per_sm"
                     else np.array([1.0, 2.0] if op_class == ATTN_PREFILL else [1.0, 2.0, 3.0, 4.0])) for k in centre}
        keys = list(grids)
        mesh = np.meshgrid(*[grids[k] for k in keys], indexing="ij")
        for idx in np.ndindex(mesh[0].shape):
            params = {k: float(mesh[i][idx]) for i, k in enumerate(keys)}
            pred = _predict(ops_list, eager, base, op_class, _candidate(params))
            err = float(np.mean(((pred - measured) / measured) ** 2))
            if err < best_err:
                best, best_err = params, err
        centre = best
        span = {k: (v ** 0.5 if k != "ctas_per_sm" else v) for k, v in span.items()}
    rel = (_predict(ops_list, eager, base, op_class, _candidate(best)) - measured) / measured
    return {**best, "n_samples": len(samples), "fit_median_abs_err": float(np.median(np.abs(rel))),
            "fit_max_abs_err": float(np.max(np.abs(rel)))}
