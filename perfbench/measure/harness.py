"""The measurement harness: a sweep is data (targets x phases x batches x seqlens), the loop is here.

For every point: estimate its memory and skip it (recorded, with the reason) if it cannot fit;
otherwise build random inputs (never zeros) and, for decode, caches filled to the context with
random values; capture the decode step in a CUDA graph (default) or call it eagerly; time it
(`perfbench.measure.timing`); read telemetry before and after; append one row to the run's Parquet file
(`perfbench.measure.results`). An out-of-memory error, a missing kernel or any other failure of one point
becomes a row with status "oom", "skipped" or "error" and the sweep goes on; an interrupt stops
the sweep with every finished point on disk, and `resume` skips them next time.

Targets are built once (weights random, each library's initialisation) and reused for all their
points. `workload_factory` is the seam for tests: anything with `kernels()`, `estimate_bytes(point)`,
`prepare(point) -> callable` and `close()` can stand in for the torch workload.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from models.registry import Target  # noqa: F401 - re-exported: the sweep's unit of work
from perfbench.errors import PerfbenchError
from perfbench.measure.autotune import AUTOTUNE_PROMPT_TOKENS, SHAPELESS_AUTOTUNE_KINDS, prime_autotuners
from perfbench.measure.host_probe import host_probe
from perfbench.measure.nvtx_ranges import range_name
from perfbench.measure.results import DEVICE_FAULT, POINT_KEY, RunWriter, point_key, utc_now
from perfbench.measure.telemetry import NO_READING, GpuTelemetry, env_versions, gpu_key
from perfbench.measure.timing import TimingOptions, capture_graph, l2_flusher, measure

PHASES = ("prefill", "decode")
DTYPES = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}


@dataclass(frozen=True)
class Point:
    target_kind: str
    name: str
    phase: str
    batch: int
    seqlen: int
    dtype: str = "bfloat16"
    mode: str = "eager"

    @property
    def nvtx_range(self) -> str:
        return range_name(self.name, self.phase, self.batch, self.seqlen)

    def key(self, gpu: str) -> tuple:
        return point_key({**asdict(self), "gpu": gpu})


@dataclass(frozen=True)
class SweepOptions:
    device: str = "cuda"
    dtype: str = "bfloat16"
    graphs: bool = True  # decode: CUDA-graph replay (eager when False or on CPU)
    timing: TimingOptions = field(default_factory=TimingOptions)
    attn_backend: str | None = None  # None: flash_attn if importable, else SDPA flash; math on CPU
    reference: bool = False  # pure-torch reference layers (models.reference) instead of real ones
    memory_fraction: float = 0.95  # share of the GPU's memory a point's estimate may use
    memory_budget_bytes: int | None = None  # overrides memory_fraction (and applies on CPU too)
    seed: int = 0


def make_points(targets: Iterable[Target], phases, batches, seqlens, options: SweepOptions) -> list[Point]:
    """The outer product, in target, phase, batch, seqlen order."""
    points = []
    for phase in phases:
        if phase not in PHASES:
            raise PerfbenchError(f"unknown phase {phase!r} (prefill, decode)")
    decode_mode = "graph" if options.graphs and options.device == "cuda" else "eager"
    for target in targets:
        for phase in phases:
            for batch in batches:
                for seqlen in seqlens:
                    mode = decode_mode if phase == "decode" else "eager"
                    points.append(Point(target.kind, target.name, phase, int(batch), int(seqlen),
                                        options.dtype, mode))
    return points


# ----------------------------------------------------------------------------- torch workload

def _torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise PerfbenchError(f"unknown dtype {name!r} ({', '.join(DTYPES)})")
    return getattr(torch, name)


def kernel_facts(target_kind: str, module, layers, reference: bool) -> dict:
    """attn_backend / conv_backend columns and kernel facts for `extra`, from a target's mixer
    layers (one entry per layer kind; the first non-empty value of each fact wins)."""
    info = {"attn_backend": "", "conv_backend": ""}
    if reference:
        info["layers"] = "reference"
        if any(m.spec.kind == "attention" for m in layers):
            info["attn_backend"] = "math"
        if any(m.spec.kind in ("mamba", "mamba2", "gdn") for m in layers):
            info["conv_backend"] = "torch"
        return info
    from models.torch_layers import layer_kernels

    seen = {}
    for layer in layers:
        seen.setdefault(layer.spec.kind, layer_kernels(layer))
    for facts in seen.values():
        for key, value in facts.items():
            if value and not info.get(key):
                info[key] = value
    if target_kind == "model":
        info["norm"] = "triton_layer_norm_fn" if module.norm_f.fused else "torch"
    return info


SSD_INDEX_LIMIT = 2**31
MODEL_MAMBA2_TOKENS = 65_536  # largest whole-model Mamba-2 prompt measured without a fault (H100)


def mamba3_limit(layer, batch: int, seqlen: int) -> str:
    """mamba_ssm 2.3.2's Mamba-3 prefill stores every chunk's (P, N) state for a backward pass
    (analytic/costs/mamba3.py) and indexes that store in 32 bits: the 8B layer ran at B=16 L=8192
    (2**31 state elements) and faulted (illegal memory access) at B=16 L=16384 (2**32), H100 2026-12-07."""
    chunks = -(-seqlen // layer.chunk_size)
    elements = batch * chunks * layer.nheads * layer.headdim * layer.d_state
    if elements > SSD_INDEX_LIMIT:
        return (f"beyond mamba_ssm's Mamba-3 prefill kernel: its per-chunk state store holds batch x chunks x "
                f"heads x head_dim x d_state = {elements:,} > 2**31 elements (32-bit offsets)")
    return ""


def kernel_limit(kind: str, spec, batch: int, seqlen: int, phase: str = "prefill") -> str:
    """mamba_ssm 2.3's Mamba-2 prefill path computes some offsets in 32 bits: past 2**31 it reads
    out of bounds, which poisons the CUDA context for every later point. Two limits, measured on
    the H100 with the 8B layer: the SSD's x (batch x length x heads x head_dim) ran at 262,144
    tokens and faulted at 294,912; one sequence's in_proj output (length x d_in_proj) ran at 32K
    tokens and faulted at 128K (B=1)."""
    layers = [spec] if kind == "layer" else list(getattr(spec, "layers", []))
    for layer in layers:
        if getattr(layer, "kind", "") == "mamba3" and phase == "prefill":
            limit = mamba3_limit(layer, batch, seqlen)
            if limit:
                return limit
        if getattr(layer, "kind", "") != "mamba2":
            continue
        if kind == "model" and batch * seqlen > MODEL_MAMBA2_TOKENS:
            return (f"{batch * seqlen:,} prompt tokens: whole models with Mamba-2 layers faulted (illegal memory "
                    f"access) on the H100 from 131,072 prompt tokens (B=8 L=16K) though the layer alone runs "
                    f"to 262,144; cause not isolated, so such points are left out rather than end the sweep")
        elements = batch * seqlen * layer.nheads * layer.headdim
        if elements > SSD_INDEX_LIMIT:
            return (f"beyond mamba_ssm's Mamba-2 SSD kernels: batch x length x heads x head_dim = "
                    f"{elements:,} > 2**31 (32-bit offsets)")
        row = seqlen * layer.d_in_proj
        if row > SSD_INDEX_LIMIT:
            return (f"beyond mamba_ssm's Mamba-2 prefill kernels: length x d_in_proj = {row:,} > 2**31 "
                    f"in one sequence (32-bit offsets)")
    return ""


def point_call(module, target: Target, point: Point, seed: int, device, dtype) -> Callable[[], object]:
    """One call of `module` at `point`: random token ids (models) or hidden states (layers), and for
    decode a cache at context `seqlen` filled with random values. The seed depends on the point
    only, so every rank of a tensor-parallel run draws the same inputs."""
    import torch

    from models.torch_layers import randomize_

    gen = torch.Generator(device=device).manual_seed(seed + 7919 * point.batch + point.seqlen)
    b, seq = point.batch, point.seqlen
    length = seq if point.phase == "prefill" else 1
    if target.kind == "model":
        x = torch.randint(1, target.spec.vocab_size, (b, length), device=device, generator=gen)
    else:
        x = torch.randn(b, length, target.spec.d_model, device=device, dtype=dtype, generator=gen)
    if point.phase == "prefill":
        call = module.prefill if target.kind == "model" else module.forward
        return lambda: call(x)
    cache = module.allocate_cache(b, seq, dtype=dtype)
    for part in (cache if target.kind == "model" else [cache]):
        randomize_(part, generator=gen)
    return lambda: module.decode(x, cache)


class TorchWorkload:
    """A target built as real (or reference) torch modules, making one runnable call per point."""

    def __init__(self, target: Target, options: SweepOptions):
        import torch

        self.target, self.options = target, options
        self.dtype = _torch_dtype(options.dtype)
        torch.manual_seed(options.seed)
        if target.kind == "layer":
            if options.reference:
                from models.reference import build_reference_layer

                module = build_reference_layer(target.spec, device=options.device, dtype=self.dtype)
            else:
                from models.torch_layers import build_layer

                module = build_layer(target.spec, device=options.device, dtype=self.dtype,
                                     attn_backend=options.attn_backend)
        elif target.kind == "model":
            from models.stack import build_model

            module = build_model(target.spec, device=options.device, dtype=self.dtype,
                                 layers="reference" if options.reference else "real",
                                 attn_backend=options.attn_backend)
        else:
            raise PerfbenchError(f"unknown target kind {target.kind!r}")
        self.module = module.eval().requires_grad_(False)
        self.primed = []
        if not options.reference and str(options.device).startswith("cuda"):
            self.primed = prime_autotuners(self._mixers(), torch, options.device, self.dtype)

    def _mixers(self):
        if self.target.kind == "layer":
            return [self.module]
        return [block.mixer for block in self.module.blocks]

    def kernels(self) -> dict:
        """attn_backend / conv_backend columns and kernel facts for `extra`."""
        facts = kernel_facts(self.target.kind, self.module, self._mixers(), self.options.reference)
        if any(getattr(m, "spec", None) is not None and m.spec.kind in SHAPELESS_AUTOTUNE_KINDS for m in self._mixers()):
            facts["autotuned_on"] = f"B=1 L={AUTOTUNE_PROMPT_TOKENS}"  # perfbench/measure/autotune.py
        return facts

    def estimate_bytes(self, point: Point) -> int:
        nbytes = DTYPES[self.options.dtype]
        if self.target.kind == "layer":
            from models.torch_layers import estimate_layer_bytes

            return estimate_layer_bytes(self.target.spec, point.phase, point.batch, point.seqlen, nbytes)
        from models.stack import estimate_model_bytes  # models.stack imports torch

        return estimate_model_bytes(self.target.spec, point.phase, point.batch, point.seqlen, nbytes)

    def unsupported(self, point: Point) -> str:
        """Why the real kernels cannot run this point (a known library limit), or ''."""
        if self.options.reference or point.phase != "prefill":
            return ""
        return kernel_limit(self.target.kind, self.target.spec, point.batch, point.seqlen, point.phase)

    def prepare(self, point: Point) -> Callable[[], object]:
        """Random inputs (and random caches at context `seqlen` for decode); one call per invocation."""
        return point_call(self.module, self.target, point, self.options.seed, self.options.device, self.dtype)

    def close(self) -> None:
        self.module = None


# ----------------------------------------------------------------------------- the sweep

def is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:limit]


class _Device:
    """What the harness needs from the device: sync, memory counters, telemetry, identity."""

    def __init__(self, options: SweepOptions, telemetry=None):
        self.cuda = options.device == "cuda"
        self.env = env_versions()
        if self.cuda:
            import torch

            if not torch.cuda.is_available():
                raise PerfbenchError("no CUDA GPU here (use --cpu-reference for the CPU reference layers)")
            self.telemetry = telemetry or GpuTelemetry(torch.cuda.current_device())
            ident = self.telemetry.identity()
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            self.gpu_name = ident["gpu_name"] or props.name
            self.driver = ident["driver"]
            self.total_bytes = int(props.total_memory)
            self.l2_bytes = int(getattr(props, "L2_cache_size", 50 << 20))
        else:
            self.telemetry = telemetry or GpuTelemetry(enabled=False)
            self.gpu_name, self.driver, self.total_bytes, self.l2_bytes = "cpu", "", None, 0
        self.gpu = gpu_key(self.gpu_name) if self.cuda else "cpu"

    @property
    def ident(self) -> dict:
        """The measuring GPU's identity as results rows and run manifests record it."""
        return {"gpu": self.gpu, "gpu_name": self.gpu_name, "driver": self.driver, "env": self.env}

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int:
        if not self.cuda:
            return 0
        import torch

        return int(torch.cuda.max_memory_allocated())

    def release(self, collect: bool = False) -> None:
        """Return freed blocks to the GPU; a full gc (0.1 s with torch loaded) only when asked."""
        if collect:
            gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()


@dataclass
class SweepReport:
    run_id: str
    path: str
    rows: list[dict]
    skipped_done: int
    status: str


def run_sweep(targets: list[Target], points: list[Point], options: SweepOptions, writer: RunWriter, *,
              workload_factory=TorchWorkload, done: set | None = None,
              on_point: Callable[[Point, dict | None], None] | None = None, telemetry=None) -> SweepReport:
    """Measure `points` (those whose key is not in `done`), appending one row per point to `writer`."""
    device = _Device(options, telemetry)
    writer.manifest.update({"device": options.device, **device.ident, "host": run_host_probe(options.device)})
    done = done or set()
    by_name = {(t.kind, t.name): t for t in targets}
    workloads: dict = {}
    flush = l2_flusher(device.l2_bytes) if options.timing.l2_flush and device.cuda else None
    rows, skipped_done, status = [], 0, "complete"
    try:
        for point in points:
            if point.key(device.gpu) in done:
                skipped_done += 1
                if on_point:
                    on_point(point, None)
                continue
            tkey = (point.target_kind, point.name)
            if tkey not in workloads:
                for other in list(workloads):  # one target in memory at a time
                    if workloads[other] is not None and not isinstance(workloads[other], Exception):
                        workloads[other].close()
                    workloads[other] = None
                device.release(collect=True)
                try:
                    workloads[tkey] = workload_factory(by_name[tkey], options)
                except Exception as exc:  # noqa: BLE001 - a target that cannot be built: record why
                    workloads[tkey] = exc
            try:
                row = _measure_point(workloads[tkey], point, options, device, flush)
            except DeviceFault as fault:  # keep the point as an error row; the context is gone
                writer.append(result_row(point, options, device.ident, None, "error", DEVICE_FAULT + fault.reason,
                                         0, NO_READING, NO_READING, {}, {}))
                workloads.clear()  # its tensors live on a dead context: do not touch them again
                raise PerfbenchError(f"{point.name} {point.phase} B={point.batch} L={point.seqlen}: the GPU "
                                     f"faulted ({fault.reason}); the CUDA context is unusable, so the sweep "
                                     f"stops here. Points measured so far are saved; run again with --resume "
                                     f"to go on past it (a resume does not retry a faulted point).") from None
            writer.append(row)
            rows.append(row)
            if on_point:
                on_point(point, row)
    except BaseException:
        status = "interrupted"
        raise
    finally:
        for workload in workloads.values():
            if workload is not None and not isinstance(workload, Exception):
                workload.close()
        writer.close(status)
    return SweepReport(writer.run_id, str(writer.parquet_path), rows, skipped_done, status)


def run_host_probe(device: str) -> dict:
    """How fast this run's host launches work (`perfbench.measure.host_probe`), for the manifest: a
    host-bound point's time is its host's, which differs from lease to lease."""
    import torch

    return host_probe(torch, "cuda" if device == "cuda" else "cpu", when=utc_now())


class DeviceFault(Exception):
    """A CUDA error that outlives its point (illegal address, ...)."""

    def __init__(self, point: Point, reason: str):
        super().__init__(reason)
        self.point, self.reason = point, reason


def _measure_point(workload, point: Point, options: SweepOptions, device: _Device, flush) -> dict:
    started = time.perf_counter()
    before = device.telemetry.snapshot()
    timing, reason, status, peak, extra, kernels = None, "", "ok", 0, {}, {}
    if isinstance(workload, Exception):
        status = "oom" if is_oom(workload) else ("skipped" if _unavailable(workload) else "error")
        reason = "target not built: " + one_line(workload)
    else:
        kernels = workload.kernels()
        estimate = workload.estimate_bytes(point)
        extra["estimate_bytes"] = estimate
        budget = options.memory_budget_bytes
        if budget is None and device.total_bytes is not None:
            budget = int(device.total_bytes * options.memory_fraction)
        limit = workload.unsupported(point) if hasattr(workload, "unsupported") else ""
        if limit:
            status, reason = "skipped", limit
        elif budget is not None and estimate is not None and estimate > budget:
            status = "skipped"
            reason = f"does not fit: needs ~{estimate / 2**30:.1f} GiB, budget {budget / 2**30:.1f} GiB"
        else:
            timing, status, reason, peak = _time_point(workload, point, options, device, flush)
            try:
                device.release(collect=status != "ok")  # the point's inputs, caches and graph are gone now
            except Exception as exc:  # noqa: BLE001 - a device fault: nothing after it can run
                raise DeviceFault(point, one_line(exc)) from None
            kernels = workload.kernels()  # a lazily chosen path (e.g. GQA expand) is known now
    after = device.telemetry.snapshot()
    if timing is not None:
        extra["first_call_ms"] = round(timing.first_call_ms, 4)
    extra.update({k: v for k, v in kernels.items() if k not in ("attn_backend", "conv_backend")})
    extra["wall_s"] = round(time.perf_counter() - started, 3)  # the point's share of the sweep
    return result_row(point, options, device.ident, timing, status, reason, peak, before, after, kernels, extra)


def _unavailable(exc: BaseException) -> bool:
    try:
        from models.torch_layers import KernelUnavailable
    except ImportError:  # pragma: no cover - torch missing
        return False
    return isinstance(exc, KernelUnavailable)


def _time_point(workload, point: Point, options: SweepOptions, device: _Device, flush):
    import torch

    try:
        device.reset_peak()
        with torch.inference_mode():
            fn = workload.prepare(point)
            graph = None
            if point.mode == "graph":
                fn, graph = capture_graph(fn)
            timing = measure(fn, options.timing, cuda=device.cuda, range_name=point.nvtx_range, flush=flush)
        return timing, "ok", "", device.peak()
    except Exception as exc:  # noqa: BLE001 - one point's failure is data, not the sweep's end
        status = "oom" if is_oom(exc) else ("skipped" if _unavailable(exc) else "error")
        return None, status, one_line(exc), device.peak()


def result_row(point, options, ident: dict, timing, status, reason, peak, before, after, kernels, extra,
               tp: int = 1) -> dict:
    """One results-store row (perfbench.measure.results schema) for a point measured on `tp` GPUs; `ident` is
    the measuring GPU's {gpu, gpu_name, driver, env}."""
    nan = float("nan")
    ok = timing is not None
    median = timing.median_ms if ok else nan
    tokens = point.batch if point.phase == "decode" else point.batch * point.seqlen
    env = ident.get("env", {})
    if options.timing.rest_s > 0:  # the GPU idled this long before the point (perfbench run --rest-ms)
        extra = {**extra, "rest_ms": round(options.timing.rest_s * 1e3, 3)}
    return {
        "run_id": "", "timestamp": utc_now(), "target_kind": point.target_kind, "name": point.name,
        "phase": point.phase, "batch": point.batch, "seqlen": point.seqlen, "dtype": point.dtype,
        "mode": point.mode, "status": status, "reason": reason,
        "time_ms": median, "p10_ms": timing.p10_ms if ok else nan, "p90_ms": timing.p90_ms if ok else nan,
        "mean_ms": timing.mean_ms if ok else nan, "std_ms": timing.std_ms if ok else nan,
        "n_repeats": timing.n if ok else 0, "peak_mem_bytes": int(peak),
        "tokens_per_s": tokens / (median / 1e3) if ok and median > 0 else nan, "tp": int(tp),
        "device": options.device, "gpu": ident["gpu"], "gpu_name": ident["gpu_name"], "driver": ident["driver"],
        "sm_clock_mhz_before": before["sm_clock_mhz"], "sm_clock_mhz_after": after["sm_clock_mhz"],
        "mem_clock_mhz_before": before["mem_clock_mhz"], "mem_clock_mhz_after": after["mem_clock_mhz"],
        "power_w": after["power_w"], "temperature_c": after["temperature_c"],
        "throttle_reasons": after["throttle_reasons"], "torch_version": env.get("torch_version", ""),
        "cuda_version": env.get("cuda_version", ""), "mamba_ssm_version": env.get("mamba_ssm_version", ""),
        "causal_conv1d_version": env.get("causal_conv1d_version", ""),
        "flash_attn_version": env.get("flash_attn_version", ""),
        "attn_backend": kernels.get("attn_backend", ""), "conv_backend": kernels.get("conv_backend", ""),
        "nvtx": bool(options.timing.nvtx), "l2_flush": bool(options.timing.l2_flush),
        "nvtx_range": point.nvtx_range, "extra": json.dumps(extra, sort_keys=True, default=str),
    }


__all__ = ["PHASES", "POINT_KEY", "Point", "SweepOptions", "SweepReport", "Target", "TorchWorkload",
           "make_points", "result_row", "run_sweep"]
