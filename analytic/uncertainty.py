"""Prediction intervals: where the measured time of a point should fall about 80 % of the time.

The calibration's optional `uncertainty` section (written by `perfbench calibrate --uncertainty-from`,
perfbench/calibration/uncertainty.py; validated in analytic.calibration) holds, per term class and phase
("gemm/prefill", "host/decode", ...), the 10th, 50th and 90th percentiles of r = log(measured /
predicted) over never-fitted held-out points. A point is a sum of terms (its ops' seconds, a decode
step's graph overhead, the host chain beyond the GPU); each term's class quantiles, widened by the
term's provenance, are combined by the terms' shares of the predicted time:

    log(lo / predicted) = min(0, sum_c share_c lo_c),   log(hi / predicted) = max(0, sum_c share_c hi_c)

with lo_c = q50 - f (q50 - q10), hi_c = q50 + f (q90 - q50), f from WIDENING by provenance, and for
terms between measured shapes or extrapolated at least the calibration's own leave-one-shape-out
error either side (see WIDENING). The
interval always holds the point prediction (the min/max with 0). Summing quantiles by share (rather
than in quadrature) treats the classes' errors of one point as moving together, which they do when
the board's clock or the host's load moves them all; it is the same rule the quantiles were fitted
under (perfbench/calibration/uncertainty.py), so a point with the mix of the fitted points gets their spread.

A point the model predicts host-bound, and an eager decode step, is one term of its own class
("host/<phase>", "eager/decode"): its time is the Python launch chain's, whose error is the host's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytic.calibration import EAGER_TERM, HOST_TERM, POOLED_TERM, STEP_TERM, Calibration
from analytic.host_chain import host_path, host_spread
from analytic.ops import COLLECTIVE_CLASSES
from analytic.pipeline import StepTime
from analytic.provenance import (BETWEEN, CALIBRATED, DATASHEET, EXTRAPOLATED, INTERPOLATED, layer_specs,
                                 op_provenance, point_provenance)
from models.registry import BUILTIN_MODELS, PAPER_MODELS

# Term classes beyond the op classes (analytic.ops.OP_CLASSES); POOLED: the section's row over every
# point, the fallback for a class it lacks.
STEP, HOST, EAGER, POOLED = STEP_TERM, HOST_TERM, EAGER_TERM, POOLED_TERM
# Widening of a term's spread by provenance. Interpolated along a measured shape: a little (the
# held-out sets, all at measured shapes, already hold interpolation in M and in batch x length).
# Between measured shapes (provenance.BETWEEN) and extrapolated: the model carries measured rates to a
# shape never run, an error no held-out set shows. Its size is the calibration's own: each (N, K) of its
# GEMM grid left out and predicted from the rest (perfbench/calibration/uncertainty.py `leave_one_out`, stored in
# the section as leave_one_out.{interpolated, extrapolated}: q10 / q50 / q90 of log(measured / predicted)
# by the reduced model's provenance). The term's bounds reach at least that far beside its class's
# q50, and an extrapolated term's class spread is doubled too. Without those quantiles: +-LOO_FALLBACK
# (the bundled grids' 80th percentile |error| left out, 0.085 H100 and 0.131 H200, 2026-12-07).
WIDENING = {CALIBRATED: 1.0, INTERPOLATED: 1.1, BETWEEN: 1.1, EXTRAPOLATED: 2.0}
LOO_FALLBACK = 0.11
# A calibration without an uncertainty section (a fresh `perfbench calibrate`): +-10 %, the p90 the what-if targets allow
# target for what-if points, then widened by provenance as above.
FALLBACK = (-0.10, 0.0, 0.10)
# The datasheet roofline (no calibration): the vendor peaks are a floor the kernels rarely reach, so
# measured times run from about the prediction to several times it. The 10th, 50th and 90th
# percentiles of log(measured / datasheet prediction) over the 1,078 points of the sets the bundled
# sections were fitted on (H100 offgrid, holdout-holdout14; H200 holdout-holdout14; 2026-12-07): the
# interval is [prediction, 6.5 x prediction] (its lower end clamped to the prediction).
DATASHEET_QUANTILES = (0.20, 0.40, 1.87)


@dataclass(frozen=True)
class Term:
    """One part of a point's predicted time: its class key ("gemm/prefill"), seconds and provenance
    codes over the grid."""

    key: str
    seconds: np.ndarray
    provenance: np.ndarray


def term_key(term_class: str, phase: str) -> str:
    return f"{term_class}/{phase}"


def class_quantiles(calibration: Calibration | None, key: str) -> tuple[float, float, float]:
    """(q10, q50, q90) of a term class: the section's, else its pooled row of the same phase, else
    FALLBACK; DATASHEET_QUANTILES without a calibration. A host chain's (host, eager) reaches at least
    as far beside q50 as the calibration's own host windows spread about their chains' medians
    (`analytic.host_chain.host_spread`: one timing of a chain on one of the pooled leases), since the
    held-out sets saw few leases' hosts."""
    if calibration is None:
        return DATASHEET_QUANTILES
    classes = (calibration.uncertainty or {}).get("classes", {})
    term, phase = key.rsplit("/", 1)
    entry = classes.get(key) or classes.get(term_key(POOLED, phase))
    q = FALLBACK if entry is None else (entry["q10"], entry["q50"], entry["q90"])
    spread = host_spread(calibration) if term in (HOST, EAGER) else None
    if spread is None:
        return q
    return min(q[0], q[1] + spread[0]), q[1], max(q[2], q[1] + spread[1])


def widened(q: tuple[float, float, float], code: np.ndarray, calibration: Calibration | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """A term's (lo, hi) log bounds for provenance codes: the spread about q50 times WIDENING; between
    measured shapes or extrapolated, also at least the calibration's leave-one-shape-out quantiles
    either side of q50. Datasheet terms take their quantiles as they are."""
    q10, q50, q90 = q
    code = np.asarray(code)
    factor = np.select([code == c for c in WIDENING], list(WIDENING.values()), 1.0)
    lo, hi = q50 - factor * (q50 - q10), q50 + factor * (q90 - q50)
    for level in (BETWEEN, EXTRAPOLATED):
        reach_lo, reach_hi = leave_one_out_reach(calibration, level)
        on = code == level
        lo, hi = np.where(on, np.minimum(lo, q50 + reach_lo), lo), np.where(on, np.maximum(hi, q50 + reach_hi), hi)
    return lo, hi


def leave_one_out_reach(calibration: Calibration | None, level: int) -> tuple[float, float]:
    """(q10, q90) of log(measured / predicted) for GEMM shapes left out of the calibration's grid whose
    reduced-model provenance was `level` (between shapes: "interpolated"; "extrapolated"), else
    +-LOO_FALLBACK."""
    section = (calibration.uncertainty or {}).get("leave_one_out", {}) if calibration is not None else {}
    entry = section.get("extrapolated" if level == EXTRAPOLATED else "interpolated")
    return (entry["q10"], entry["q90"]) if entry else (-LOO_FALLBACK, LOO_FALLBACK)


def term_bounds(term: Term, calibration: Calibration | None) -> tuple[np.ndarray, np.ndarray]:
    """A term's own (lo, hi) log bounds (a --breakdown row's interval)."""
    return widened(class_quantiles(calibration, term.key), term.provenance, calibration)


def point_interval(terms: list[Term], time_s, calibration: Calibration | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo seconds, hi seconds, provenance codes) of points whose predicted time is `time_s`."""
    time_s = np.asarray(time_s, dtype=np.float64)
    total = np.maximum(sum(np.asarray(t.seconds, dtype=np.float64) for t in terms), 1e-300)
    lo_log, hi_log = np.zeros(time_s.shape), np.zeros(time_s.shape)
    for term in terms:
        share = np.asarray(term.seconds, dtype=np.float64) / total
        lo, hi = term_bounds(term, calibration)
        lo_log, hi_log = lo_log + share * lo, hi_log + share * hi
    codes = point_provenance([t.provenance for t in terms], [t.seconds for t in terms])
    return time_s * np.exp(np.minimum(lo_log, 0.0)), time_s * np.exp(np.maximum(hi_log, 0.0)), codes


def point_terms(op_keys: list[str], op_seconds: list[np.ndarray], op_codes: list[np.ndarray], time_s, phase: str,
                graphs: bool, host_bound, host_code: int) -> list[Term]:
    """A point's terms from its GPU ops (class keys, seconds in the step with counts, provenance codes)
    and its predicted time: what the step adds beyond the ops is one `step` term (a decode graph's
    overhead) or `host` term (the launch chain beyond the GPU). Host-bound points and eager decode
    steps are one term of their own class holding the whole time."""
    time_s = np.asarray(time_s, dtype=np.float64)
    whole = np.asarray(host_bound, dtype=bool) | (phase == "decode" and not graphs)
    gpu_s = sum(np.asarray(s, dtype=np.float64) for s in op_seconds)
    terms = [Term(key, np.where(whole, 0.0, s), np.asarray(code)) for key, s, code in zip(op_keys, op_seconds, op_codes)]
    step_s = np.where(whole, 0.0, np.maximum(time_s - gpu_s, 0.0))
    extra = STEP if phase == "decode" and graphs else HOST
    own = EAGER if phase == "decode" and not graphs else HOST
    codes = np.full(time_s.shape, host_code, dtype=np.int8)
    terms.append(Term(term_key(extra, phase), step_s, codes))
    terms.append(Term(term_key(own, phase), np.where(whole, time_s, 0.0), codes))
    return terms


def host_provenance(calibration: Calibration | None, measured: bool) -> int:
    """A host chain (or decode graph) term: calibrated where the calibration timed this Python path,
    interpolated where it is summed from the layers' (or per-kernel) figures; datasheet without one."""
    if calibration is None:
        return DATASHEET
    return CALIBRATED if measured else INTERPOLATED


def record_terms(record: StepTime) -> list[Term]:
    """The terms of analytic.pipeline.step_time's record: each op's seconds in the step, by class and
    phase with its provenance (a tensor-parallel rank's collectives: the pooled class, interpolated,
    as no held-out set prices them alone), then the step's own term (point_terms)."""
    cal, phase = record.calibration, record.phase
    specs = layer_specs(record.target_kind, record.spec)
    keys, seconds, codes = [], [], []
    for o in record.ops:
        collective = o.op_class in COLLECTIVE_CLASSES
        keys.append(term_key(POOLED if collective else o.op_class, phase))
        seconds.append(o.seconds)
        codes.append(np.full(np.shape(o.seconds), INTERPOLATED if cal is not None else DATASHEET, dtype=np.int8)
                     if collective else op_provenance(o.op, specs.get(o.group), cal))
    return point_terms(keys, seconds, codes, record.total_s, phase, record.mode == "graph", record.host_bound,
                       step_provenance(record))


def step_provenance(record: StepTime) -> int:
    """What a decode graph's step or the host chain rests on: calibrated where the calibration timed it
    (the decode-step chains; a layer's host chain, or a model on a paper model's Python path,
    analytic.host_chain), else interpolated (summed from its layers' chains)."""
    cal = record.calibration
    if record.mode == "graph":
        measured = bool(cal and cal.step)
    else:
        measured = record.target_kind == "layer" or any(
            host_path(BUILTIN_MODELS[n]) == host_path(record.spec) for n in PAPER_MODELS)
    return host_provenance(cal, measured)


def record_interval(record: StepTime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo seconds, hi seconds, provenance codes) of every point of the record."""
    return point_interval(record_terms(record), record.total_s, record.calibration)


def step_term(record: StepTime) -> Term:
    """The breakdown's step row as a term: a decode graph's overhead (step/decode), or the host chain
    beyond the GPU (host/<phase>; eager/decode for an eager decode step), as in point_terms."""
    phase = record.phase
    term = STEP if record.mode == "graph" else (EAGER if phase == "decode" else HOST)
    return Term(term_key(term, phase), record.step_s, np.full(np.shape(record.step_s), step_provenance(record)))


def shares(terms: list[Term]) -> dict[str, np.ndarray]:
    """Each term class's share of the points' time (what perfbench/calibration/uncertainty.py attributes by)."""
    total = np.maximum(sum(np.asarray(t.seconds, dtype=np.float64) for t in terms), 1e-300)
    out: dict[str, np.ndarray] = {}
    for term in terms:
        out[term.key] = out.get(term.key, 0.0) + np.asarray(term.seconds, dtype=np.float64) / total
    return out
