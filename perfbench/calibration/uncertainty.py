"""The calibration's `uncertainty` section, from held-out result sets the model was never fitted to.

Every ok point of the sets (one GPU's, prefill, decode with CUDA graphs and decode eager) is predicted
with the calibration being written; r = log(measured / predicted). The point's predicted time is a sum
of terms (analytic/uncertainty.py: its ops by class and phase, the decode graph's step, the host chain),
and its residual is attributed to the term classes by their shares of that time: each class's q10,
q50, q90 are the share-weighted quantiles of r over all points, and n is the sum of the shares (the
points' worth of evidence it rests on).

Why share-weighted quantiles and not a least-squares fit of per-class spreads: a point's error is not
a sum of independent per-class errors (the board's clock and the host's load move all its kernels
together), so the variance decomposition a least-squares fit assumes does not hold, and with shares
that are near 0 or 1 for most classes it is badly conditioned (the held-out points of a layer always
mix its few classes in similar proportions). Share-weighted quantiles reduce to a class's own
residual quantiles where its points are dominated by it (a host-bound point, a GEMM-heavy MLP), and
analytic.uncertainty.point_interval combines them by the same shares, so a point with the mix of the
fitted points gets back their spread. `coverage` checks it on sets left out of the fit.

Per class and phase a row needs at least MIN_WEIGHT points' worth of shares; `all/<phase>` (every
point, unweighted) is the fallback for the rest. One-way: perfbench computes, analytic reads.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from analytic.calibration import POOLED_TERM, Calibration, from_dict, uncertainty_section
from analytic.gemm_model import build_gemm_model
from analytic.hardware import get_gpu
from analytic.predict import SHARE_PREFIX, predict
from perfbench.errors import PerfbenchError
from perfbench.measure.result_sets import find_set
from perfbench.report.compare import CALIBRATED, MODES, inside_interval, join_predictions, load_measured, select_points

QUANTILES = (0.1, 0.5, 0.9)
MIN_WEIGHT = 3.0  # a class needs this many points' worth of shares for its own row


def weighted_quantiles(values, weights, quantiles=QUANTILES) -> list[float]:
    """Quantiles of `values` where each counts `weights` (the midpoint rule: a value's weight is
    centred on it; with equal weights numpy's percentile method "hazen")."""
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    centres = (np.cumsum(weights) - 0.5 * weights) / weights.sum()
    return [float(np.interp(q, centres, values)) for q in quantiles]


def _share_predictor(name, phase, batch, seqlen, gpu, calibration, graphs):
    return predict(name, phase, batch, seqlen, gpu=gpu, calibration=calibration, graphs=graphs, with_shares=True)


def residual_points(sets: list[Path], calibration: Calibration) -> pd.DataFrame:
    """Every ok point of `sets` measured on the calibration's GPU, predicted with it: the joined
    columns (compare.join_predictions), the term shares, `set`, and `residual` = log(measured / predicted).
    Decode is taken in both timing modes (eager decode is its own term class); prefill once."""
    resolver = lambda gpu, _cal: (calibration, CALIBRATED)  # noqa: E731 - the file being written
    parts = []
    for path in sets:
        frame = load_measured(path)
        for mode in MODES:
            points = select_points(frame, mode=mode, gpu=calibration.gpu)
            if mode != MODES[0]:
                points = points[points["phase"] == "decode"]
            if points.empty:
                continue
            joined = join_predictions(points, calibration, mode, _share_predictor, resolver).points
            # A consolidated results file names each point's set in a `set` column; a directory is one set.
            parts.append(joined if "set" in joined.columns else joined.assign(set=Path(path).name))
    if not parts:
        raise PerfbenchError(f"no ok {calibration.gpu} points in {', '.join(str(p) for p in sets)}")
    out = pd.concat(parts, ignore_index=True)
    out = out[np.isfinite(out["time_ms_pred"]) & (out["time_ms"] > 0)].reset_index(drop=True)
    out["residual"] = np.log(out["time_ms"] / out["time_ms_pred"])
    share_columns = [c for c in out.columns if c.startswith(SHARE_PREFIX)]
    out[share_columns] = out[share_columns].fillna(0.0)
    return out


def fit_section(points: pd.DataFrame, sets: list[str], created: str = "", leave_one_out: dict | None = None) -> dict:
    """The `uncertainty` section from residual_points' frame (see the module docstring), with the
    calibration's leave-one-shape-out GEMM quantiles (`leave_one_out`) where given."""
    classes = {}
    for column in sorted(c for c in points.columns if c.startswith(SHARE_PREFIX)):
        weights = points[column].to_numpy()
        if weights.sum() >= MIN_WEIGHT:
            q10, q50, q90 = weighted_quantiles(points["residual"], weights)
            classes[column[len(SHARE_PREFIX):]] = {"q10": q10, "q50": q50, "q90": q90, "n": round(float(weights.sum()), 2)}
    for phase, group in points.groupby("phase"):
        q10, q50, q90 = weighted_quantiles(group["residual"], np.ones(len(group)))
        classes[f"{POOLED_TERM}/{phase}"] = {"q10": q10, "q50": q50, "q90": q90, "n": float(len(group))}
    return uncertainty_section({"classes": classes, "sets": list(sets), "created": created,
                                **({"leave_one_out": leave_one_out} if leave_one_out else {})}, "uncertainty fit")


def leave_one_out(calibration: Calibration) -> dict:
    """How far the GEMM model carries measured times to a shape it never ran: each (N, K) of the
    calibration's grid predicted by the model built from the others (analytic.gemm_model), its samples'
    log(measured / predicted) grouped by the reduced model's provenance there (interpolated: other shapes
    bracket it; extrapolated), as {provenance: {q10, q50, q90, n}}. The calibration's own samples, never
    evaluation points; analytic.uncertainty widens terms between measured shapes and extrapolated ones by it."""
    sm_count = get_gpu(calibration.gpu).sm_count
    errors: dict[str, list] = {}
    for n, k in sorted({(g[1], g[2]) for g in calibration.gemm}):
        rest = tuple(g for g in calibration.gemm if (g[1], g[2]) != (n, k))
        model = build_gemm_model(rest, sm_count, calibration.gemm_peak_flops, calibration.copy_bandwidth_bytes_s)
        if model is None:
            continue
        own = np.array([(g[0], g[3]) for g in calibration.gemm if (g[1], g[2]) == (n, k)])
        residual = np.log(own[:, 1] / model.time_s(own[:, 0], n, k))
        for where, r in zip(model.provenance(own[:, 0], n, k), residual):
            errors.setdefault(str(where), []).append(float(r))
    out = {}
    for where in ("interpolated", "extrapolated"):
        if len(errors.get(where, [])) >= MIN_WEIGHT:
            q10, q50, q90 = weighted_quantiles(errors[where], np.ones(len(errors[where])))
            out[where] = {"q10": q10, "q50": q50, "q90": q90, "n": float(len(errors[where]))}
    return out


def check_held_out(sets: list[Path]) -> None:
    """Refuse a set results/index.toml marks as fitted (perfbench/measure/result_sets.py): the quantiles must
    come from points the model was never fitted or tuned to, or the intervals come out too narrow."""
    for path in sets:
        indexed = find_set(path)
        if indexed is not None and indexed.fitted:
            raise PerfbenchError(f"result set {indexed.name} is marked fitted in {indexed.root / 'index.toml'}: "
                                 "the uncertainty section takes held-out sets only")


def with_uncertainty(data: dict, sets: list[Path], created: str = "") -> dict:
    """A calibration file's dict with its `uncertainty` section fitted on `sets` (replacing any)."""
    check_held_out(sets)
    calibration = from_dict({k: v for k, v in data.items() if k != "uncertainty"}, "calibration")
    section = fit_section(residual_points(sets, calibration), [set_name(p) for p in sets], created,
                          leave_one_out(calibration))
    return {**data, "uncertainty": section}


def set_name(path: Path) -> str:
    """How a set is named in the section: its path under the repository's results/ where it is one."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name == "results" else str(path)


def coverage(sets: list[Path], calibration: Calibration) -> pd.DataFrame:
    """Per set: points, the fraction inside their predicted interval, and the median |error|."""
    points = residual_points(sets, calibration)
    points["inside"] = inside_interval(points)
    return (points.groupby("set", sort=False)
            .agg(n=("inside", "size"), interval_coverage=("inside", "mean"),
                 median_abs_err=("err", lambda e: float(np.median(np.abs(e)))))
            .reset_index())


def split_coverage(fit_sets: list[Path], check_sets: list[Path], calibration: Calibration) -> tuple[dict, float, int]:
    """(section fitted on fit_sets, coverage on check_sets, points checked): the honest test, on sets
    the quantiles never saw."""
    section = fit_section(residual_points(fit_sets, calibration), [set_name(p) for p in fit_sets],
                          leave_one_out=leave_one_out(calibration))
    checked = residual_points(check_sets, replace(calibration, uncertainty=section))
    return section, float(inside_interval(checked).mean()), int(len(checked))
