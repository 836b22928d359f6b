"""`perfbench trace`: the chosen points under Nsight Systems (default), torch.profiler
(--torch-profiler) or Nsight Compute (--ncu), reduced to a per-point kernel breakdown or to
"predicted vs counted" bytes and FLOPs. See perfbench/traces/capture.py for the files written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from perfbench.errors import PerfbenchError
from perfbench.sizes import parse_names, parse_sizes

BREAKDOWN_VIEW = ["nvtx_range", "kernel", "op_class", "count_per_step", "gpu_time_ms_per_step", "share"]
COMPARISON_VIEW = ["nvtx_range", "op_class", "ops", "predicted_bytes", "counted_bytes", "bytes_ratio",
                   "predicted_flops", "counted_flops", "flops_ratio", "mismatch"]


def trace_command(
    model: Optional[str] = typer.Option(None, "--model", help="model names, comma-separated"),
    layer: Optional[str] = typer.Option(None, "--layer", help="layer names: mamba, mamba2, attention, attention-mha, mlp"),
    phase: str = typer.Option("decode", "--phase", help="prefill | decode (comma-separated for both)"),
    batch: str = typer.Option("1", "--batch", help="batch sizes, e.g. 8,64"),
    seqlen: str = typer.Option("4k", "--seqlen", help="prompt length (prefill) or context (decode)"),
    graphs: Optional[bool] = typer.Option(None, "--graphs/--eager", help="decode with or without CUDA graphs (default: run's)"),
    ncu: bool = typer.Option(False, "--ncu", help="Nsight Compute counters vs the analytic model"),
    torch_profiler: bool = typer.Option(False, "--torch-profiler", help="torch.profiler Chrome trace instead of nsys"),
    out: Path = typer.Option(Path("traces"), "--out", help="trace directory (one sub-directory per trace)"),
    store: Optional[Path] = typer.Option(None, "--store",
                                         help="also copy the breakdown / comparison Parquet files here "
                                              "(a dataset for compare and the dashboard)"),
    launch_count: int = typer.Option(200, "--launch-count", help="--ncu: launches profiled per point (0: all)"),
    gpu: str = typer.Option("h100", "--gpu", help="--ncu: the analytic model's GPU for the comparison"),
    run_arg: Optional[List[str]] = typer.Option(None, "--run-arg", help="extra argument for `perfbench run` (repeatable)"),
    top: int = typer.Option(8, "--top", help="kernels shown per point"),
) -> None:
    """Trace points in a child `perfbench run`: kernels per NVTX range, or counters vs the model."""
    from perfbench.traces.capture import TraceRequest, trace

    if bool(model) == bool(layer):
        raise PerfbenchError("give exactly one of --model or --layer")
    if ncu and torch_profiler:
        raise PerfbenchError("--ncu and --torch-profiler exclude each other")
    request = TraceRequest(
        kind="layer" if layer else "model", targets=tuple(parse_names(layer or model)),
        phases=tuple(parse_names(phase)), batches=tuple(parse_sizes(batch)), seqlens=tuple(parse_sizes(seqlen)),
        tool="ncu" if ncu else "torch_profiler" if torch_profiler else "nsys", out=out, store=store,
        graphs=graphs, run_args=tuple(run_arg or ()), launch_count=launch_count or None, gpu=gpu)
    result = trace(request)
    _report(result, top)


def _report(result, top: int) -> None:
    from perfbench.output import emit

    if result.breakdown is not None:
        frame = result.breakdown
        if frame.empty:
            raise PerfbenchError(f"no kernels inside perfbench NVTX ranges in the trace (is the nvtx package "
                                 f"installed where the child ran?); files under {result.directory}")
        shown = frame.sort_values(["nvtx_range", "share"], ascending=[True, False]).groupby("nvtx_range").head(top)
        emit(shown[BREAKDOWN_VIEW], "table", title=f"trace {result.trace_id}: kernels per point "
                                                   f"({frame['source'].iloc[0]}, per step)")
        covered = set(frame["nvtx_range"])
    else:
        frame = result.comparison
        emit(frame[COMPARISON_VIEW], "table", title=f"trace {result.trace_id}: predicted vs counted (ncu, per step)")
        for note in frame.loc[frame["mismatch"], "note"]:
            print(f"  > 20 %: {note}")
        covered = set(frame["nvtx_range"])
    for missing in sorted(set(result.expected_ranges) - covered):
        print(f"warning: no kernels attributed to {missing}", file=sys.stderr)
    for key, path in result.files.items():
        print(f"{key}: {path}")
