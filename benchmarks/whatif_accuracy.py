"""Accuracy on held-out what-if sets: pooled and per configuration, for one or more calibrations.

    python benchmarks/whatif_accuracy.py results/h100-whatif1 [--calibration default FILE ...] [--host-speed run]

Groups each measured point (CUDA-graph decode and prefill, as `perfbench compare` by default) into
what-if layers, what-if models, and the paper's built-in layers/models, and prints median / p90 /
worst |error|, the share of points inside their predicted interval, and one row per configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.registry import BUILTIN_LAYERS, BUILTIN_MODELS  # noqa: E402
from perfbench.report.compare import compare, parse_host_speed  # noqa: E402


def joined_points(results: str, calibration: str, host_speed: float | str = 1.0) -> pd.DataFrame:
    joined = compare(results, calibration=calibration, host_speed=host_speed).joined
    builtin = joined["name"].isin(set(BUILTIN_LAYERS) | set(BUILTIN_MODELS))
    kind = np.where(joined["target_kind"] == "layer", "layers", "models")
    joined = joined.assign(group=np.where(builtin, "paper " + kind, "what-if " + kind), abs_err=joined["err"].abs())
    if {"time_lo_ms_pred", "time_hi_ms_pred"} <= set(joined.columns):
        inside = (joined["time_ms"] >= joined["time_lo_ms_pred"]) & (joined["time_ms"] <= joined["time_hi_ms_pred"])
        joined = joined.assign(inside=inside)
    return joined


def summary(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    agg = {"n": ("abs_err", "size"), "median_pct": ("abs_err", lambda s: 100 * s.median()),
           "p90_pct": ("abs_err", lambda s: 100 * s.quantile(0.9)), "worst_pct": ("abs_err", lambda s: 100 * s.max()),
           "bias_pct": ("err", lambda s: 100 * s.median())}
    if "inside" in frame:
        agg["in_interval_pct"] = ("inside", lambda s: 100 * s.mean())
    return frame.groupby(by, sort=True).agg(**agg).round(1).reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--calibration", nargs="+", default=["default"])
    parser.add_argument("--per-config", action="store_true", help="also one row per configuration x phase")
    parser.add_argument("--host-speed", default="1", help="as `perfbench compare --host-speed`: a factor, or 'run' "
                        "(each run's recorded host probe against the calibration's)")
    args = parser.parse_args()
    host_speed = "run" if args.host_speed == "run" else parse_host_speed(args.host_speed)
    for calibration in args.calibration:
        frame = pd.concat([joined_points(r, calibration, host_speed) for r in args.results], ignore_index=True)
        print(f"\n## calibration: {calibration}, host speed {args.host_speed}")
        print(summary(frame, ["group"]).to_markdown(index=False))
        print()
        print(summary(frame, ["group", "phase"]).to_markdown(index=False))
        if args.per_config:
            print()
            print(summary(frame, ["group", "name", "phase"]).to_markdown(index=False))


if __name__ == "__main__":
    main()
