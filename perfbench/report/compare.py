"""Measured vs predicted: join a results dataset with the analytic model's predictions.

One prediction per measured point, for the GPU that measured it (the results' `gpu` column picks
`analytic.hardware.get_gpu`). Errors are fractions, err = (predicted - measured) / measured, so a
negative bias means the model is optimistic. Only `status == "ok"` rows count. Decode is compared
in one timing mode at a time (CUDA graphs by default): graph and eager steps differ by the launch
path, and the model predicts them apart (`graphs=`).

The two calls into code still being written elsewhere (`_load_results_frame`, `predict_grid`) are
adapters kept small on purpose: only they change when those interfaces do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analytic.calibration import default_calibration, load_calibration
from analytic.host_chain import with_host_speed, with_probed_host
from analytic.hardware import GPUS, get_gpu
from analytic.predict import predict
from models.registry import BUILTIN_LAYERS, BUILTIN_MODELS, PAPER_MODELS
from perfbench.errors import USER_ERRORS, PerfbenchError
from perfbench.measure.host_probe import median_probe
from perfbench.measure.results import load_results, recorded_targets, results_exist, run_manifests
from perfbench.sizes import format_size
from perfbench.tp.compare import has_tp_points, tp_comparison, with_tp

MODES = ("graph", "eager")
CALIBRATED, DATASHEET = "calibrated", "datasheet"
KEYS = ["gpu", "target_kind", "name", "phase", "batch", "seqlen"]
GROUP = ["gpu", "target_kind", "name", "phase"]
METRIC_COLUMNS = ["target_kind", "name", "phase", "gpu", "mode", "prediction", "n",
                  "median_abs_err", "p90_abs_err", "bias", "worst_err", "worst_batch",
                  "worst_seqlen", "worst_point", "host_bound", "interval_coverage"]
PREDICTED_COLUMNS = ["time_ms", "time_lo_ms", "time_hi_ms", "provenance", "flops", "bytes", "bound", "intensity",
                     "n_kernels", "tokens_per_s", "memory_bytes", "calibrated"]
SHARE_PREFIX = "share:"  # analytic.predict.SHARE_PREFIX: a predictor's per-term-class shares, kept as they are

Predictor = Callable[..., pd.DataFrame]


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def bundled_results_dir() -> Path:
    """The H100 dataset that ships with the repository (compare runs on it with no GPU)."""
    return repo_root() / "results" / "h100"


def bundled_tp_results_dir() -> Path:
    """The two-H200 tensor-parallel dataset (TP=1 and TP=2 over NCCL) that ships too."""
    return repo_root() / "results" / "h200-tp"


# --------------------------------------------------------------------------- adapters

def _load_results_frame(path: Path) -> pd.DataFrame:
    """All runs under `path` (`perfbench.measure.results.load_results`)."""
    return load_results(path)


def predict_grid(target: str, phase: str, batch: list[int], seqlen: list[int], gpu: str,
                 calibration, graphs: bool) -> pd.DataFrame:
    """Predictions over the outer product batch x seqlen (contract: `analytic.predict.predict`)."""
    return predict(target, phase, batch, seqlen, gpu=gpu, calibration=calibration, tp=1,
                   graphs=graphs)


def recorded_predictor(results: str | Path) -> Predictor:
    """`predict_grid` that prices a target the registry does not know (an imported, overridden or
    file-defined one) from the spec its run recorded (`perfbench.measure.results.recorded_targets`)."""
    recorded = {name: target for name, target in recorded_targets(results).items()
                if name not in BUILTIN_MODELS and name not in BUILTIN_LAYERS}
    return lambda name, *args: predict_grid(recorded.get(name, name), *args)


def resolve_calibration(gpu: str, calibration: str | Path | None):
    """The calibration object (or None for the datasheet roofline) and its label.

    `calibration` is "default" (the GPU's bundled file if there is one), "none", or a file path.
    """
    if calibration is None or str(calibration).lower() == "none":
        return None, DATASHEET

    if str(calibration) == "default":
        found = default_calibration(gpu)
        return found, (CALIBRATED if found is not None else DATASHEET)
    path = Path(calibration)
    if not path.is_file():
        raise PerfbenchError(f"calibration file not found: {path}")
    return load_calibration(path, gpu), CALIBRATED


def analytic_gpus() -> tuple[str, ...]:
    return tuple(GPUS)


# --------------------------------------------------------------------------- measured points

def load_measured(path: str | Path) -> pd.DataFrame:
    """Every row of a results directory (or results/<set> of a results index); a one-line
    PerfbenchError when there is nothing to read."""
    path = Path(path)
    if not results_exist(path):
        if path.resolve() == bundled_results_dir().resolve():
            raise PerfbenchError(f"no bundled results yet ({path} is missing): pass a RESULTS_DIR "
                                 "or run `perfbench run` on a GPU")
        raise PerfbenchError(f"results directory not found: {path}")
    frame = _read_one(path) if path.is_file() else _load_results_frame(path)
    if frame.empty and frame.attrs.get("skipped"):
        raise PerfbenchError(f"no readable results in {path}: skipped damaged "
                             + ", ".join(frame.attrs["skipped"]))
    if frame.empty:
        what = "no bundled results yet" if path.resolve() == bundled_results_dir().resolve() \
            else "no results"
        raise PerfbenchError(f"{what} in {path}: run `perfbench run` on a GPU first")
    missing = sorted(set(KEYS + ["status", "mode", "time_ms"]) - set(frame.columns))
    if missing:
        raise PerfbenchError(f"{path}: results lack columns {missing}")
    return frame


def _read_one(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise PerfbenchError(f"corrupt results file {path}: {type(exc).__name__}") from None


def select_points(frame: pd.DataFrame, mode: str = "graph", gpu: str | None = None) -> pd.DataFrame:
    """ok rows in one decode timing mode (prefill is always eager); one row per point and TP degree.

    Repeated measurements of a point (several runs) are reduced to the latest one so that a point
    counts once in the metrics.
    """
    if mode not in MODES:
        raise PerfbenchError(f"unknown mode {mode!r} (graph, eager)")
    ok = frame[frame["status"] == "ok"]
    ok = ok[(ok["phase"] != "decode") | (ok["mode"] == mode)]
    if gpu is not None:
        ok = ok[ok["gpu"] == gpu]
    sort = [c for c in ("timestamp", "run_id") if c in ok.columns]
    if sort:
        ok = ok.sort_values(sort)

    ok = with_tp(ok).drop_duplicates(KEYS + ["tp"], keep="last")  # a TP=2 point is another point
    return ok.reset_index(drop=True)


# --------------------------------------------------------------------------- join

@dataclass(frozen=True)
class Joined:
    """Measured points with their predictions, and what could not be predicted (one line each)."""

    points: pd.DataFrame
    notes: tuple[str, ...] = field(default=())

    @property
    def prediction(self) -> str:
        """'calibrated', 'datasheet', or 'mixed' when GPUs differ."""
        labels = set(self.points["prediction"]) if len(self.points) else {DATASHEET}
        return labels.pop() if len(labels) == 1 else "mixed"


def join_predictions(points: pd.DataFrame, calibration: str | Path | None = "default",
                     mode: str = "graph", predictor: Predictor | None = None,
                     resolver=None, known_gpus: tuple[str, ...] | None = None) -> Joined:
    """Predict every measured point; measured columns keep their names, predicted ones get `_pred`.

    Adds `err` = (time_ms_pred - time_ms) / time_ms and `prediction` (calibrated | datasheet).
    Points whose GPU has no analytic spec, or whose target the model cannot price, are dropped with a
    note rather than failing the whole comparison.
    """
    predictor = predictor or predict_grid
    resolver = resolver or resolve_calibration
    known = analytic_gpus() if known_gpus is None else known_gpus
    notes: list[str] = []
    parts: list[pd.DataFrame] = []
    resolved: dict[str, tuple] = {}

    sharded = with_tp(points)["tp"] != 1
    if sharded.any():
        notes.append(f"{int(sharded.sum())} tensor-parallel points (tp > 1) are priced per rank by "
                     "the analytic model, in the tensor-parallel table, not in these metrics")
        points = points[~sharded]
    for (gpu, kind, name, phase), group in points.groupby(GROUP, sort=False):
        if gpu not in known:
            notes.append(f"skipped {len(group)} {name} {phase} points on gpu {gpu!r}: "
                         f"no analytic GPU spec (known: {', '.join(known)})")
            continue
        if gpu not in resolved:
            resolved[gpu] = resolver(gpu, calibration)
        cal, label = resolved[gpu]
        batches = sorted(int(b) for b in group["batch"].unique())
        seqlens = sorted(int(s) for s in group["seqlen"].unique())
        graphs = phase == "decode" and mode == "graph"
        try:
            pred = predictor(name, phase, batches, seqlens, gpu, cal, graphs)
        except (*USER_ERRORS, ValueError, KeyError) as exc:
            notes.append(f"skipped {len(group)} {name} {phase} points: cannot predict ({exc})")
            continue
        pred = pred[["batch", "seqlen"] + [c for c in pred.columns if c in PREDICTED_COLUMNS or c.startswith(SHARE_PREFIX)]]
        pred = pred.rename(columns={c: f"{c}_pred" for c in PREDICTED_COLUMNS})
        pred = pred.astype({"batch": "int64", "seqlen": "int64"})
        merged = group.astype({"batch": "int64", "seqlen": "int64"}).merge(
            pred, on=["batch", "seqlen"], how="left", validate="many_to_one")  # pooled sets repeat points
        merged["prediction"] = label
        parts.append(merged)
    if not parts:
        return Joined(points.iloc[0:0].assign(time_ms_pred=[], err=[], prediction=[]), tuple(notes))
    out = pd.concat(parts, ignore_index=True)
    out["err"] = (out["time_ms_pred"] - out["time_ms"]) / out["time_ms"]
    out["mode"] = np.where(out["phase"] == "decode", mode, "eager")
    return Joined(out, tuple(notes))


# --------------------------------------------------------------------------- metrics

def error_metrics(joined: pd.DataFrame, err: str = "err") -> pd.DataFrame:
    """Per gpu x target x phase: n, median and p90 of |err|, mean signed err (bias), worst point.

    p90 is numpy's linear-interpolated 90th percentile. All errors are fractions (0.05 = 5 %).
    `host_bound` counts the points the model predicts host-bound (their time is the host's launch
    chain, which drifts with the host's load: the usual source of a group's tail).
    """
    rows = []
    valid = joined[np.isfinite(joined[err])] if len(joined) else joined
    for (gpu, kind, name, phase), group in valid.groupby(GROUP, sort=False):
        abs_err = group[err].abs().to_numpy()
        worst = group.iloc[int(np.argmax(abs_err))]
        rows.append({
            "target_kind": kind, "name": name, "phase": phase, "gpu": gpu,
            "mode": group["mode"].iloc[0] if "mode" in group else "",
            "prediction": group["prediction"].iloc[0] if "prediction" in group else "",
            "n": int(len(group)),
            "median_abs_err": float(np.median(abs_err)),
            "p90_abs_err": float(np.percentile(abs_err, 90)),
            "bias": float(group[err].mean()),
            "worst_err": float(worst[err]),
            "worst_batch": int(worst["batch"]),
            "worst_seqlen": int(worst["seqlen"]),
            "worst_point": _point_label(int(worst["batch"]), int(worst["seqlen"])),
            "host_bound": int((group["bound_pred"] == "host").sum()) if "bound_pred" in group else 0,
            "interval_coverage": interval_coverage(group),
        })
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return sort_targets(metrics)


def inside_interval(joined: pd.DataFrame) -> pd.Series:
    """Whether each measured time lies in its predicted [time_lo_ms, time_hi_ms] (analytic/uncertainty.py)."""
    return (joined["time_ms"] >= joined["time_lo_ms_pred"]) & (joined["time_ms"] <= joined["time_hi_ms_pred"])


def interval_coverage(joined: pd.DataFrame) -> float:
    """The fraction of measured points inside their predicted interval (meant to be ~0.8); NaN without one."""
    if "time_lo_ms_pred" not in joined or not len(joined) or joined["time_lo_ms_pred"].isna().all():
        return float("nan")
    return float(inside_interval(joined).mean())


def _point_label(batch: int, seqlen: int) -> str:
    return f"B={batch} L={format_size(seqlen)}"


def sort_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """Layers in registry order, then models in the paper's order; prefill before decode."""
    order = {name: i for i, name in enumerate(list(BUILTIN_LAYERS) + list(PAPER_MODELS))}
    if frame.empty:
        return frame.reset_index(drop=True)
    key = pd.DataFrame({
        "kind": (frame["target_kind"] != "layer").astype(int),
        "name": frame["name"].map(lambda n: order.get(n, len(order))),
        "alpha": frame["name"],
        "phase": (frame["phase"] != "prefill").astype(int),
        "gpu": frame["gpu"],
    }, index=frame.index)
    return frame.loc[key.sort_values(["gpu", "kind", "name", "alpha", "phase"]).index].reset_index(drop=True)


# --------------------------------------------------------------------------- whole comparison

@dataclass(frozen=True)
class Comparison:
    """Everything `perfbench compare` reports: joined points, metrics, and the datasheet baseline.

    When the primary prediction is calibrated, `metrics` also carries `datasheet_median_abs_err`,
    `datasheet_p90_abs_err` and `datasheet_bias` so accuracy can be read side by side.
    """

    joined: pd.DataFrame
    metrics: pd.DataFrame
    prediction: str
    mode: str
    notes: tuple[str, ...] = field(default=())
    tensor_parallel: pd.DataFrame = field(default_factory=pd.DataFrame)  # perfbench.tp.compare's table


def compare(results: str | Path | pd.DataFrame, gpu: str | None = None,
            calibration: str | Path | None = "default", mode: str = "graph",
            predictor: Predictor | None = None, resolver=None,
            known_gpus: tuple[str, ...] | None = None, host_speed: float | str = 1.0) -> Comparison:
    """Load (or take) results, predict each ok point, and summarise the errors. `host_speed`: the
    measuring host's launch speed over the calibration's (`analytic.host_chain.with_host_speed`), or
    "run": from the host probes the runs' manifests recorded."""
    frame = results if isinstance(results, pd.DataFrame) else load_measured(results)
    if host_speed != 1.0:
        resolver = host_speed_resolver(resolver or resolve_calibration, host_speed,
                                       [] if isinstance(results, pd.DataFrame) else run_manifests(results))
    where = "" if isinstance(results, pd.DataFrame) else f" in {results}"
    points = select_points(frame, mode=mode, gpu=gpu)
    if points.empty:
        gpus = sorted(set(frame.get("gpu", pd.Series(dtype=str)).dropna()))
        scope = f"gpu {gpu!r}, " if gpu else ""
        raise PerfbenchError(f"no ok points ({scope}decode mode {mode}){where}"
                             + (f"; GPUs present: {', '.join(gpus)}" if gpus else ""))
    if predictor is None and not isinstance(results, pd.DataFrame):
        predictor = recorded_predictor(results)
    primary = join_predictions(points, calibration, mode, predictor, resolver, known_gpus)
    primary = Joined(primary.points, (*_other_mode_notes(frame, mode, gpu), *primary.notes))
    if primary.points.empty:
        raise PerfbenchError("nothing to compare: " + "; ".join(primary.notes or ("no points",)))
    metrics = error_metrics(primary.points)
    joined = primary.points
    if primary.prediction != DATASHEET:
        base = join_predictions(points, None, mode, predictor, resolver, known_gpus)
        joined = joined.merge(
            base.points[KEYS + ["time_ms_pred", "err"]].rename(
                columns={"time_ms_pred": "datasheet_time_ms_pred", "err": "datasheet_err"}),
            on=KEYS, how="left")
        base_metrics = error_metrics(base.points)[GROUP + ["median_abs_err", "p90_abs_err", "bias"]]
        metrics = metrics.merge(base_metrics.rename(columns={
            "median_abs_err": "datasheet_median_abs_err", "p90_abs_err": "datasheet_p90_abs_err",
            "bias": "datasheet_bias"}), on=GROUP, how="left")
    return Comparison(joined, metrics, primary.prediction, mode, primary.notes,
                      _tensor_parallel(frame, gpu, calibration, mode))


def host_speed_resolver(resolver, host_speed: float | str, manifests: list[dict]):
    """`resolver` whose calibrations are seen from the measuring host: a given factor, or ("run") the
    median of the runs' recorded probes against the probes of the leases that timed each chain
    (`analytic.host_chain.with_probed_host`; 1.0 where either has none)."""
    probes = [m["host"] for m in manifests if isinstance(m.get("host"), dict)]

    def resolve_for_host(gpu: str, calibration):
        cal, label = resolver(gpu, calibration)
        if host_speed == "run":
            return with_probed_host(cal, median_probe(probes)), label
        return with_host_speed(cal, parse_host_speed(host_speed)), label

    return resolve_for_host


def parse_host_speed(value) -> float:
    """A --host-speed factor: a positive number (1.0 = the calibration's hosts)."""
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise PerfbenchError(f"--host-speed takes a positive number or 'run', not {value!r}") from None
    if not factor > 0 or not np.isfinite(factor):
        raise PerfbenchError(f"--host-speed must be a positive number, not {value!r}")
    return factor


def _other_mode_notes(frame: pd.DataFrame, mode: str, gpu: str | None) -> tuple[str, ...]:
    """A line saying how many ok decode points were timed in the other mode and so left out (graph and
    eager steps differ by the launch path; the model prices them apart), and how to see them."""
    decode = frame[(frame["status"] == "ok") & (frame["phase"] == "decode")]
    if gpu is not None:
        decode = decode[decode["gpu"] == gpu]
    other = "eager" if mode == "graph" else "graph"
    left_out = decode[decode["mode"] == other]
    if left_out.empty:
        return ()
    targets = ", ".join(sorted(set(left_out["name"])))
    return (f"{len(left_out)} ok decode points timed {other} ({targets}) are not in this comparison: "
            f"`--mode {other}` compares them",)


def _tensor_parallel(frame: pd.DataFrame, gpu: str | None, calibration, mode: str) -> pd.DataFrame:
    """perfbench.tp.compare's table for the points measured with tp > 1 (empty when there are none)."""
    if gpu is not None:
        frame = frame[frame["gpu"] == gpu]
    if not has_tp_points(frame):
        return pd.DataFrame()
    return tp_comparison(frame, calibration=calibration, mode=mode)


def metrics_records(metrics: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: `layer` or `model` names the target (and `target_kind`, `name` as in the CSV);
    errors stay fractions."""
    records = []
    for row in metrics.to_dict("records"):
        kind = row["target_kind"]
        record = {("model" if kind == "model" else "layer"): row["name"]}
        for key, value in row.items():
            if isinstance(value, (np.integer,)):
                value = int(value)
            elif isinstance(value, (np.floating, float)):
                value = None if not np.isfinite(value) else float(value)
            record[key] = value
        records.append(record)
    return records


def metrics_csv(metrics: pd.DataFrame) -> str:
    """The JSON records' fields as CSV columns: `layer` and `model` both, the one that does not
    apply empty, so `--format csv` and `--format json` carry the same fields."""
    records = metrics_records(metrics)
    columns = ["layer", "model"] + [c for c in metrics.columns]
    return pd.DataFrame(records, columns=columns).to_csv(index=False)


def roofline_ceilings(gpu: str, calibration: str | Path | None = "default") -> list[tuple[str, float, float]]:
    """(label, peak FLOP/s, bandwidth bytes/s): measured (calibration) first if any, then datasheet."""
    spec = get_gpu(gpu)
    out = []
    cal, label = resolve_calibration(gpu, calibration)
    if cal is not None:
        out.append((f"{gpu.upper()} measured ceilings (calibration)", cal.gemm_peak_flops,
                    cal.copy_bandwidth_bytes_s))
    out.append((f"{gpu.upper()} datasheet", spec.peak_bf16_flops, spec.mem_bw_bytes_s))
    return out


def _pct(value, signed: bool = False) -> str:
    if value is None or value != value:
        return "–"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def display_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metrics as people read them: percentages as text, datasheet columns beside calibrated."""
    side = "datasheet_median_abs_err" in metrics.columns
    rows = []
    for r in metrics.to_dict("records"):
        row = {"target": r["name"] + (" (model)" if r["target_kind"] == "model" else ""),
               "phase": r["phase"], "gpu": r["gpu"], "mode": r["mode"], "n": int(r["n"]),
               "median |err|": _pct(r["median_abs_err"]), "p90 |err|": _pct(r["p90_abs_err"]),
               "bias": _pct(r["bias"], True),
               "worst point": f"{r['worst_point']} ({_pct(r['worst_err'], True)})",
               "host-bound": int(r.get("host_bound", 0) or 0),
               "in interval": _pct(r.get("interval_coverage"))}
        if side:
            row["datasheet median"] = _pct(r["datasheet_median_abs_err"])
            row["datasheet p90"] = _pct(r["datasheet_p90_abs_err"])
        rows.append(row)
    columns = ["target", "phase", "gpu", "mode", "n", "median |err|", "p90 |err|", "bias", "worst point", "host-bound",
               "in interval"]
    return pd.DataFrame(rows, columns=columns + (["datasheet median", "datasheet p90"] if side else []))
