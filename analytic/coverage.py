"""Where a kernel family's op sits among its calibration samples, by the hyper-parameters its kernel
depends on (`shape["hparams"]`, set by analytic.costs): on a sample ("sample"), inside the sampled
ranges on every axis ("inside"), or outside them on some axis ("outside"). None for ops of classes
without hyper-parameters of their own (GEMMs, elementwise passes) or a calibration without samples
of the family.

The provenance of a prediction (calibrated / interpolated / extrapolated / datasheet) builds on it:
build a `CoverageIndex` once per calibration (it reads every sample's ops), then ask per op.
"""

from __future__ import annotations

from dataclasses import dataclass

from analytic.calibration import Calibration
from analytic.fit import sample_ops
from analytic.ops import ATTN_DECODE, ATTN_PREFILL, CONV1D, SELECTIVE_SCAN, SSD, SSU_MAMBA1, STATE_UPDATE, Op

SAMPLE, INSIDE, OUTSIDE = "sample", "inside", "outside"
# Each family and the hyper-parameters its kernels' time depends on (the keys of shape["hparams"]).
FAMILY_AXES = {
    SELECTIVE_SCAN: ("d_state", "d_inner"),
    SSD: ("headdim", "d_state", "ngroups", "chunk_size"),
    STATE_UPDATE: ("headdim", "d_state", "ngroups"),
    SSU_MAMBA1: ("d_state", "d_inner"),
    CONV1D: ("channels", "d_conv"),
    ATTN_PREFILL: ("head_dim", "gqa_ratio"),
    ATTN_DECODE: ("head_dim", "gqa_ratio"),
}


def op_family(op: Op) -> str:
    """The family whose samples time this op: its shape's kernel family, else its class."""
    return (op.shape or {}).get("family") or op.op_class


def op_point(op: Op) -> tuple | None:
    """The op's hyper-parameters in its family's axis order (None without them)."""
    hparams = (op.shape or {}).get("hparams")
    axes = FAMILY_AXES.get(op_family(op))
    if not hparams or axes is None:
        return None
    return tuple(float(hparams[a]) for a in axes)


@dataclass(frozen=True)
class CoverageIndex:
    """The sampled hyper-parameter points of each family in one calibration: {family: frozenset of points}."""

    points: dict

    @classmethod
    def from_calibration(cls, calibration: Calibration) -> "CoverageIndex":
        points: dict[str, set] = {}
        for items in calibration.samples.values():
            for sample in items:
                if "layer" not in sample:
                    continue
                for op in sample_ops(sample):
                    point = op_point(op)
                    if point is not None:
                        points.setdefault(op_family(op), set()).add(point)
        return cls({family: frozenset(p) for family, p in points.items()})

    def of(self, op: Op) -> str | None:
        """SAMPLE, INSIDE or OUTSIDE for a family op; None where the family has no axes or no samples."""
        point = op_point(op)
        sampled = self.points.get(op_family(op))
        if point is None or not sampled:
            return None
        if point in sampled:
            return SAMPLE
        lows = [min(p[i] for p in sampled) for i in range(len(point))]
        highs = [max(p[i] for p in sampled) for i in range(len(point))]
        return INSIDE if all(lo <= v <= hi for v, lo, hi in zip(point, lows, highs)) else OUTSIDE


def _index(calibration) -> CoverageIndex:
    return calibration if isinstance(calibration, CoverageIndex) else CoverageIndex.from_calibration(calibration)


def _family_coverage(family: str):
    def coverage(op: Op, calibration: Calibration | CoverageIndex) -> str | None:
        if op_family(op) != family:
            raise ValueError(f"{op.name} is a {op_family(op)} op, not {family}")
        return _index(calibration).of(op)
    coverage.__name__ = f"{family}_coverage"
    coverage.__doc__ = (f"Whether a {family} op's {', '.join(FAMILY_AXES[family])} are on a sample of the "
                        "calibration, inside its sampled ranges or outside (a CoverageIndex saves re-reading the samples).")
    return coverage


selective_scan_coverage = _family_coverage(SELECTIVE_SCAN)
ssd_coverage = _family_coverage(SSD)
state_update_coverage = _family_coverage(STATE_UPDATE)
state_update_mamba1_coverage = _family_coverage(SSU_MAMBA1)
conv1d_coverage = _family_coverage(CONV1D)
attention_prefill_coverage = _family_coverage(ATTN_PREFILL)
attention_decode_coverage = _family_coverage(ATTN_DECODE)
FAMILY_COVERAGE = {SELECTIVE_SCAN: selective_scan_coverage, SSD: ssd_coverage, STATE_UPDATE: state_update_coverage,
                   SSU_MAMBA1: state_update_mamba1_coverage, CONV1D: conv1d_coverage,
                   ATTN_PREFILL: attention_prefill_coverage, ATTN_DECODE: attention_decode_coverage}
