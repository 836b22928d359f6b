"""`perfbench predict`: the analytic model's time, FLOPs, bytes and bound for layers or models."""

from __future__ import annotations


import pandas as pd
import typer

from analytic.calibration import resolve
from analytic.host_chain import with_host_speed
from analytic.predict import breakdown, describe_calibration, predict
from perfbench.report.compare import parse_host_speed
from perfbench.errors import PerfbenchError
from perfbench.commands.selection import (HfConfigOption, LayerOption, ModelOption, ModelsFileOption, NameOption,
                                          SetOption, resolve_targets)
from perfbench.output import emit
from perfbench.sizes import parse_names, parse_sizes

TABLE_COLUMNS = ["name", "phase", "batch", "seqlen", "gpu", "time_ms", "time_lo_ms", "time_hi_ms", "provenance", "tokens_per_s", "flops", "bytes",
                 "intensity", "bound", "n_kernels", "memory_bytes", "fits"]


def predict_command(
    model: ModelOption = None,
    layer: LayerOption = None,
    phase: str = typer.Option("decode", "--phase", help="prefill | decode (comma-separated for both)"),
    batch: str = typer.Option("1", "--batch", help="batch sizes, e.g. 1,8,64"),
    seqlen: str = typer.Option("4k", "--seqlen", help="prompt length (prefill) or context (decode), e.g. 1k,4k,128k"),
    gpu: str = typer.Option("h100", "--gpu", help="h100 | h200 | a100"),
    calibration: str = typer.Option("default", "--calibration", help="calibration JSON, 'default' (bundled) or 'none' (datasheet)"),
    tp: int = typer.Option(1, "--tp", help="tensor-parallel degree"),
    host_speed: float = typer.Option(1.0, "--host-speed", help="how fast this host runs launch chains relative to "
                                     "the calibration's hosts (2 = half the time; `perfbench env` prints this host's probe)"),
    eager: bool = typer.Option(False, "--eager", help="decode without CUDA graphs (host launch cost)"),
    format: str = typer.Option("table", "--format", help="table | csv | json | markdown"),
    show_breakdown: bool = typer.Option(False, "--breakdown", help="per-operation rows for each point"),
    models_file: ModelsFileOption = None,
    hf_config: HfConfigOption = None,
    name: NameOption = None,
    sets: SetOption = None,
) -> None:
    """Predict prefill / decode time, FLOPs, bytes and bound (decode: --seqlen is the context)."""
    batches, seqlens = parse_sizes(batch), parse_sizes(seqlen)
    if tp < 1:
        raise PerfbenchError(f"--tp must be >= 1, got {tp}")
    phases = parse_names(phase)
    label = describe_calibration(gpu, calibration)
    calibration = with_host_speed(resolve(calibration, gpu), parse_host_speed(host_speed))
    frames = []
    for target in resolve_targets(model, layer, models_file, hf_config, sets, name):
        for ph in phases:
            if ph not in ("prefill", "decode"):
                raise PerfbenchError(f"unknown phase {ph!r} (prefill, decode)")
            if show_breakdown:
                for b in batches:
                    for L in seqlens:
                        rows = breakdown(target, ph, b, L, gpu, calibration, graphs=not eager, tp=tp)
                        frames.append(rows.assign(phase=ph, batch=b, seqlen=L, gpu=gpu, tp=tp))
            else:
                frames.append(predict(target, ph, batches, seqlens, gpu, calibration, tp, not eager))
    frame = pd.concat(frames, ignore_index=True)
    if "target_kind" in frame:
        key = "model" if (frame["target_kind"] == "model").all() else "layer"
        frame.insert(0, key, frame["name"])
    if format == "table":
        speed = f"; host speed x{host_speed:g}" if host_speed != 1.0 else ""
        title = f"perfbench predict on {gpu}: {label}{speed}"
        if show_breakdown:
            emit(frame, "table", title=title, keep=["name", "op"],
                 priority=["time_ms", "share", "group", "phase", "batch", "seqlen", "bound", "op_class", "count",
                           "kernels", "flops", "bytes"])
        else:
            emit(frame[TABLE_COLUMNS], "table", title=title, keep=["name", "phase", "batch", "seqlen"],
                 priority=["time_ms", "tokens_per_s", "bound", "fits", "memory_bytes", "gpu", "flops",
                           "bytes", "intensity", "n_kernels"])
    else:
        emit(frame, format)
