"""`perfbench run`: measure real layers or whole models over a sweep, into the results store."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from models.registry import spec_table
from perfbench.commands.selection import (HfConfigOption, LayerOption, ModelOption, ModelsFileOption, NameOption,
                                          SetOption, resolve_targets)
from perfbench.errors import PerfbenchError, require
from perfbench.measure.harness import SweepOptions, make_points, run_sweep
from perfbench.measure.result_sets import INDEX_FILE, resolve_results_path
from perfbench.measure.results import RunWriter, done_keys
from perfbench.measure.timing import TimingOptions
from perfbench.output import print_table
from perfbench.sizes import parse_names, parse_sizes
from perfbench.tp.distributed import run_tp


def run_command(
    layer: LayerOption = None,
    model: ModelOption = None,
    phase: str = typer.Option("prefill,decode", "--phase", help="prefill, decode or both."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,8,64."),
    seqlen: str = typer.Option("4k", "--seqlen", help="Prompt (prefill) or context (decode) lengths, e.g. 1k,4k."),
    graphs: bool = typer.Option(True, "--graphs/--eager", help="Decode timed as CUDA-graph replays or eagerly."),
    out: Path = typer.Option(Path("results"), "--out", help="Results directory (one Parquet file per run)."),
    resume: bool = typer.Option(False, "--resume", help="Skip points already recorded under --out."),
    result_set: Optional[str] = typer.Option(
        None, "--result-set", help="Write into (and --resume against) a set of results/index.toml by name: "
        "new runs land in <root>/<name>/ and are read beside the set's packed rows."),
    repeats: int = typer.Option(5, "--repeats", help="Minimum timed calls per point."),
    max_repeats: int = typer.Option(200, "--max-repeats", help="Maximum timed calls per point."),
    target_ms: float = typer.Option(200.0, "--target-ms", help="Timed work per point; repeats adapt to it."),
    warmup: int = typer.Option(2, "--warmup", help="Warm-up calls after the first (compiling) call."),
    rest_ms: float = typer.Option(300.0, "--rest-ms", help="GPU idle before each point, so it does not inherit "
                                  "the power limiter's state from the point before (0: none; no rest on CPU)."),
    l2_flush: bool = typer.Option(False, "--l2-flush", help="Flush the L2 cache before each timed call."),
    nvtx: bool = typer.Option(True, "--nvtx/--no-nvtx", help="NVTX range around each timed call."),
    attn_backend: Optional[str] = typer.Option(None, "--attn-backend",
                                               help="flash, cudnn, efficient, math or flash_attn "
                                                    "(default: flash_attn if installed, else SDPA flash)."),
    cpu_reference: bool = typer.Option(False, "--cpu-reference",
                                       help="Run the pure-torch reference layers on CPU (float32), for tests."),
    models_file: ModelsFileOption = None,
    hf_config: HfConfigOption = None,
    name: NameOption = None,
    sets: SetOption = None,
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel degree: N ranks, one GPU each over NCCL "
                           "(gloo with --cpu-reference)."),
) -> None:
    """Measure layers or whole models: prefill and decode over batch x seqlen, with telemetry.

    Each point: warm-up, CUDA-event timing (median, p10, p90), CUDA-graph decode by default, peak
    memory, NVML clocks/power/temperature. Points that cannot fit are recorded as skipped; an OOM
    or failure is recorded and the sweep goes on.
    """
    targets = resolve_targets(model, layer, models_file, hf_config, sets, name)
    phases = parse_names(phase)
    batches, seqlens = parse_sizes(batch), parse_sizes(seqlen)
    if repeats < 1 or max_repeats < repeats or warmup < 0 or target_ms <= 0 or not rest_ms >= 0:
        raise PerfbenchError("need 1 <= --repeats <= --max-repeats, --warmup >= 0, --target-ms > 0, --rest-ms >= 0")


    torch = require("torch", "perfbench run")
    from models.torch_layers import ATTN_BACKENDS

    if attn_backend is not None and attn_backend not in ATTN_BACKENDS:
        raise PerfbenchError(f"unknown --attn-backend {attn_backend!r} ({', '.join(ATTN_BACKENDS)})")
    if not cpu_reference and not torch.cuda.is_available():
        raise PerfbenchError("no CUDA GPU here: `perfbench run` measures real kernels on a GPU "
                             "(--cpu-reference runs the pure-torch reference layers on CPU)")
    timing = TimingOptions(warmup=warmup, min_repeats=repeats, max_repeats=max_repeats,
                           target_s=target_ms / 1e3, l2_flush=l2_flush and not cpu_reference, nvtx=nvtx,
                           rest_s=0.0 if cpu_reference else rest_ms / 1e3)
    options = SweepOptions(device="cpu" if cpu_reference else "cuda",
                           dtype="float32" if cpu_reference else "bfloat16", graphs=graphs, timing=timing,
                           attn_backend=attn_backend, reference=cpu_reference)
    points = make_points(targets, phases, batches, seqlens, options)
    if result_set is not None:
        out = resolve_results_path(out if (out / INDEX_FILE).is_file() else None, result_set, out)
    done = done_keys(out) if resume else set()
    manifest = {"command": "perfbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                "sweep": {"targets": [f"{t.kind}:{t.name}" for t in targets],
                          "specs": {t.name: {"kind": t.kind, "spec": spec_table(t.spec)} for t in targets},
                          "phases": phases,
                          "batches": batches, "seqlens": seqlens, "graphs": graphs,
                          "reference": cpu_reference, "attn_backend": attn_backend,
                          "timing": asdict(timing),
                          "resume": resume}}
    if tp != 1:
        from rich.console import Console


        console, started = Console(stderr=True, width=160), time.perf_counter()
        manifest["sweep"]["tp"] = tp
        report = run_tp(targets, phases, batches, seqlens, tp, options, out, resume=resume, manifest=manifest,
                        on_point=lambda point, row: console.print(_point_line(point, row), highlight=False))
        _print_summary(report, time.perf_counter() - started)
        _fail_if_nothing_measured(report)
        return
    writer = RunWriter(out, manifest)
    started = time.perf_counter()
    report = _run_with_progress(targets, points, options, writer, done)
    _print_summary(report, time.perf_counter() - started)
    _fail_if_nothing_measured(report)


def _fail_if_nothing_measured(report) -> None:
    """A sweep that measured points and none of them ok is a failure of the command (exit 2), not a
    result: say how each point ended and the first reason, the rows stay in the store."""
    if not report.rows or any(row["status"] == "ok" for row in report.rows):
        return
    counts = {s: sum(row["status"] == s for row in report.rows) for s in ("error", "oom", "skipped")}
    ended = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    first = report.rows[0]
    raise PerfbenchError(f"no point of the sweep was measured ({ended}); first, {first['nvtx_range']}: "
                         f"{first['reason']} (rows kept in {report.path})")


def _point_line(point, row) -> str:
    if row is None:
        return f"[dim]{point.nvtx_range:<40} already recorded[/dim]"
    if row["status"] == "ok":
        spread = row["p90_ms"] / row["p10_ms"] if row["p10_ms"] > 0 else float("nan")
        return (f"{point.nvtx_range:<40} {point.mode:<5} {row['time_ms']:10.4f} ms  "
                f"p90/p10 {spread:5.3f}  n={row['n_repeats']:<4} peak {row['peak_mem_bytes'] / 2**30:6.2f} GiB")
    return f"{point.nvtx_range:<40} [yellow]{row['status']}[/yellow]: {row['reason']}"


def _run_with_progress(targets, points, options, writer, done):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=160)  # log files: one point per line
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("measuring", total=len(points))

        def on_point(point, row):
            progress.console.print(_point_line(point, row), highlight=False)
            progress.update(task, advance=1, description=point.nvtx_range)

        try:
            return run_sweep(targets, points, options, writer, done=done, on_point=on_point)
        except KeyboardInterrupt:
            console.print(f"interrupted: finished points are in {writer.parquet_path} (--resume continues)")
            raise


def _print_summary(report, wall_s: float) -> None:
    import math
    import statistics

    import pandas as pd


    groups: dict = {}
    for row in report.rows:
        groups.setdefault((row["target_kind"], row["name"], row["phase"], row["mode"]), []).append(row)
    title = (f"run {report.run_id} · {len(report.rows)} points in {wall_s:.1f} s"
             + (f" · {report.skipped_done} already recorded" if report.skipped_done else ""))
    rows = []
    for (kind, name, phase, mode), group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        spreads = [r["p90_ms"] / r["p10_ms"] for r in ok if r["p10_ms"] > 0]
        times = [r["time_ms"] for r in ok if not math.isnan(r["time_ms"])]
        rows.append({"target": name if kind == "layer" else f"{name} (model)", "phase": phase, "mode": mode,
                     **{s: str(sum(r["status"] == s for r in group)) for s in ("ok", "skipped", "oom", "error")},
                     "time_ms min": f"{min(times):.4f}" if times else "–",
                     "time_ms max": f"{max(times):.4f}" if times else "–",
                     "median p90/p10": f"{statistics.median(spreads):.3f}" if spreads else "–"})
    columns = ["target", "phase", "mode", "ok", "skipped", "oom", "error", "time_ms min", "time_ms max",
               "median p90/p10"]
    print_table(pd.DataFrame(rows, columns=columns), title, keep=["target", "phase"], right=columns[3:],
                priority=["mode", "ok", "error", "time_ms min", "time_ms max", "oom", "skipped", "median p90/p10"])
    print(f"results: {report.path}")
