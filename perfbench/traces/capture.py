"""`perfbench trace`: run the chosen points in a child `perfbench run` under a profiler, then turn
what it wrote into tidy frames beside the results.

Layout of one trace (traces/ is git-ignored; the store copies are small enough to commit):
  <out>/<trace_id>/trace.json                 manifest: command lines, tool versions, files, status
  <out>/<trace_id>/<label>.nsys-rep, .sqlite  Nsight Systems report and its SQLite export
  <out>/<trace_id>/<label>.torch.json         torch.profiler Chrome trace (--torch-profiler)
  <out>/<trace_id>/<range>.ncu-rep, .ncu.csv  Nsight Compute report and raw CSV, per point (--ncu)
  <out>/<trace_id>/results/                   the `perfbench run` results measured under the trace
  <out>/<trace_id>/breakdown.parquet          kernel breakdown (perfbench.traces.schema)
  <out>/<trace_id>/ncu_kernels.parquet, ncu_vs_model.parquet   counters and "predicted vs counted"
  <store>/breakdown-<trace_id>.parquet, ncu_vs_model-<trace_id>.parquet   copies (--store) for
                                              compare and the dashboard (schema.load_breakdowns);
                                              not inside a results directory: load_results reads
                                              every *.parquet under one
Timings measured under a profiler are perturbed: they stay under traces/, never in results/.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from perfbench.errors import PerfbenchError, file_errors, writable_directory
from perfbench.measure.results import load_results
from perfbench.traces import ncu as ncu_mod
from perfbench.traces import nsys as tools
from perfbench.traces.nsys_sqlite import parse_nsys_sqlite
from perfbench.traces.schema import range_name, write_parquet
from perfbench.traces.torch_profiler import parse_torch_trace

TOOLS = ("nsys", "torch_profiler", "ncu")


@dataclass(frozen=True)
class TraceRequest:
    """What to trace: the `run` point selectors, the tool, and where the files go."""

    kind: str  # "layer" | "model"
    targets: tuple[str, ...]
    phases: tuple[str, ...]
    batches: tuple[int, ...]
    seqlens: tuple[int, ...]
    tool: str = "nsys"
    out: Path = Path("traces")
    store: Path | None = None
    graphs: bool | None = None  # None: run's default
    run_args: tuple[str, ...] = ()  # passed through to `perfbench run` verbatim
    launch_count: int | None = ncu_mod.DEFAULT_LAUNCH_COUNT
    gpu: str = "h100"
    # From perfbench.commands.selection.resolve_selection: the `run` arguments selecting all targets
    # (for one child), each target's own (for a child per point) and the resolved Targets (their
    # specs for the ncu comparison). Empty: `--{kind} NAMES` with built-in names.
    selection: tuple[str, ...] = ()
    selectors: tuple[tuple[str, ...], ...] = ()
    resolved: tuple = ()

    def __post_init__(self) -> None:
        if self.kind not in ("layer", "model"):
            raise PerfbenchError(f"kind must be layer or model, got {self.kind!r}")
        if self.tool not in TOOLS:
            raise PerfbenchError(f"unknown trace tool {self.tool!r} ({', '.join(TOOLS)})")
        for phase in self.phases:
            if phase not in ("prefill", "decode"):
                raise PerfbenchError(f"unknown phase {phase!r} (prefill, decode)")

    def points(self) -> list[tuple[str, str, int, int]]:
        return [(t, p, b, s) for t in self.targets for p in self.phases for b in self.batches
                for s in self.seqlens]

    def label(self) -> str:
        text = f"{'-'.join(self.targets)}_{'-'.join(self.phases)}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:80]


@dataclass
class TraceResult:
    trace_id: str
    directory: Path
    tool: str
    files: dict = field(default_factory=dict)
    results_run_id: str = ""
    expected_ranges: list = field(default_factory=list)
    breakdown: pd.DataFrame | None = None
    ncu_kernels: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None


def new_trace_id(now: dt.datetime | None = None) -> str:
    """Like the results' run ids: 20261123T211500Z-ab12."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def run_arguments(request: TraceRequest, results_dir: Path, points=None) -> list[str]:
    """`perfbench run` arguments for `points` (default: all of the request's)."""
    if points is None:
        targets, phases = request.targets, request.phases
        batches, seqlens = request.batches, request.seqlens
        select = list(request.selection) or [f"--{request.kind}", ",".join(targets)]
    else:
        (target, phase, batch, seqlen), = points
        targets, phases, batches, seqlens = (target,), (phase,), (batch,), (seqlen,)
        select = (list(request.selectors[request.targets.index(target)]) if request.selectors
                  else [f"--{request.kind}", target])
    args = [*select, "--phase", ",".join(phases),
            "--batch", ",".join(map(str, batches)), "--seqlen", ",".join(map(str, seqlens)),
            "--out", str(results_dir)]
    if request.graphs is not None:
        args.append("--graphs" if request.graphs else "--eager")
    return args + list(request.run_args)


def read_results(results_dir: Path) -> pd.DataFrame:
    """The child's results (perfbench.measure.results.load_results; empty where it wrote none)."""
    return load_results(results_dir) if Path(results_dir).exists() else pd.DataFrame()


def _results_facts(results_dir: Path) -> tuple[str, list[str]]:
    frame = read_results(results_dir)
    if frame.empty:
        return "", []
    run_ids = sorted(set(frame.get("run_id", pd.Series(dtype=str)).astype(str)))
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    if "nvtx_range" in ok:
        ranges = sorted(set(ok["nvtx_range"].astype(str)) - {""})
    else:
        ranges = [range_name(r.name, r.phase, r.batch, r.seqlen) for r in ok.itertuples()]
    return (run_ids[-1] if run_ids else ""), ranges


def _copy_to_store(frame: pd.DataFrame, store: Path | None, stem: str, trace_id: str, files: dict) -> None:
    if store is not None and frame is not None:
        files[f"store_{stem}"] = str(write_parquet(frame, Path(store) / f"{stem}-{trace_id}.parquet"))


def trace(request: TraceRequest, trace_id: str | None = None) -> TraceResult:
    """Capture, parse and store one trace; see the module docstring for what lands where."""
    if request.tool == "nsys":
        tool = tools.require_tool("nsys", tools.NSYS_MISSING)
    elif request.tool == "ncu":
        tool = tools.require_tool("ncu", tools.NCU_MISSING)
    else:
        tool = ""
    trace_id = trace_id or new_trace_id()
    directory = writable_directory(Path(request.out) / trace_id)
    result = TraceResult(trace_id, directory, request.tool)
    manifest = {"trace_id": trace_id, "tool": request.tool, "request": _jsonable(asdict(request)),
                "command": shlex.join(sys.argv), "started": _now(), "status": "running",
                "tool_version": tools.tool_version(tool) if tool else _torch_version(), "steps": []}
    _write_manifest(directory, manifest)
    try:
        if request.tool == "nsys":
            _trace_nsys(request, tool, result, manifest)
        elif request.tool == "torch_profiler":
            _trace_torch(request, result, manifest)
        else:
            _trace_ncu(request, tool, result, manifest)
        manifest["status"] = "ok"
    except PerfbenchError as exc:
        manifest.update(status="error", reason=str(exc))
        raise
    finally:
        manifest.update(ended=_now(), files=result.files, results_run_id=result.results_run_id)
        _write_manifest(directory, manifest)
    return result


def _trace_nsys(request: TraceRequest, nsys: str, result: TraceResult, manifest: dict) -> None:
    base = result.directory / request.label()
    results_dir = result.directory / "results"
    child = tools.child_command(run_arguments(request, results_dir))
    log = result.directory / "trace.log"
    commands = [tools.nsys_profile_command(nsys, base, child),
                tools.nsys_export_command(nsys, base.with_suffix(".nsys-rep"), base.with_suffix(".sqlite"))]
    manifest["steps"] += [shlex.join(map(str, c)) for c in commands]
    tools.run_logged(commands[0], log, "nsys profile")
    tools.run_logged(commands[1], log, "nsys export")
    result.files.update(nsys_rep=str(base.with_suffix(".nsys-rep")), sqlite=str(base.with_suffix(".sqlite")),
                        log=str(log))
    result.results_run_id, result.expected_ranges = _results_facts(results_dir)
    result.breakdown = parse_nsys_sqlite(base.with_suffix(".sqlite"), trace_id=result.trace_id,
                                         results_run_id=result.results_run_id)
    _store_breakdown(request, result)


def _trace_torch(request: TraceRequest, result: TraceResult, manifest: dict) -> None:
    trace_json = result.directory / f"{request.label()}.torch.json"
    results_dir = result.directory / "results"
    command = [sys.executable, "-m", "perfbench.traces.child", "--trace", str(trace_json), "--",
               *run_arguments(request, results_dir)]
    manifest["steps"].append(shlex.join(command))
    log = result.directory / "trace.log"
    tools.run_logged(command, log, "perfbench run under torch.profiler")
    result.files.update(torch_trace=str(trace_json), log=str(log))
    result.results_run_id, result.expected_ranges = _results_facts(results_dir)
    result.breakdown = parse_torch_trace(trace_json, trace_id=result.trace_id,
                                         results_run_id=result.results_run_id)
    _store_breakdown(request, result)


def _store_breakdown(request: TraceRequest, result: TraceResult) -> None:
    result.files["breakdown"] = str(write_parquet(result.breakdown, result.directory / "breakdown.parquet"))
    _copy_to_store(result.breakdown, request.store, "breakdown", result.trace_id, result.files)


def _trace_ncu(request: TraceRequest, ncu: str, result: TraceResult, manifest: dict) -> None:
    """One child per point: the NVTX filter is the whole perfbench domain (see ncu.py) and
    --launch-count then applies to that point alone."""
    log = result.directory / "trace.log"
    frames, expected = [], []
    for point in request.points():
        rng = range_name(*point)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", rng)
        base = result.directory / stem
        results_dir = result.directory / "results" / stem
        child = tools.child_command(run_arguments(request, results_dir, [point]))
        profile = ncu_mod.ncu_profile_command(ncu, base, child, launch_count=request.launch_count)
        export = ncu_mod.ncu_export_command(ncu, base.with_suffix(".ncu-rep"))
        manifest["steps"] += [shlex.join(map(str, profile)), shlex.join(map(str, export))]
        tools.run_logged(profile, log, f"ncu profile of {rng}")
        run_id, ranges = _results_facts(results_dir)
        result.results_run_id = result.results_run_id or run_id
        expected += ranges
        if run_id and rng not in ranges:
            continue  # recorded by the harness as not ok (OOM, impossible shape): nothing to count
        if not base.with_suffix(".ncu-rep").is_file():
            raise PerfbenchError(f"ncu profiled no kernel inside the perfbench NVTX ranges of {rng} "
                                 f"(filter {ncu_mod.NVTX_FILTER!r}; log: {log})")
        csv_path = base.with_suffix(".ncu.csv")
        tools.run_logged(export, log, f"ncu export of {rng}", stdout=csv_path)
        result.files[f"ncu_csv:{rng}"] = str(csv_path)
        frames.append(ncu_mod.counted(ncu_mod.parse_ncu_csv(csv_path), rng, result.trace_id))
    result.expected_ranges = expected
    if not frames:
        raise PerfbenchError("ncu: no point ran (see the results under "
                             f"{result.directory / 'results'} and {log})")
    result.ncu_kernels = pd.concat(frames, ignore_index=True)
    result.comparison = ncu_mod.compare_with_model(result.ncu_kernels, gpu=request.gpu,
                                                   breakdown=_resolved_breakdown(request))
    result.files["ncu_kernels"] = str(write_parquet(result.ncu_kernels, result.directory / "ncu_kernels.parquet"))
    result.files["ncu_vs_model"] = str(write_parquet(result.comparison, result.directory / "ncu_vs_model.parquet"))
    _copy_to_store(result.ncu_kernels, request.store, "ncu_kernels", result.trace_id, result.files)
    _copy_to_store(result.comparison, request.store, "ncu_vs_model", result.trace_id, result.files)


def _resolved_breakdown(request: TraceRequest):
    """The analytic breakdown by result name, over the request's resolved specs where it has them
    (an overridden or imported model is no registry name)."""
    by_name = {target.name: target for target in request.resolved}
    return lambda name, *point: ncu_mod.analytic_breakdown(by_name.get(name, name), *point)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _torch_version() -> str:
    try:
        from importlib.metadata import version

        return f"torch {version('torch')}"
    except Exception:  # not installed: the child will say so
        return ""


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_manifest(directory: Path, manifest: dict) -> None:
    with file_errors(directory / "trace.json"):
        (directory / "trace.json").write_text(json.dumps(manifest, indent=1) + "\n")
