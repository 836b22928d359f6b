"""A Markdown summary of the traces under a directory, for a closing note or a pull request:

    python -m perfbench.traces.summary traces/gpu

per point, the kernel breakdown's top kernels per step, and the ncu "predicted vs counted" DRAM
bytes and FLOPs per step with the operations off by more than 20 %.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from perfbench.traces.schema import load_breakdowns, load_comparisons


def _fmt(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3g}"


def predicted_vs_counted(comparisons: pd.DataFrame) -> pd.DataFrame:
    """One row per point: the "total" rows, plus the operations flagged beyond 20 %."""
    totals = comparisons[comparisons["op_class"] == "total"].copy()
    flagged = (comparisons[comparisons["mismatch"] & (comparisons["op_class"] != "total")]
               .groupby("nvtx_range")["ops"].agg(lambda ops: ", ".join(ops)))
    totals["off_by_20pct"] = totals["nvtx_range"].map(flagged).fillna("")
    return totals[["name", "phase", "batch", "seqlen", "predicted_bytes", "counted_bytes", "bytes_ratio",
                   "predicted_flops", "counted_flops", "flops_ratio", "off_by_20pct"]].sort_values(
        ["name", "phase"]).reset_index(drop=True)


def markdown(root: Path, top: int = 5) -> str:
    lines = []
    comparisons = load_comparisons(root)
    if not comparisons.empty:
        lines += ["## Predicted vs counted per step (ncu DRAM bytes, FLOPs)", "",
                  "| layer | phase | B | L | bytes pred | bytes counted | ratio | FLOPs pred | FLOPs counted "
                  "| ratio | ops off > 20 % |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in predicted_vs_counted(comparisons).itertuples(index=False):
            lines.append(f"| {r.name} | {r.phase} | {r.batch} | {r.seqlen} | {_fmt(r.predicted_bytes)} | "
                         f"{_fmt(r.counted_bytes)} | {_fmt(r.bytes_ratio)} | {_fmt(r.predicted_flops)} | "
                         f"{_fmt(r.counted_flops)} | {_fmt(r.flops_ratio)} | {r.off_by_20pct} |")
        notes = comparisons.loc[comparisons["mismatch"] & (comparisons["note"] != ""), ["nvtx_range", "note"]]
        lines += [""] + [f"- {r.nvtx_range}: {r.note}" for r in notes.itertuples(index=False)] + [""]
    breakdowns = load_breakdowns(root)
    if not breakdowns.empty:
        lines += ["## Kernels per step (top by time)", ""]
        for (source, rng), group in breakdowns.groupby(["source", "nvtx_range"], sort=True):
            total_us = group["gpu_time_ms_per_step"].sum() * 1e3
            top_rows = group.sort_values("share", ascending=False).head(top)
            kernels = "; ".join(f"{r.kernel} ({r.op_class}) x{r.count_per_step:g} {r.share:.0%}"
                                for r in top_rows.itertuples(index=False))
            lines.append(f"- {rng} [{source}]: {total_us:,.1f} us/step, {int(group['count_per_step'].sum())} "
                         f"kernels/step: {kernels}")
        lines.append("")
    return "\n".join(lines) if lines else f"no traces under {root}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perfbench.traces.summary")
    parser.add_argument("root", type=Path, nargs="?", default=Path("traces"))
    parser.add_argument("--top", type=int, default=5)
    options = parser.parse_args(argv)
    sys.stdout.write(markdown(options.root, options.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
