"""Tensor-parallel runs: N ranks through torch.distributed, each timing its shard of the real layers.

- `run_tp`: the `perfbench run --tp N` sweep. N processes (torch.multiprocessing, spawn) join one
  process group (NCCL on GPUs, one GPU per rank; gloo on CPU for the reference layers); each builds
  its shard of every target (`perfbench.tp.layers`) from the same specs, and for every point runs
  the same calls in lock-step: a first call, warm-up, repeats agreed across ranks (the largest
  estimate decides), then the timed calls with their collectives inside the timed region; the
  decode step is one CUDA graph holding its all-reduces. A point's time per call is the slowest
  rank's. Rank 0 sends each row to the parent, which appends it to the results store at once, so a
  failure later keeps every finished point. Rows carry tp = N and, in `extra`, the NCCL version,
  the GPU topology (`nvidia-smi topo -m`) and each rank's median.
- `measure_allreduce`: the all-reduce microbenchmark for `perfbench calibrate` (bus bandwidth as
  nccl-tests defines it, algbw x 2(N-1)/N), fitted into {bus_bw_bytes_s, latency_s, n_gpus}.
- `verify_sharded_layers`: sharded layers (and optionally a whole model) against the unsharded
  ones on the same weights, forward and decode; the CPU tests (gloo) and GPU tests (NCCL) use it.

Failure handling: fewer GPUs than N, a process group that does not form within `init_timeout_s`,
a rank that reports an error or dies, or ranks silent for `idle_timeout_s` (hung in a collective)
end the run with one line (PerfbenchError); every worker is terminated, then killed, never left
running. Per-point failures that every rank sees before timing (OOM while allocating, a kernel
that is unavailable, graph capture) are agreed across ranks and recorded as rows, as the
single-GPU harness does.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import queue as queue_module
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from analytic.collectives import fit_allreduce
from models.sharding import check_tp, shard_layer, shard_model
from perfbench.errors import PerfbenchError, require
from perfbench.measure.harness import (DTYPES, Point, SweepOptions, SweepReport, Target, is_oom, kernel_facts, make_points,
                               one_line, point_call, result_row)
from perfbench.measure import nvtx_ranges
from perfbench.measure.results import RunWriter, done_keys
from perfbench.measure.telemetry import GpuTelemetry, env_versions, gpu_key
from perfbench.measure.timing import Timing, capture_graph, choose_repeats, l2_flusher

FINAL_STATUSES = ("ok", "oom", "skipped")
# NVLink multicast (NVLS) off unless set otherwise: on shared multi-GPU hosts a program using it can
# take the GPUs out of service (the lent H200 machines require these); recorded in each row's extra.
NCCL_SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
ALLREDUCE_SIZES = (8 << 10, 64 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20, 16 << 20, 32 << 20,
                   64 << 20, 256 << 20)


@dataclass(frozen=True)
class LaunchOptions:
    """How the ranks are started and watched."""

    tp: int
    backend: str  # "nccl" | "gloo"
    init_timeout_s: float = 180.0  # every rank joins the process group within this
    idle_timeout_s: float = 900.0  # longest silence of the ranks after that (one point's work)
    crash_at: tuple | None = None  # tests only: (rank, point index) at which that rank exits hard


# ----------------------------------------------------------------------------- launching

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_backend(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def check_devices(tp: int, backend: str) -> None:
    """NCCL needs one visible GPU per rank; say so in one line before starting anything."""
    if backend != "nccl":
        return
    torch = require("torch", "--tp with NCCL")
    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        raise PerfbenchError("this PyTorch build has no NCCL backend (use --cpu-reference for gloo)")
    visible = torch.cuda.device_count()
    if visible < tp:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""
        raise PerfbenchError(f"--tp {tp} needs {tp} GPUs, {visible} visible{hint}")


def _signal_name(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class Ranks:
    """N worker processes running `job` and the queue they report on; `close` always reaps them."""

    def __init__(self, job: Callable, payload, options: LaunchOptions):
        import torch.multiprocessing as mp

        self.options = options
        ctx = mp.get_context("spawn")
        self.queue = ctx.Queue()
        port = free_port()
        self.procs = [ctx.Process(target=_entry, args=(rank, options, port, job, payload, self.queue),
                                  daemon=True, name=f"perfbench-tp-rank{rank}")
                      for rank in range(options.tp)]
        for proc in self.procs:
            proc.start()

    def _fail(self, message: str) -> PerfbenchError:
        return PerfbenchError(f"tp={self.options.tp} ({self.options.backend}): {message}")

    def messages(self):
        """Yield (kind, rank, data) until every rank is done; raise PerfbenchError on any failure."""
        opts = self.options
        started = last = time.monotonic()
        ready, done = set(), set()
        while len(done) < opts.tp:
            try:
                kind, rank, data = self.queue.get(timeout=0.2)
            except queue_module.Empty:
                now = time.monotonic()
                dead = [(r, p.exitcode) for r, p in enumerate(self.procs)
                        if p.exitcode is not None and r not in done]
                failed = [(r, code) for r, code in dead if code != 0]
                if failed or (dead and now - last > 5.0):
                    self._drain_errors()
                    r, code = (failed or dead)[0]
                    raise self._fail(f"rank {r} died ({_signal_name(code)})" if code else
                                     f"rank {r} exited without finishing")
                if len(ready) < opts.tp and now - started > opts.init_timeout_s:
                    missing = sorted(set(range(opts.tp)) - ready)
                    raise self._fail(f"rank(s) {missing} did not join the process group within "
                                     f"{opts.init_timeout_s:.0f} s")
                if len(ready) == opts.tp and now - last > opts.idle_timeout_s:
                    raise self._fail(f"no progress for {opts.idle_timeout_s:.0f} s (a rank hung in a collective?)")
                continue
            last = time.monotonic()
            if kind == "error":
                raise self._fail(self._cause(rank, data))
            if kind == "ready":
                ready.add(rank)
            elif kind == "done":
                done.add(rank)
            yield kind, rank, data

    def _cause(self, rank: int, message: str, grace_s: float = 2.0) -> str:
        """A rank's error is often the echo of another rank dying (connection reset, NCCL abort):
        wait a moment for a dead peer and name it first."""
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            dead = [(r, p.exitcode) for r, p in enumerate(self.procs)
                    if r != rank and p.exitcode not in (None, 0, 1)]
            if dead:
                r, code = dead[0]
                return f"rank {r} died ({_signal_name(code)}); rank {rank} then failed: {message}"
            time.sleep(0.05)
        return f"rank {rank}: {message}"

    def _drain_errors(self) -> None:
        """A dying rank may have said why: raise that instead of the bare exit code."""
        while True:
            try:
                kind, rank, data = self.queue.get(timeout=0.5)
            except (queue_module.Empty, EOFError, OSError):
                return
            if kind == "error":
                raise self._fail(self._cause(rank, data, grace_s=0.5))

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + 10.0
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        self.queue.cancel_join_thread()
        self.queue.close()


def _entry(rank: int, options: LaunchOptions, port: int, job: Callable, payload, out_queue) -> None:
    """Worker main: join the process group, run the job, report; errors become one message."""
    def send(kind: str, data=None) -> None:
        out_queue.put((kind, rank, data))

    try:
        import torch
        import torch.distributed as dist

        nccl = options.backend == "nccl"
        for key, value in NCCL_SAFE_ENV.items():  # an explicit setting wins
            os.environ.setdefault(key, value)
        if nccl:
            torch.cuda.set_device(rank)
            device = torch.device("cuda", rank)
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // options.tp))
            device = torch.device("cpu")
        timeout = datetime.timedelta(seconds=max(options.init_timeout_s, options.idle_timeout_s))
        kwargs = {"device_id": device} if nccl else {}
        dist.init_process_group(options.backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=options.tp, timeout=timeout, **kwargs)
        probe = torch.ones(1, device=device)
        dist.all_reduce(probe)  # NCCL creates its communicator lazily: make init failures show here
        if int(probe.item()) != options.tp:
            raise RuntimeError(f"all-reduce probe gave {probe.item()}, expected {options.tp}")
    except Exception as exc:  # noqa: BLE001 - reported as one line
        send("error", f"{options.backend} process group did not form: {one_line(exc)}")
        sys.exit(1)
    send("ready", rank_info(options.backend, device))
    try:
        job(rank, options, device, payload, send)
    except Exception as exc:  # noqa: BLE001 - the parent stops every rank
        send("error", one_line(exc))
        sys.exit(1)
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the work is done; teardown problems do not matter
        pass
    send("done")


def rank_info(backend: str, device) -> dict:
    """What a rank knows about itself: GPU, NCCL version, torch."""
    import torch

    info = {"backend": backend, "torch_version": torch.__version__, "nccl_version": "", "gpu_name": "cpu",
            "nccl_env": {k: os.environ.get(k, "") for k in NCCL_SAFE_ENV}}
    if backend == "nccl":
        try:
            info["nccl_version"] = ".".join(str(v) for v in torch.cuda.nccl.version())
        except Exception:  # noqa: BLE001
            info["nccl_version"] = "unknown"
        info["gpu_name"] = torch.cuda.get_device_name(device)
    return info


def topology(tp: int) -> tuple[str, str]:
    """(`nvidia-smi topo -m` text, 'GPU0-GPU1:NV18' style summary of the links among the first tp GPUs)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "", _nvml_topology(tp)
    try:
        text = subprocess.run([exe, "topo", "-m"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "", _nvml_topology(tp)
    return text, summarize_topology(text, tp)


def summarize_topology(text: str, tp: int) -> str:
    """Links between GPU0..GPU{tp-1} from the `nvidia-smi topo -m` matrix, e.g. 'GPU0-GPU1:NV18'."""
    header, rows = None, {}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        cells = line.split()
        if not cells:
            continue
        if header is None and cells[0] == "GPU0":  # the column header comes first
            header = cells
        elif header is not None and re.fullmatch(r"GPU\d+", cells[0]):
            rows[cells[0]] = dict(zip(header, cells[1:]))
    links = [f"GPU{i}-GPU{j}:{rows[f'GPU{i}'][f'GPU{j}']}" for i in range(tp) for j in range(i + 1, tp)
             if f"GPU{j}" in rows.get(f"GPU{i}", {})]
    return " ".join(links)


def _nvml_topology(tp: int) -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(tp)]
        names = {0: "SYS?", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}
        links = []
        for i in range(tp):
            for j in range(i + 1, tp):
                level = pynvml.nvmlDeviceGetTopologyCommonAncestor(handles[i], handles[j])
                links.append(f"GPU{i}-GPU{j}:{names.get(int(level), str(level))}")
        return " ".join(links)
    except Exception:  # noqa: BLE001 - topology is best effort
        return ""


# ----------------------------------------------------------------------------- lock-step timing

def gather_objects(obj, tp: int) -> list:
    import torch.distributed as dist

    out = [None] * tp
    dist.all_gather_object(out, obj)
    return out


def _failure(outcomes: list) -> tuple[str, str] | None:
    """(status, reason) when any rank failed; OOM beats unavailable beats error."""
    failed = [(rank, o) for rank, o in enumerate(outcomes) if o is not None]
    if not failed:
        return None
    statuses = [o[0] for _, o in failed]
    status = "oom" if "oom" in statuses else ("skipped" if "skipped" in statuses else "error")
    rank, (_, reason) = failed[0]
    return status, f"rank {rank}: {reason}"


def _outcome(exc: BaseException | None):
    if exc is None:
        return None
    from models.torch_layers import KernelUnavailable

    unavailable = isinstance(exc, KernelUnavailable)
    return ("oom" if is_oom(exc) else ("skipped" if unavailable else "error"), one_line(exc))


def capture_graph_tp(fn: Callable, warmup: int = 2):
    """`perfbench.measure.timing.capture_graph` for steps holding NCCL collectives: capture in thread-local
    mode, so the process group's watchdog thread querying its events does not void the capture."""
    return capture_graph(fn, warmup, capture_error_mode="thread_local")


def measure_lockstep(fn: Callable, options, cuda: bool, device, tp: int, range_name: str | None = None,
                     flush: Callable | None = None) -> tuple[Timing, list[float]]:
    """Every rank makes the same calls: first call, `warmup` calls, then repeats chosen from the
    largest estimate of any rank. Returns the per-call maximum over ranks and each rank's median."""
    import torch
    import torch.distributed as dist

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def once() -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    if options.rest_s > 0:  # as perfbench.measure.timing.measure: the power limiter forgets the last point
        sync()
        time.sleep(options.rest_s)
    dist.barrier()
    first_s = once()
    estimates = [once() for _ in range(max(1, options.warmup))]
    estimate = torch.tensor([statistics.median(estimates)], dtype=torch.float64, device=device)
    dist.all_reduce(estimate, op=dist.ReduceOp.MAX)
    repeats = choose_repeats(float(estimate.item()), options)
    dist.barrier()
    times = []
    if cuda:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        sync()
        for i in range(repeats):
            if flush is not None:
                flush()
            with nvtx_ranges.measured_range(range_name, enabled=options.nvtx and range_name is not None):
                starts[i].record()
                fn()
                ends[i].record()
        sync()
        times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    else:
        for _ in range(repeats):
            with nvtx_ranges.measured_range(range_name, enabled=options.nvtx and range_name is not None):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
    per_rank = gather_objects(times, tp)
    slowest = [max(calls) for calls in zip(*per_rank)]
    return Timing(times_ms=tuple(slowest), first_call_ms=first_s * 1e3), [statistics.median(t) for t in per_rank]


# ----------------------------------------------------------------------------- the sweep on one rank

class TPWorkload:
    """One rank's shard of a target (layer or model), one runnable call per point."""

    def __init__(self, target: Target, options: SweepOptions, rank: int, tp: int, device):
        import torch
        import torch.distributed as dist

        from perfbench.tp.layers import build_tp_layer, build_tp_model

        self.target, self.options, self.rank, self.tp, self.device = target, options, rank, tp, device
        self.dtype = getattr(torch, options.dtype)
        torch.manual_seed(options.seed + rank)
        group = dist.group.WORLD
        if target.kind == "layer":
            module = build_tp_layer(target.spec, rank, tp, group, device, self.dtype, options.reference,
                                    options.attn_backend)
        else:
            module = build_tp_model(target.spec, rank, tp, group, device, self.dtype, options.reference,
                                    options.attn_backend)
        self.module = module.eval().requires_grad_(False)

    def _mixers(self):
        return [self.module] if self.target.kind == "layer" else [b.mixer for b in self.module.blocks]

    def kernels(self) -> dict:
        from perfbench.tp.layers import TPMixer

        layers = [m.inner if isinstance(m, TPMixer) else m for m in self._mixers()]
        return kernel_facts(self.target.kind, self.module, layers, self.options.reference)

    def estimate_bytes(self, point: Point) -> int:
        """The single-GPU estimate applied to this rank's shard (plus the gathered logits)."""
        nbytes = DTYPES[self.options.dtype]
        spec = self.target.spec
        if self.target.kind == "layer":
            from models.torch_layers import estimate_layer_bytes

            return estimate_layer_bytes(shard_layer(spec, self.tp), point.phase, point.batch, point.seqlen, nbytes)
        from models.stack import estimate_model_bytes  # models.stack imports torch

        local = shard_model(spec, self.tp)
        gathered = point.batch * spec.vocab_size * nbytes if self.tp > 1 else 0
        return estimate_model_bytes(local, point.phase, point.batch, point.seqlen, nbytes) + gathered

    def prepare(self, point: Point) -> Callable[[], object]:
        """Inputs identical on every rank (same seed); random caches at context `seqlen` for decode."""
        return point_call(self.module, self.target, point, self.options.seed, self.device, self.dtype)

    def close(self) -> None:
        self.module = None


def _release(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _sweep_job(rank: int, launch: LaunchOptions, device, payload, send) -> None:
    """Every rank runs every point in order; rank 0 sends the rows."""
    import torch

    targets, indexed_points, options, context = payload
    tp, cuda = launch.tp, options.device == "cuda"
    telemetry = GpuTelemetry(rank, enabled=cuda and rank == 0)
    ident = {"gpu_name": "cpu", "driver": "", "gpu": "cpu", "total_bytes": None, "l2_bytes": 0}
    if cuda:
        props = torch.cuda.get_device_properties(device)
        name = telemetry.identity()["gpu_name"] or props.name
        ident = {"gpu_name": name, "driver": telemetry.identity()["driver"], "gpu": gpu_key(name),
                 "total_bytes": int(props.total_memory), "l2_bytes": int(getattr(props, "L2_cache_size", 50 << 20))}
    ident["env"] = env_versions() if rank == 0 else {}
    if rank == 0:
        send("device", dict(ident))
    budget = options.memory_budget_bytes
    if budget is None and ident["total_bytes"] is not None:
        budget = int(ident["total_bytes"] * options.memory_fraction)
    flush = l2_flusher(ident["l2_bytes"]) if options.timing.l2_flush and cuda else None
    by_name = {(t.kind, t.name): t for t in targets}
    current, workload, build_failure = None, None, None
    for index, point in indexed_points:
        if launch.crash_at is not None and tuple(launch.crash_at) == (rank, index):
            os._exit(3)  # test hook: a rank dying mid-sweep
        key = (point.target_kind, point.name)
        if key != current:
            if workload is not None:
                workload.close()
            workload, error = None, None
            _release(cuda)
            try:
                workload = TPWorkload(by_name[key], options, rank, tp, device)
            except Exception as exc:  # noqa: BLE001 - recorded in the rows of this target
                error = exc
            build_failure = _failure(gather_objects(_outcome(error), tp))
            current = key
        before = telemetry.snapshot()
        timing, rank_medians, status, reason, peak, extra, kernels = None, [], "ok", "", 0, {}, {}
        if build_failure is not None:
            status, reason = build_failure[0], "target not built: " + build_failure[1]
        else:
            kernels = workload.kernels()
            estimate = workload.estimate_bytes(point)
            extra["estimate_bytes"] = estimate
            if budget is not None and estimate > budget:
                status = "skipped"
                reason = f"does not fit: needs ~{estimate / 2**30:.1f} GiB per GPU, budget {budget / 2**30:.1f} GiB"
            else:
                timing, rank_medians, status, reason, peak, mode, note = _time_point(
                    workload, point, options, cuda, device, tp, flush)
                if mode != point.mode:
                    point = replace(point, mode=mode)
                    extra["graph_capture_error"] = note
                _release(cuda)
                kernels = workload.kernels()
        after = telemetry.snapshot()
        if rank == 0:
            if timing is not None:
                extra["first_call_ms"] = round(timing.first_call_ms, 4)
                extra["rank_median_ms"] = [round(m, 5) for m in rank_medians]
            extra.update({k: v for k, v in kernels.items() if k not in ("attn_backend", "conv_backend")})
            extra.update(context)
            send("row", (index, result_row(point, options, ident, timing, status, reason, peak, before, after,
                                           kernels, extra, tp)))
    if workload is not None:
        workload.close()


def _time_point(workload: TPWorkload, point: Point, options: SweepOptions, cuda: bool, device, tp: int, flush):
    """(timing, rank medians, status, reason, peak, mode, note) of one point, in lock-step.

    If any rank cannot capture the decode step in a CUDA graph, every rank times it eagerly instead
    and the row says so (mode "eager", extra.graph_capture_error), rather than losing the point.
    """
    import torch

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    mode, note = point.mode, ""
    with torch.inference_mode():
        fn, error = None, None
        try:
            fn = workload.prepare(point)
        except Exception as exc:  # noqa: BLE001 - agreed below, recorded as a row
            error = exc
        failure = _failure(gather_objects(_outcome(error), tp))
        if failure is not None:
            return None, [], failure[0], failure[1], _peak(cuda, tp), mode, note
        graph = None
        if mode == "graph":
            try:
                replay, graph = capture_graph_tp(fn)
            except Exception as exc:  # noqa: BLE001 - agreed below
                error = exc
            failure = _failure(gather_objects(_outcome(error), tp))
            if failure is None:
                fn = replay
            else:
                mode, note, graph = "eager", failure[1], None
                torch.cuda.synchronize()
        timing, medians = measure_lockstep(fn, options.timing, cuda, device, tp, point.nvtx_range, flush)
        del graph
    return timing, medians, "ok", "", _peak(cuda, tp), mode, note


def _peak(cuda: bool, tp: int) -> int:
    """Largest peak allocation of any rank."""
    if not cuda:
        gather_objects(0, tp)
        return 0
    import torch

    return int(max(gather_objects(int(torch.cuda.max_memory_allocated()), tp)))


# ----------------------------------------------------------------------------- the sweep (parent)

def done_keys_tp(out: Path, tp: int) -> set[tuple]:
    """POINT_KEY tuples already recorded under `out` at this TP degree with a final status."""
    return done_keys(out, FINAL_STATUSES, tp=tp)


def _parent_gpu_key(backend: str) -> str:
    if backend != "nccl":
        return "cpu"
    name = GpuTelemetry(0).identity()["gpu_name"]
    if not name:
        import torch

        name = torch.cuda.get_device_name(0)
    return gpu_key(name)


def run_tp(targets: list[Target], phases, batches, seqlens, tp: int, options: SweepOptions, out: Path, *,
           resume: bool = False, manifest: dict | None = None,
           on_point: Callable[[Point, dict | None], None] | None = None, backend: str | None = None,
           init_timeout_s: float = 180.0, idle_timeout_s: float = 900.0,
           crash_at: tuple | None = None) -> SweepReport:
    """Measure targets x phases x batches x seqlens on `tp` ranks into the results store at `out`.

    `options` is the single-GPU sweep's (device "cuda" -> NCCL, one GPU per rank; "cpu" with
    reference layers -> gloo). Raises PerfbenchError (one line) when the ranks cannot run; rows
    finished before that stay in `out` and `resume` skips them next time.
    """
    tp = check_tp(tp)
    if tp < 2:
        raise PerfbenchError("run_tp needs --tp >= 2 (tp=1 is the ordinary sweep)")
    backend = backend or default_backend(options.device)
    if backend not in ("nccl", "gloo"):
        raise PerfbenchError(f"unknown backend {backend!r} (nccl, gloo)")
    for target in targets:  # an invalid split is a usage error: say it before starting anything
        (shard_model if target.kind == "model" else shard_layer)(target.spec, tp)
    check_devices(tp, backend)
    points = make_points(targets, phases, batches, seqlens, options)
    gpu = _parent_gpu_key(backend)
    done = done_keys_tp(out, tp) if resume else set()
    todo = [(i, p) for i, p in enumerate(points) if p.key(gpu) not in done]
    topo_text, topo_summary = topology(tp) if backend == "nccl" else ("", "")
    launch = LaunchOptions(tp, backend, init_timeout_s, idle_timeout_s, crash_at)
    base = dict(manifest or {})
    base.setdefault("command", "perfbench.tp.distributed.run_tp")
    writer = RunWriter(out, {**base, "tp": tp, "backend": backend, "topology": topo_text})
    rows, status, ranks = [], "complete", None
    by_index = dict(todo)
    skipped_done = len(points) - len(todo)
    if on_point:
        for point in points:
            if point.key(gpu) in done:
                on_point(point, None)
    try:
        if todo:
            context = {"tp": tp, "backend": backend, "topology": topo_summary}
            ranks = Ranks(_sweep_job, (targets, todo, options, context), launch)
            for kind, rank, data in ranks.messages():
                if kind == "ready" and rank == 0:
                    writer.manifest["nccl_version"] = data["nccl_version"]
                    writer.manifest["nccl_env"] = data["nccl_env"]
                elif kind == "device":
                    writer.manifest.update({"device": options.device, "gpu": data["gpu"],
                                            "gpu_name": data["gpu_name"], "driver": data["driver"],
                                            "env": data["env"]})
                elif kind == "row":
                    index, row = data
                    extra = json.loads(row["extra"])
                    extra["nccl_version"] = writer.manifest.get("nccl_version", "")
                    extra["nccl_nvls_enable"] = writer.manifest.get("nccl_env", {}).get("NCCL_NVLS_ENABLE", "")
                    row = {**row, "extra": json.dumps(extra, sort_keys=True, default=str)}
                    writer.append(row)
                    rows.append(row)
                    if on_point:
                        on_point(by_index[index], row)
    except PerfbenchError as exc:
        status = "failed"
        raise PerfbenchError(f"{exc}; {len(rows)} finished point(s) kept in {writer.parquet_path}") from None
    except BaseException:
        status = "interrupted"
        raise
    finally:
        if ranks is not None:
            ranks.close()
        writer.close(status)
    return SweepReport(writer.run_id, str(writer.parquet_path), rows, skipped_done, status)


# ----------------------------------------------------------------------------- all-reduce microbenchmark

def _allreduce_job(rank: int, launch: LaunchOptions, device, payload, send) -> None:
    import torch
    import torch.distributed as dist

    sizes, graph, target_s, between_sizes = payload
    cuda = launch.backend == "nccl"
    dtype = torch.bfloat16 if cuda else torch.float32
    elem = torch.tensor([], dtype=dtype).element_size()
    for size in sizes:
        buf = torch.zeros(max(1, size // elem), dtype=dtype, device=device)
        nbytes = buf.numel() * elem

        def call():
            dist.all_reduce(buf)

        for _ in range(3):
            call()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            call()
        if cuda:
            torch.cuda.synchronize()
        est = torch.tensor([(time.perf_counter() - start) / 5], dtype=torch.float64, device=device)
        dist.all_reduce(est, op=dist.ReduceOp.MAX)
        reps = int(min(200, max(5, target_s / max(float(est.item()), 1e-7))))
        runner, mode, error, graph_obj = None, "eager", None, None
        if cuda and graph:
            try:
                def many():
                    for _ in range(reps):
                        call()

                runner, graph_obj = capture_graph_tp(many, warmup=1)  # keep the graph alive while timing
                mode = "graph"
            except Exception as exc:  # noqa: BLE001 - agreed below; time eagerly instead
                error = exc
                torch.cuda.synchronize()
            if any(o is not None for o in gather_objects(None if error is None else one_line(error), launch.tp)):
                runner, mode = None, "eager"
        if runner is None:
            def runner():
                for _ in range(reps):
                    call()
        time_s = _slowest_rank_s(runner, reps, cuda, launch.tp)
        algbw = nbytes / time_s
        if rank == 0:
            send("sample", {"bytes": nbytes, "time_s": time_s, "algbw_bytes_s": algbw,
                            "busbw_bytes_s": algbw * 2 * (launch.tp - 1) / launch.tp, "reps": reps, "mode": mode})
        del buf, runner, graph_obj
    if cuda and graph:
        _allreduce_between(rank, launch, device, between_sizes, send)


def _slowest_rank_s(runner: Callable[[], object], reps: int, cuda: bool, tp: int) -> float:
    """Seconds per rep of `runner` (which runs `reps` of something): 5 trials started together after a
    barrier, the median on each rank, the slowest rank's (CUDA events on GPUs, wall clock on CPUs)."""
    import torch
    import torch.distributed as dist

    trials = []
    for _ in range(5):
        dist.barrier()
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            runner()
            end.record()
            torch.cuda.synchronize()
            trials.append(begin.elapsed_time(end) / 1e3 / reps)
        else:
            t0 = time.perf_counter()
            runner()
            trials.append((time.perf_counter() - t0) / reps)
    return max(gather_objects(statistics.median(trials), tp))


def _allreduce_between(rank: int, launch: LaunchOptions, device, sizes, send) -> None:
    """Each all-reduce as a decode step pays it: between weight-streaming GEMVs (64 MB of weights, from
    HBM), in one CUDA graph, against the same graph without the all-reduces. Back to back, every call
    waits out its peer's handshake; between kernels part of it overlaps, so the per-call latency a
    step pays is lower (two H200s: 18.8 us back to back at 8 KB)."""
    import torch
    import torch.distributed as dist

    x = torch.randn(16, 4096, dtype=torch.bfloat16, device=device)
    w = torch.randn(8192, 4096, dtype=torch.bfloat16, device=device) * 0.02
    y = torch.empty(16, 8192, dtype=torch.bfloat16, device=device)
    reps = 50
    for size in sizes:
        buf = torch.zeros(max(1, size // 2), dtype=torch.bfloat16, device=device)
        times = {}
        for with_ar in (False, True):
            def step(with_ar=with_ar):
                for _ in range(reps):
                    torch.matmul(x, w.t(), out=y)
                    if with_ar:
                        dist.all_reduce(buf)
            runner, graph_obj = capture_graph_tp(step, warmup=1)
            times[with_ar] = _slowest_rank_s(runner, reps, True, launch.tp)
            del runner, graph_obj
        if rank == 0:
            send("sample", {"bytes": buf.numel() * 2, "time_s": max(times[True] - times[False], 0.0),
                            "gemv_s": times[False], "reps": reps, "mode": "between"})
        del buf


ALLREDUCE_BETWEEN_SIZES = (8 << 10, 64 << 10, 256 << 10, 512 << 10)  # decode messages: B x d_model x 2 bytes


def measure_allreduce(sizes=ALLREDUCE_SIZES, tp: int | None = None, backend: str = "nccl", log=print,
                      graph: bool = True, target_s: float = 0.02, init_timeout_s: float = 180.0,
                      idle_timeout_s: float = 600.0, between_sizes=ALLREDUCE_BETWEEN_SIZES) -> dict:
    """All-reduce time over message sizes on `tp` ranks (default: every visible GPU, at least 2).

    Each size is timed as CUDA-graph replays of many back-to-back all-reduces, 5 trials, median,
    slowest rank; on GPUs, decode-sized messages are also timed between GEMVs, as a decode step pays
    them (mode "between", `_allreduce_between`). Returns the calibration file's `allreduce` entry:
    {bus_bw_bytes_s, latency_s, n_gpus} fitted by `analytic.collectives.fit_allreduce`, plus samples (bytes,
    time_s, algbw and busbw as nccl-tests defines them), NCCL version and topology.
    """
    if tp is None:
        if backend != "nccl":
            tp = 2
        else:
            import torch

            tp = torch.cuda.device_count()
    tp = check_tp(tp)
    if tp < 2:
        raise PerfbenchError(f"the all-reduce benchmark needs at least 2 GPUs, {tp} visible")
    check_devices(tp, backend)
    launch = LaunchOptions(tp, backend, init_timeout_s, idle_timeout_s)
    samples, info = [], {}
    ranks = Ranks(_allreduce_job, (tuple(int(s) for s in sizes), graph, target_s, tuple(int(s) for s in between_sizes)),
                  launch)
    try:
        for kind, rank, data in ranks.messages():
            if kind == "ready" and rank == 0:
                info = data
            elif kind == "sample":
                samples.append(data)
                if data["mode"] == "between":
                    log(f"all-reduce {data['bytes']:>11,d} B on {tp} ranks: {data['time_s'] * 1e6:9.2f} us between GEMVs")
                else:
                    log(f"all-reduce {data['bytes']:>11,d} B on {tp} ranks: {data['time_s'] * 1e6:9.2f} us  "
                        f"busbw {data['busbw_bytes_s'] / 1e9:7.2f} GB/s ({data['mode']})")
    finally:
        ranks.close()
    fit = fit_allreduce(samples, tp)
    text, summary = topology(tp) if backend == "nccl" else ("", "")
    log(f"all-reduce fit: bus bandwidth {fit['bus_bw_bytes_s'] / 1e9:.1f} GB/s, latency "
        f"{fit['latency_s'] * 1e6:.1f} us ({tp} ranks, {backend} {info.get('nccl_version', '')})")
    return {**fit, "backend": backend, "nccl_version": info.get("nccl_version", ""),
            "nccl_env": info.get("nccl_env", {}), "topology": summary, "topology_matrix": text, "samples": samples}


# ----------------------------------------------------------------------------- sharded = unsharded

def _rel(a, b) -> float:
    a, b = a.double(), b.double()
    denom = b.norm().item()
    return float((a - b).norm().item() / denom) if denom > 0 else float((a - b).norm().item())


def _randomize_params(module, seed: int, scale: float = 0.3) -> None:
    """Same values on every rank: drawn on the CPU from one seed, then copied to the device.

    Matrices get at most 1/sqrt(fan-in), so bf16 activations stay O(1) at real widths."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            std = min(scale, p.shape[-1] ** -0.5) if p.dim() >= 2 else scale
            p.copy_((torch.randn(p.shape, generator=gen, dtype=torch.float64) * std).to(p.dtype))


def _randomize_tensors(tensors, seed: int, scale: float = 0.5) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    for t in tensors:
        if t.is_floating_point():
            t.copy_((torch.randn(t.shape, generator=gen, dtype=torch.float64) * scale).to(t.dtype))


def _verify_job(rank: int, launch: LaunchOptions, device, payload, send) -> None:
    import torch
    import torch.distributed as dist

    from models.torch_layers import weights_module
    from perfbench.tp.layers import (build_tp_layer, build_tp_model, load_sharded_model, shard_layer_cache,
                                     shard_layer_state, tp_weights_module)

    layers, model, reference, dtype_name, batch, seqlen, attn_backend = payload
    tp, dtype = launch.tp, getattr(torch, dtype_name)
    group = dist.group.WORLD
    results = {}

    def gen(seed):
        return torch.Generator().manual_seed(seed)

    def rand(*shape, seed):
        return torch.randn(*shape, generator=gen(seed), dtype=torch.float64).to(device=device, dtype=dtype)

    with torch.no_grad():
        for i, (name, spec) in enumerate(layers.items()):
            if reference:
                from models.reference import build_reference_layer

                full = build_reference_layer(spec, device=device, dtype=dtype)
            else:
                from models.torch_layers import build_layer

                full = build_layer(spec, device=device, dtype=dtype, attn_backend=attn_backend)
            _randomize_params(weights_module(full), seed=100 + i)
            mine = build_tp_layer(spec, rank, tp, group, device, dtype, reference, attn_backend)
            tp_weights_module(mine).load_state_dict(
                shard_layer_state(spec, weights_module(full).state_dict(), rank, tp))
            x = rand(batch, seqlen, spec.d_model, seed=200 + i)
            forward_err = _rel(mine(x), full(x))
            cache = full.allocate_cache(batch, seqlen, dtype)
            _randomize_tensors(cache, seed=300 + i)
            local = mine.allocate_cache(batch, seqlen, dtype)
            for dst, src in zip(local, shard_layer_cache(spec, cache, rank, tp)):
                dst.copy_(src)
            step = rand(batch, 1, spec.d_model, seed=400 + i)
            decode_err = _rel(mine.decode(step, local), full.decode(step, cache))
            state_err = max([_rel(a, b) for a, b in zip(local, shard_layer_cache(spec, cache, rank, tp))
                             if a.is_floating_point()] or [0.0])
            results[name] = {"forward_rel_err": forward_err, "decode_rel_err": decode_err,
                             "cache_rel_err": state_err}
        if model is not None:
            from models.stack import build_model

            full = build_model(model, device=device, dtype=dtype, layers="reference" if reference else "real",
                               attn_backend=attn_backend)
            _randomize_params(full, seed=500)
            mine = build_tp_model(model, rank, tp, group, device, dtype, reference, attn_backend)
            load_sharded_model(mine, full, rank, tp)
            ids = torch.randint(0, model.vocab_size, (batch, seqlen), generator=gen(600)).to(device)
            prefill_err = _rel(mine.prefill(ids), full.prefill(ids))
            caches = full.allocate_cache(batch, seqlen, dtype)
            local = mine.allocate_cache(batch, seqlen, dtype)
            for j, (layer_spec, cache, mine_cache) in enumerate(zip(model.layers, caches, local)):
                _randomize_tensors(cache, seed=700 + j)
                for dst, src in zip(mine_cache, shard_layer_cache(layer_spec, cache, rank, tp)):
                    dst.copy_(src)
            step = torch.randint(0, model.vocab_size, (batch, 1), generator=gen(800)).to(device)
            decode_err = _rel(mine.decode(step, local), full.decode(step, caches))
            results["model:" + model.name] = {"prefill_rel_err": prefill_err, "decode_rel_err": decode_err}
    worst = gather_objects(results, tp)
    if rank == 0:
        merged = {name: {key: max(r[name][key] for r in worst) for key in vals} for name, vals in results.items()}
        send("verify", merged)


def verify_sharded_layers(layers: dict, tp: int = 2, model=None, reference: bool = True,
                          dtype: str = "float64", batch: int = 2, seqlen: int = 6, backend: str | None = None,
                          attn_backend: str | None = None, init_timeout_s: float = 120.0,
                          idle_timeout_s: float = 300.0) -> dict:
    """Relative errors of each sharded layer (and model) against the unsharded one, worst rank.

    {name: {forward_rel_err, decode_rel_err, cache_rel_err}} per layer; for `model`,
    {"model:<name>": {prefill_rel_err, decode_rel_err}}. Reference layers on gloo (CPU, float64
    by default) or the real layers on NCCL (reference=False, one GPU per rank).
    """
    tp = check_tp(tp)
    backend = backend or ("gloo" if reference else "nccl")
    for spec in layers.values():
        shard_layer(spec, tp)
    if model is not None:
        shard_model(model, tp)
    check_devices(tp, backend)
    launch = LaunchOptions(tp, backend, init_timeout_s, idle_timeout_s)
    ranks = Ranks(_verify_job, (dict(layers), model, reference, dtype, batch, seqlen, attn_backend), launch)
    result = {}
    try:
        for kind, _, data in ranks.messages():
            if kind == "verify":
                result = data
    finally:
        ranks.close()
    return result


__all__ = ["ALLREDUCE_SIZES", "LaunchOptions", "Ranks", "TPWorkload", "capture_graph_tp", "check_devices",
           "done_keys_tp", "measure_allreduce", "measure_lockstep", "run_tp", "summarize_topology",
           "topology", "verify_sharded_layers"]
