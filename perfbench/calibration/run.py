"""`perfbench calibrate`: run the microbenchmarks that fill a calibration file, refit it, re-measure parts.

Measured on the GPU, each alone (never the layer sweep that `compare` evaluates against), one module
per section of the file:
  copy_bandwidth    device-to-device copy bandwidth over sizes;
  launch            per-kernel cost in a CUDA graph replay and per eager op, a replay's launch;
  gemm              the bf16 GEMM grid over M for the built-in (N, K); gemm_unaligned and
                    gemm_relu_input the same GEMMs with an unaligned leading dimension or a ReLU's input;
  power             board power (NVML): idle, each prefill kernel family back to back, the GEMM burst;
  writeback, step, sustained   L2 write-back, a decode step's graph overhead, the sustained clock;
  kernels/<family>  the kernels no GEMM covers (SSD, selective scan, conv1d, state update, attention
                    prefill and decode, RoPE, elementwise, add + norm), registered by name;
  host              each layer's and model's host launch chain, sampled over the run.
Each timing protocol lives in bench.py. Every sample is kept in the file, so `--refit` refits on a
CPU later, and `--refit FILE --remeasure NAME` re-measures one family or section into it first.
"""

from __future__ import annotations

import datetime as dt
import time

from analytic.calibration import FORMAT, VERSION, bundled_path, from_dict, read_calibration_data
from analytic.efficiency import ceilings
from analytic.fit import fit_class, samples_by_family
from analytic.hardware import get_gpu, gpu_key_from_name
from analytic.ops import ELEMENTWISE
from perfbench.calibration import (gemm, gemm_relu_input, gemm_unaligned, host, l2_resident, power, step, sustained,
                                   targeted, transfer, writeback)
from perfbench.calibration.bench import Timer, cuda_torch, versions
from perfbench.calibration.copy_bandwidth import measure_copy
from perfbench.calibration.estimate import estimate_lines
from perfbench.calibration.kernels import FAMILIES, KERNEL_FAMILIES
from perfbench.calibration.kernels.common import KernelBench
from perfbench.calibration.launch import measure_launch
from perfbench.calibration.pooling import forget_pools
from perfbench.tp.distributed import measure_allreduce
from perfbench.errors import PerfbenchError, exception_line

# Measurements that fill their own section of the file (the GEMM grid, the power figures, the L2
# write-back pairs, the decode-step chains, GEMMs with an unaligned leading dimension or a ReLU's output
# as input, the sustained clock), re-measurable like the kernel families; and the layers' host chains
# ("host"), whose figures go into `launch` and their windows into `host_samples` (host.py).
SECTION_MODULES = {module.SECTION: module for module in (gemm, power, writeback, step, gemm_unaligned,
                                                         gemm_relu_input, sustained, l2_resident)}
SECTIONS = tuple(SECTION_MODULES)
REFITTED_SECTIONS = (writeback, step, l2_resident)  # sections whose figures are fitted from their own samples
REMEASURABLE = KERNEL_FAMILIES + SECTIONS + ("host",)


def check_kernel_families(names) -> None:
    """A one-line error naming any requested kernel family or section that cannot be re-measured."""
    unknown = sorted(set(names) - set(REMEASURABLE))
    if unknown:
        raise PerfbenchError(f"unknown kernel family {', '.join(unknown)} (known: {', '.join(REMEASURABLE)})")


def measure_kernels(torch, timer: Timer, log, only: set[str] | None = None) -> dict:
    """Kernel families alone at off-grid sizes (`only`: just these families, by name); each sample
    names the layer ops it stands for. A family that fails is recorded and the rest go on."""
    check_kernel_families(only or ())
    bench = KernelBench(torch, timer, log, {c: [] for family in FAMILIES.values() for c in family.CLASSES})
    failures: dict[str, str] = {}
    for name, family in FAMILIES.items():
        if only is not None and name not in only:
            continue
        log(f"kernels: {name}")
        try:
            family.measure(bench)
        except Exception as exc:  # record and go on: one missing kernel must not lose the rest
            failures[name] = exception_line(exc, width=200)
            log(f"  {name}: FAILED {failures[name]}")
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception as exc:  # a device fault (illegal address) poisons the context for good
            raise PerfbenchError(f"calibration aborted: the CUDA context is unusable after {name} failed "
                                 f"({failures.get(name, type(exc).__name__)})") from None
    samples = bench.samples
    if only is not None:  # a partial run: only the classes it measured
        samples = {c: v for c, v in samples.items() if v}
    return {"samples": samples, "failures": failures}


def fit_calibration(data: dict, log=print) -> dict:
    """Fill `op_classes` of a calibration dict from its `samples` (runs on a CPU too: --refit)."""
    gpu = get_gpu(data["gpu"]) if data["gpu"] in ("h100", "h200", "a100") else None
    if gpu is None:
        raise PerfbenchError(f"no datasheet entry for GPU {data['gpu']!r} to start the fit from")
    data = dict(data)
    data.setdefault("op_classes", {})
    cal = from_dict({**data, "op_classes": {}}, "fit")
    base = ceilings(gpu, cal)
    classes = {}
    for op_class, samples in samples_by_family(data.get("samples", {})).items():
        if op_class == ELEMENTWISE:  # the class models a launch floor and HBM: drop L2-resident sizes
            samples = [s for s in samples if s["bytes"] <= 1 << 20 or s["bytes"] >= 192 << 20]
        if not samples:
            continue
        classes[op_class] = fit_class(op_class, samples, base)
        c = classes[op_class]
        log(f"fit {op_class:18s} n={c['n_samples']:3d} t0={c['t0_s'] * 1e6:6.2f} us "
            f"host={c.get('host_s', float('nan')) * 1e6:5.1f} us "
            f"bw={c['bw_bytes_s'] / 1e12:6.3f} TB/s rate={c['flops_s'] / 1e12:7.1f} TFLOP/s "
            f"median|err|={c['fit_median_abs_err']:.3f} max={c['fit_max_abs_err']:.3f}")
    classes[gemm.GEMM] = gemm.fit_gemm_class(data["gemm"], base)
    data["op_classes"] = transfer.with_transferred(classes, data)
    if data.get("writeback", {}).get("samples"):
        data["writeback"] = writeback.refit_section(data["writeback"])
        log(f"fit write-back: {data['writeback']['dirty_bytes'] / 1e6:.1f} MB dirty at most, paid at "
            f"{data['writeback']['bw_bytes_s'] / 1e12:.2f} TB/s")
    if data.get(l2_resident.SECTION, {}).get("samples"):
        data[l2_resident.SECTION] = l2_resident.refit_section(data[l2_resident.SECTION])
    if data.get("step", {}).get("samples"):
        data["step"] = step.refit_section(data["step"])
        log(f"fit decode step: {data['step']['base_s'] * 1e6:.2f} us per replay, {data['step']['kernel_s'] * 1e6:.2f} us "
            f"per further kernel, {data['step']['cold_kernel_s'] * 1e6:.2f} us per further cold one")
    return data


def remeasure(data: dict, families: list[str], log=print, host_layers: list[str] | None = None) -> dict:
    """Re-measure some kernel families or sections of an existing calibration on this GPU, replace their
    samples and refit: one family measured in another machine state (a hot board after the GEMM grid)
    can be redone without a whole calibration. The file records when each was re-measured.
    `host_layers` (built-in layer names): re-measure only those layers' host chains, keeping the rest."""
    torch = cuda_torch()
    props = torch.cuda.get_device_properties(0)
    if gpu_key_from_name(props.name) != data.get("gpu"):
        raise PerfbenchError(f"this GPU is {props.name}; the calibration file is for {data.get('gpu')!r}")
    torch.manual_seed(0)
    data = dict(data)
    kernel_families = set(families) & set(KERNEL_FAMILIES)
    if kernel_families:
        kernels = measure_kernels(torch, Timer(torch), log, only=kernel_families)
        if kernels["failures"]:
            raise PerfbenchError(f"re-measuring failed, file left as it was: {kernels['failures']}")
        data["samples"] = {**data.get("samples", {}), **kernels["samples"]}
    if "host" in families:  # the launch chains: figures in `launch`, windows in `host_samples`
        samples = host.measure_host_chains(torch, log, layers=host_layers)
        if not samples:
            raise PerfbenchError("re-measuring host gave nothing on this GPU, file left as it was")
        merge = host.with_more_host_samples if host_layers else host.with_host_samples
        data = merge(data, samples, host.lease_probe(torch))
    for section, module in SECTION_MODULES.items():
        if section in families:
            measured = module.measure_section(torch, Timer(torch), log)
            if not measured:  # the power section without an NVML energy counter
                raise PerfbenchError(f"re-measuring {section} gave nothing on this GPU, file left as it was")
            data[section] = measured
    if "gemm" in families:
        data["gemm_peak_flops"] = gemm.gemm_peak(data["gemm"])
    data = forget_pools(data, families)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    provenance = dict(data.get("provenance", {}))
    provenance["remeasured"] = {**provenance.get("remeasured", {}),
                                **{f: {"created": when, **{k: str(v) for k, v in versions(torch).items()}}
                                   for f in families}}
    data["provenance"] = provenance
    if set(families) <= {"host"}:  # the chains are read as measured; no class fit depends on them
        return data  # (a whole refit takes ~2.5 min of a lease's slow CPU: H100 2026-12-07 15:26Z)
    return fit_calibration(data, log)


def calibrate(log=print, skip_kernels: bool = False, targets=None) -> dict:
    """Run every microbenchmark on the current CUDA device; return the calibration dict.

    `targets`: the registry Targets (`perfbench.commands.selection.resolve_targets`): measure only the
    GEMMs and kernel configurations their ops use, into the bundled calibration (targeted.py).
    """
    if targets:
        return fit_calibration(targeted.calibrate_targets(targets, log), log)
    torch = cuda_torch()
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    gpu_key = gpu_key_from_name(props.name)
    timer = Timer(torch)
    if bundled_path(gpu_key).exists():
        for line in estimate_lines(read_calibration_data(bundled_path(gpu_key))):
            log(line)
    started = time.perf_counter()
    copy_bw, copy_curve = measure_copy(torch, timer, log)
    launch = measure_launch(torch, log)
    grid = gemm.measure_section(torch, timer, log)
    measured = {module.SECTION: module.measure_section(torch, timer, log)
                for module in (gemm_unaligned, gemm_relu_input, power, writeback, step, sustained, l2_resident)}
    kernels = {"samples": {}, "failures": {}} if skip_kernels else measure_kernels(torch, timer, log)
    host_samples = {} if skip_kernels else host.measure_host_chains(torch, log)
    peak = gemm.gemm_peak(grid)
    env = versions(torch)
    data = {
        "format": FORMAT, "version": VERSION, "gpu": gpu_key, "gpu_name": props.name,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "provenance": {**{k: str(v) for k, v in env.items()}, "sm_count": props.multi_processor_count,
                       "total_memory_bytes": props.total_memory, "duration_s": time.perf_counter() - started,
                       "kernel_failures": kernels["failures"]},
        "copy_bandwidth_bytes_s": copy_bw, "copy_curve": copy_curve, "gemm_peak_flops": peak,
        "gemm": grid, "gemm_unaligned": measured["gemm_unaligned"], "gemm_relu_input": measured["gemm_relu_input"],
        "launch": {**launch, **host.host_figures(host_samples)},
        **({"host_samples": host_samples, host.HOST_PROBES: [host.lease_probe(torch)]} if host_samples else {}),
        "op_classes": {}, "samples": kernels["samples"], **({"power": measured["power"]} if measured["power"] else {}),
        "writeback": measured["writeback"], "step": measured["step"], "sustained": measured["sustained"],
        "l2_resident": measured["l2_resident"],
    }
    if torch.cuda.device_count() >= 2:  # tensor parallelism: ring all-reduce bus bandwidth
        torch.cuda.empty_cache()
        try:
            data["allreduce"] = measure_allreduce(log=log)
        except PerfbenchError as exc:
            log(f"all-reduce benchmark failed, no allreduce entry: {exc}")
    log(f"copy {copy_bw / 1e12:.3f} TB/s, GEMM peak {peak / 1e12:.0f} TFLOP/s, "
        f"{len(grid)} GEMM shapes, {sum(len(v) for v in kernels['samples'].values())} kernel samples "
        f"in {time.perf_counter() - started:.0f} s")
    return fit_calibration(data, log)
