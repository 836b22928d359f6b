"""`perfbench trace`: the chosen points under Nsight Systems (default), torch.profiler
(--torch-profiler) or Nsight Compute (--ncu), reduced to a per-point kernel breakdown or to
"predicted vs counted" bytes and FLOPs. See perfbench/traces/capture.py for the files written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from perfbench.commands.selection import (HfConfigOption, LayerOption, ModelOption, ModelsFileOption, NameOption,
                                          SetOption, resolve_selection, selection_arguments)
from perfbench.errors import PerfbenchError
from perfbench.output import print_table
from perfbench.sizes import parse_names, parse_sizes
from perfbench.traces.capture import TraceRequest, trace

def trace_command(
    model: ModelOption = None,
    layer: LayerOption = None,
    models_file: ModelsFileOption = None,
    hf_config: HfConfigOption = None,
    name: NameOption = None,
    sets: SetOption = None,
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
    if ncu and torch_profiler:
        raise PerfbenchError("--ncu and --torch-profiler exclude each other")
    selected = resolve_selection(model, layer, models_file, hf_config, sets, name)
    request = TraceRequest(
        kind=selected[0][0].kind, targets=tuple(target.name for target, _ in selected),
        selection=tuple(selection_arguments(model, layer, models_file, hf_config, sets, name)),
        selectors=tuple(tuple(args) for _, args in selected), resolved=tuple(target for target, _ in selected),
        phases=tuple(parse_names(phase)), batches=tuple(parse_sizes(batch)), seqlens=tuple(parse_sizes(seqlen)),
        tool="ncu" if ncu else "torch_profiler" if torch_profiler else "nsys", out=out, store=store,
        graphs=graphs, run_args=tuple(run_arg or ()), launch_count=launch_count or None, gpu=gpu)
    result = trace(request)
    _report(result, top)


def _report(result, top: int) -> None:
    from rich.console import Console


    console = Console(soft_wrap=True)
    if result.breakdown is not None:
        frame = result.breakdown
        if frame.empty:
            raise PerfbenchError(f"no kernels inside perfbench NVTX ranges in the trace (is the nvtx package "
                                 f"installed where the child ran?); files under {result.directory}")
        for rng, group in frame.groupby("nvtx_range", sort=True):
            print_table(*_kernel_table(rng, group, top), keep=["kernel", "us / step"], fold=["kernel"],
                        right=["per step", "us / step", "share"])
    else:
        frame = result.comparison
        for rng, group in frame.groupby("nvtx_range", sort=True):
            print_table(*_comparison_table(rng, group), keep=["op class"],
                        priority=["bytes ratio", "FLOPs ratio", "> 20 %", "bytes pred", "bytes counted",
                                  "FLOPs pred", "FLOPs counted", "ops", "kernels"], fold=["ops", "kernels"],
                        right=["bytes pred", "bytes counted", "bytes ratio", "FLOPs pred", "FLOPs counted",
                               "FLOPs ratio"])
        for note in frame.loc[frame["mismatch"] & (frame["note"] != ""), "note"]:
            console.print(f"  > 20 %: {note}", highlight=False)
    for missing in sorted(set(result.expected_ranges) - set(frame["nvtx_range"])):
        print(f"warning: no kernels attributed to {missing}", file=sys.stderr)
    console.print(f"trace {result.trace_id} ({result.tool})", highlight=False)
    for key, path in result.files.items():
        console.print(f"  {key}: {path}", highlight=False)


def _kernel_table(rng: str, group, top: int):
    """(rows, title) of one range's kernels, the `top` longest and one row for the rest."""
    import pandas as pd

    source, device = group["source"].iloc[0], group["device"].iloc[0]
    unit = "GPU" if device == "cuda" else "CPU"
    per_step_us = group["gpu_time_ms_per_step"].sum() * 1e3
    title = (f"{rng}: {per_step_us:,.1f} us of {unit} time per step over {int(group['steps'].iloc[0])} "
             f"steps ({source})")
    shown = group.sort_values("share", ascending=False)
    rows = [(row.kernel, row.op_class, f"{row.count_per_step:g}", f"{row.gpu_time_ms_per_step * 1e3:,.1f}",
             f"{row.share:.1%}") for row in shown.head(top).itertuples(index=False)]
    if len(shown) > top:
        rest = shown.iloc[top:]
        rows.append((f"({len(rest)} more)", "", f"{rest['count_per_step'].sum():g}",
                     f"{rest['gpu_time_ms_per_step'].sum() * 1e3:,.1f}", f"{rest['share'].sum():.1%}"))
    return pd.DataFrame(rows, columns=["kernel", "op class", "per step", "us / step", "share"]), title


def _comparison_table(rng: str, group):
    """(rows, title) of one range's predicted vs counted bytes and FLOPs per op class."""
    import pandas as pd

    rows = [(row.op_class, row.ops, row.kernels, f"{row.predicted_bytes:.3g}", f"{row.counted_bytes:.3g}",
             f"{row.bytes_ratio:.2f}", f"{row.predicted_flops:.3g}", f"{row.counted_flops:.3g}",
             f"{row.flops_ratio:.2f}", "yes" if row.mismatch else "") for row in group.itertuples(index=False)]
    columns = ["op class", "ops", "kernels", "bytes pred", "bytes counted", "bytes ratio", "FLOPs pred",
               "FLOPs counted", "FLOPs ratio", "> 20 %"]
    return pd.DataFrame(rows, columns=columns), f"{rng}: predicted vs counted per step (ncu)"
