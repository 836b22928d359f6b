"""Where each op's time comes from: a measured sample, between samples, outside them, or the datasheet.

`op_provenance(op, layer_spec, calibration)` answers per (batch, seqlen) point, as an int8 code array
(CODE_LABELS names each code, weakest last; `labels` turns codes into the four public PROVENANCES):

    calibrated     the calibration measured this op's shape (GEMM: its (N, K) at this M; a kernel
                   family: a layer with exactly these hyper-parameters)
    interpolated   inside the measured ranges. Two codes, one label: along a measured shape
                   (INTERPOLATED: a measured (N, K) between measured M; elementwise passes, a roofline
                   fitted over sizes), or between measured shapes (BETWEEN: an (N, K) that measured
                   shapes bracket; a kernel family's hyper-parameters inside the sampled ranges), whose
                   error the held-out sets (all at measured shapes) do not show, so its interval is
                   widened more (analytic/uncertainty.py)
    extrapolated   outside them (GEMM: an (N, K) off the table, scaled from the nearest one by N x K;
                   a kernel family: a hyper-parameter that sets its kernel's shape was never measured)
    datasheet      no calibration: the vendor's peaks

Each rule is a function (op, layer spec or None, Calibration) -> codes, kept in RULES by kernel family
or op class (family first, as `efficiency.by_family` looks ceilings up). GEMMs ask the GEMM model
over (M, N, K) (analytic.gemm_model.gemm_op_provenance: measured shapes bracketing the op in every
dimension); the kernel families ask analytic.coverage (the op's kernel hyper-parameters on a sample,
inside the sampled ranges, or outside), falling back to comparing the layer spec with the sampled
layers' (FAMILY_KEYS) for a family coverage does not index (RoPE) or a calibration whose samples
carry no hyper-parameters. A term that learns its own coverage replaces its entry (`register_rule`).

A point's provenance (`point_provenance`) is the weakest among its ops that hold at least
PROVENANCE_SHARE of its predicted time: an op holding less cannot move the point by more than its
share times its own error, while a tiny extrapolated op would otherwise mark every point of a model.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Callable

import numpy as np

from analytic.calibration import Calibration
from analytic.coverage import FAMILY_COVERAGE, INSIDE, OUTSIDE, SAMPLE, CoverageIndex
from analytic.gemm_model import build_gemm_model, gemm_op_provenance
from analytic.hardware import get_gpu
from analytic.ops import (ADD_NORM, ATTN_DECODE, ATTN_PREFILL, CONV1D, ELEMENTWISE, GEMM, ROPE, SELECTIVE_SCAN,
                          SSD, SSU_MAMBA1, STATE_UPDATE, Op)
from models.registry import BUILTIN_LAYERS

PROVENANCES = ("calibrated", "interpolated", "extrapolated", "datasheet")
CALIBRATED, INTERPOLATED, BETWEEN, EXTRAPOLATED, DATASHEET = range(5)
CODE_LABELS = ("calibrated", "interpolated", "interpolated", "extrapolated", "datasheet")
PROVENANCE_SHARE = 0.05  # ops under this share of a point's time do not set its provenance

# Per kernel family (or class): (hyper-parameters that set the kernel's shape: tile sizes, loop trip
# counts, what each CTA holds; hyper-parameters that only set how many CTAs or channels run). The
# second kind scales a measured kernel's work linearly; the first changes the kernel itself.
# Sources: mamba_ssm selective_scan_fwd_kernel (d_state is the inner loop; d_inner the grid),
# ssd_combined.py (headdim, d_state, ngroups and chunk_size are block shapes), selective_state_update
# (headdim x d_state tile per program), causal_conv1d (width d_conv per thread; channels the grid),
# FlashAttention-2 (head dim picks the kernel; heads / KV heads set GQA's sharing; heads the grid).
FAMILY_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    SELECTIVE_SCAN: (("d_state",), ("d_model", "expand")),
    SSD: (("headdim", "d_state", "ngroups", "chunk_size"), ("d_model", "expand")),
    STATE_UPDATE: (("headdim", "d_state", "ngroups"), ("d_model", "expand")),
    SSU_MAMBA1: (("d_state",), ("d_model", "expand")),
    CONV1D: (("d_conv",), ("d_model", "expand", "d_state", "ngroups")),
    ATTN_PREFILL: (("head_dim", "group"), ("n_heads", "d_model")),
    ATTN_DECODE: (("head_dim", "group"), ("n_heads", "d_model")),
    ROPE: (("head_dim", "rotary"), ("n_heads", "d_model")),
}

Rule = Callable[[Op, object, Calibration], np.ndarray]


def spec_values(spec) -> dict:
    """A layer spec's hyper-parameters as a dict, with the derived ones FAMILY_KEYS names: `group`
    (query heads per KV head) and `rotary` (whether RoPE runs at all)."""
    values = dict(asdict(spec)) if is_dataclass(spec) else dict(spec or {})
    if "n_heads" in values and "n_kv_heads" in values:
        values["group"] = values["n_heads"] / max(values["n_kv_heads"], 1)
    if "rotary_fraction" in values:
        values["rotary"] = values["rotary_fraction"] > 0
    return values


def sampled_specs(calibration: Calibration, family: str) -> list[dict]:
    """The layer hyper-parameters the calibration timed this family at: each sample's `spec`, else the
    built-in layer it names (older samples, and conv1d's, record only the layer's name)."""
    out = []
    for sample in calibration.samples.get(family, []):
        if not isinstance(sample, dict):
            continue
        spec = sample.get("spec") or BUILTIN_LAYERS.get(sample.get("layer", ""))
        if spec is not None:
            out.append(spec_values(spec))
    return out


def kernel_family_provenance(op: Op, layer_spec, calibration: Calibration) -> np.ndarray:
    """A kernel family timed on its own at some layers' hyper-parameters: calibrated at a sampled
    layer's, interpolated (between shapes) where only the CTA-count hyper-parameters differ,
    extrapolated where one that sets the kernel's shape does (or the family was never sampled, or the
    op's layer is unknown)."""
    family = family_of(op)
    keys = FAMILY_KEYS.get(family) or FAMILY_KEYS.get(op.op_class)
    samples = sampled_specs(calibration, family) or sampled_specs(calibration, op.op_class)
    code = EXTRAPOLATED
    if keys and samples and layer_spec is not None:
        shape_keys, scale_keys = keys
        values = spec_values(layer_spec)
        same_shape = [s for s in samples if all(s.get(k) == values.get(k) for k in shape_keys)]
        if any(all(s.get(k) == values.get(k) for k in scale_keys) for s in same_shape):
            code = CALIBRATED
        elif same_shape:
            code = BETWEEN
    return np.full(np.shape(op.flops), code, dtype=np.int8)


def gemm_provenance(op: Op, _layer_spec, calibration: Calibration) -> np.ndarray:
    """The GEMM model over (M, N, K) (analytic.gemm_model): calibrated on a measured (M, N, K),
    interpolated where measured shapes bracket it in every dimension, else extrapolated."""
    gpu = get_gpu(calibration.gpu)
    model = build_gemm_model(calibration.gemm, gpu.sm_count, calibration.gemm_peak_flops,
                             calibration.copy_bandwidth_bytes_s)
    measured_shape = model is not None and (int(op.shape["n"]), int(op.shape["k"])) in model.tables
    return codes_of(gemm_op_provenance(op, model), INTERPOLATED if measured_shape else BETWEEN)


def codes_of(names, interpolated: int = INTERPOLATED) -> np.ndarray:
    """Provenance names (as analytic.gemm_model returns them) as codes; `interpolated` says which."""
    names = np.asarray(names, dtype=object)
    codes = (CALIBRATED, interpolated, EXTRAPOLATED, DATASHEET)
    return np.select([names == p for p in PROVENANCES], codes, EXTRAPOLATED).astype(np.int8)


COVERAGE_CODES = {SAMPLE: CALIBRATED, INSIDE: BETWEEN, OUTSIDE: EXTRAPOLATED}
_COVERAGE_INDEXES: dict = {}  # id(calibration) -> (calibration, its CoverageIndex), a few at a time


def coverage_index(calibration: Calibration) -> CoverageIndex:
    """analytic.coverage's index of a calibration's sampled hyper-parameters, built once per calibration."""
    cached = _COVERAGE_INDEXES.get(id(calibration))
    if cached is None or cached[0] is not calibration:
        if len(_COVERAGE_INDEXES) >= 8:
            _COVERAGE_INDEXES.clear()
        cached = _COVERAGE_INDEXES[id(calibration)] = (calibration, CoverageIndex.from_calibration(calibration))
    return cached[1]


def family_provenance(op: Op, layer_spec, calibration: Calibration) -> np.ndarray:
    """A kernel family by analytic.coverage (its kernel's hyper-parameters on a sample, inside the sampled
    ranges, or outside); kernel_family_provenance where coverage has no answer."""
    where = coverage_index(calibration).of(op) if family_of(op) in FAMILY_COVERAGE else None
    if where is None:
        return kernel_family_provenance(op, layer_spec, calibration)
    return np.full(np.shape(op.flops), COVERAGE_CODES[where], dtype=np.int8)


def fitted_roofline_provenance(op: Op, _layer_spec, _calibration: Calibration) -> np.ndarray:
    """Elementwise passes and the fused add + norm: a roofline (floor + bytes / bandwidth) fitted over a
    range of sizes, so any size is between or along measured ones, never on a sample of its own."""
    return np.full(np.shape(op.flops), INTERPOLATED, dtype=np.int8)


RULES: dict[str, Rule] = {
    GEMM: gemm_provenance,
    ELEMENTWISE: fitted_roofline_provenance,
    ADD_NORM: fitted_roofline_provenance,
    **{family: kernel_family_provenance for family in FAMILY_KEYS},
    **{family: family_provenance for family in FAMILY_COVERAGE},
}


def register_rule(family_or_class: str, rule: Rule) -> None:
    """Let a calibrated term answer for its own ops (e.g. the GEMM model over (M, N, K))."""
    RULES[family_or_class] = rule


def family_of(op: Op) -> str:
    return (op.shape.get("family") if op.shape else None) or op.op_class


def op_provenance(op: Op, layer_spec, calibration: Calibration | None) -> np.ndarray:
    """Provenance codes of one op over the grid (see the module docstring)."""
    if calibration is None:
        return np.full(np.shape(op.flops), DATASHEET, dtype=np.int8)
    rule = RULES.get(family_of(op)) or RULES.get(op.op_class, kernel_family_provenance)
    return np.broadcast_to(rule(op, layer_spec, calibration), np.shape(op.flops)).astype(np.int8)


def layer_specs(kind: str, spec) -> dict:
    """Which layer spec each op group of a prediction belongs to (composition.CountedOp.group): a layer
    target's own; a model's spec per layer kind; none for a model's block, embedding and head ops."""
    if kind == "layer":
        return {spec.kind: spec}
    return {layer.kind: layer for layer in spec.layers}


def point_provenance(codes: list[np.ndarray], seconds: list[np.ndarray]) -> np.ndarray:
    """The weakest provenance among the terms holding at least PROVENANCE_SHARE of each point's time."""
    total = np.maximum(sum(np.asarray(s, dtype=np.float64) for s in seconds), 1e-300)
    out = np.zeros(np.shape(total), dtype=np.int8)
    for code, s in zip(codes, seconds):
        counts = np.asarray(s, dtype=np.float64) / total >= PROVENANCE_SHARE
        out = np.maximum(out, np.where(counts, code, 0)).astype(np.int8)
    return out


def labels(codes) -> np.ndarray:
    return np.asarray(CODE_LABELS, dtype=object)[np.asarray(codes, dtype=np.int64)]
