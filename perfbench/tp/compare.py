"""Measured tensor-parallel points beside `analytic.predict.predict_tp`.

A TP point is priced per rank (its shard of the weights, its collectives), so it cannot share the
single-GPU comparison's predictor. For every target that was measured with tp > 1, this joins all
of its points (tp = 1 included, as the baseline of the scaling) with the prediction for the same
degree, the predicted all-reduce share of the step, and the measured and predicted speed-up over
tp = 1. Points skipped for memory stay in the table with their reason: capacity is a result too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytic.hardware import GPUS
from analytic.predict import predict_tp
from perfbench.sizes import format_size

POINT = ["gpu", "target_kind", "name", "phase", "batch", "seqlen"]
COLUMNS = ["gpu", "target_kind", "name", "phase", "batch", "seqlen", "tp", "mode", "status", "time_ms",
           "time_ms_pred", "err", "allreduce_ms_pred", "allreduce_share_pred", "speedup", "speedup_pred",
           "memory_per_gpu_bytes_pred", "peak_mem_bytes", "reason"]


def with_tp(frame: pd.DataFrame) -> pd.DataFrame:
    """`tp` as an int column (1 where a results file predates TP or left it empty)."""
    tp = pd.to_numeric(frame["tp"], errors="coerce") if "tp" in frame.columns else pd.Series(1, index=frame.index)
    return frame.assign(tp=tp.fillna(1).astype(int))


def has_tp_points(frame: pd.DataFrame) -> bool:
    return len(frame) > 0 and bool((with_tp(frame)["tp"] > 1).any())


def tp_points(frame: pd.DataFrame, mode: str = "graph") -> pd.DataFrame:
    """The rows of targets measured with tp > 1 (every degree), one per point and degree, latest kept.

    ok and skipped rows count (a skip is a capacity result); decode keeps one timing mode."""
    frame = with_tp(frame)
    frame = frame[frame["status"].isin(["ok", "skipped"])]
    frame = frame[(frame["phase"] != "decode") | (frame["mode"] == mode)]
    sharded = frame.loc[frame["tp"] > 1, ["gpu", "target_kind", "name", "phase"]].drop_duplicates()
    rows = frame.merge(sharded, on=["gpu", "target_kind", "name", "phase"])
    sort = [c for c in ("timestamp", "run_id") if c in rows.columns]
    rows = rows.sort_values(sort) if sort else rows
    # an ok measurement wins over a later skip of the same point (a resumed run re-records nothing)
    rows = rows.assign(_ok=rows["status"] == "ok").sort_values("_ok", kind="stable")
    return rows.drop_duplicates(POINT + ["tp"], keep="last").drop(columns="_ok").reset_index(drop=True)


def tp_comparison(frame: pd.DataFrame, calibration="default", mode: str = "graph",
                  allreduce: dict | None = None) -> pd.DataFrame:
    """Measured vs predicted for every TP point (see the module docstring); empty without tp > 1.

    err = (predicted - measured) / measured; speedup = time at tp=1 / time at this degree, for the
    same point (NaN where tp=1 was not measured or did not fit). `allreduce` overrides the
    calibration's interconnect figures (a fresh `measure_allreduce` result).
    """
    rows = tp_points(frame, mode)
    rows = rows[rows["gpu"].isin(list(GPUS))]
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    predicted = []
    for r in rows.itertuples(index=False):
        graphs = r.phase == "decode" and mode == "graph"
        p = predict_tp(r.name, r.phase, [int(r.batch)], [int(r.seqlen)], gpu=r.gpu, calibration=calibration,
                       tp=int(r.tp), graphs=graphs, allreduce=allreduce).iloc[0]
        predicted.append({"time_ms_pred": p["time_ms"], "allreduce_ms_pred": p["allreduce_ms"],
                          "allreduce_share_pred": p["allreduce_share"], "memory_per_gpu_bytes_pred": p["memory_bytes"]})
    out = pd.concat([rows.reset_index(drop=True), pd.DataFrame(predicted)], axis=1)
    ok = out["status"] == "ok"
    out["time_ms"] = out["time_ms"].where(ok)
    out["err"] = (out["time_ms_pred"] - out["time_ms"]) / out["time_ms"]
    base = out[out["tp"] == 1].set_index(POINT)
    key = pd.MultiIndex.from_frame(out[POINT])
    out["speedup"] = base["time_ms"].reindex(key).to_numpy() / out["time_ms"].to_numpy()
    out["speedup_pred"] = base["time_ms_pred"].reindex(key).to_numpy() / out["time_ms_pred"].to_numpy()
    if "peak_mem_bytes" not in out:
        out["peak_mem_bytes"] = np.nan
    out["reason"] = out["reason"].fillna("") if "reason" in out else ""
    return out[COLUMNS].sort_values(["gpu", "target_kind", "name", "phase", "batch", "seqlen", "tp"]) \
        .reset_index(drop=True)


def display_tp_table(table: pd.DataFrame) -> pd.DataFrame:
    """The TP comparison as people read it: ms, signed %, shares, speed-ups as text."""
    def num(v, fmt):
        return "–" if v is None or not np.isfinite(v) else fmt.format(v)

    rows = []
    for r in table.itertuples(index=False):
        rows.append({
            "target": r.name + (" (model)" if r.target_kind == "model" else ""), "phase": r.phase,
            "gpu": r.gpu, "point": f"B={int(r.batch)} L={format_size(int(r.seqlen))}", "tp": int(r.tp),
            "measured ms": num(r.time_ms, "{:.3f}") if r.status == "ok" else "skipped",
            "predicted ms": num(r.time_ms_pred, "{:.3f}"), "err": num(r.err * 100, "{:+.1f}%"),
            "all-reduce share": num(r.allreduce_share_pred * 100, "{:.1f}%"),
            "speedup": num(r.speedup, "{:.2f}x"), "speedup pred": num(r.speedup_pred, "{:.2f}x"),
            "GiB/GPU pred": num(r.memory_per_gpu_bytes_pred / 2**30, "{:.1f}")})
    return pd.DataFrame(rows, columns=["target", "phase", "gpu", "point", "tp", "measured ms", "predicted ms",
                                       "err", "all-reduce share", "speedup", "speedup pred", "GiB/GPU pred"])


def tp_summary(table: pd.DataFrame) -> str:
    """One line: median and largest |err| over the measured points, per degree."""
    ok = table[np.isfinite(table["err"])]
    if ok.empty:
        return "no measured tensor-parallel point to compare"
    parts = [f"tp={tp}: median |err| {g['err'].abs().median() * 100:.1f}%, max {g['err'].abs().max() * 100:.1f}% "
             f"({len(g)} points)" for tp, g in ok.groupby("tp")]
    return "; ".join(parts)
