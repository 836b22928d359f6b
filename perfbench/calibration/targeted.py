"""Targeted calibration (`perfbench calibrate --model NAME`): measure exactly the GEMM shapes and kernel
configurations one model's ops use, and write the bundled calibration of this GPU kind plus them.

A model's GEMMs (`model_gemm_shapes`) have (N, K) fixed by its spec; only M moves with the batch and
length: prefill runs its layers at B x L tokens, decode at B rows, and the LM head at B rows in both
(analytic.composition). So each (N, K) is timed over the M its phases reach (TARGET_DECODE_M,
TARGET_PREFILL_M), the same way as the default grid (gemm.measure_gemms), and the samples join the
bundled grid: on a measured shape analytic/gemm_model.py reproduces them, and its neighbours in the
design grid then interpolate towards them.

Kernel families: each family that takes hyper-parameters is asked for the model's layer specs of its
kind in one call, `family.measure(bench, specs=...)` (`measure_kernel_configurations`); a family whose
measure() takes no `specs` yet is left at the bundled samples and named in the log.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from dataclasses import dataclass

import numpy as np

from analytic.calibration import bundled_path, default_calibration, read_calibration_data
from analytic.composition import step_ops
from analytic.efficiency import ceilings
from analytic.hardware import get_gpu, gpu_key_from_name
from analytic.ops import GEMM
from models.registry import Target
from perfbench.calibration import gemm as gemm_grid
from perfbench.calibration.bench import Timer, cuda_torch, versions
from perfbench.calibration.estimate import planned_seconds
from perfbench.calibration.kernels import FAMILIES
from perfbench.calibration.kernels.common import KernelBench
from perfbench.errors import PerfbenchError

TARGET_DECODE_M = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # decode rows: one sequence to a large batch
TARGET_PREFILL_M = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)  # prefill tokens (B x L)
SHAPE_PROBE_BATCH, SHAPE_PROBE_SEQLEN = np.array([1.0]), np.array([512.0])  # (N, K) do not depend on them


@dataclass(frozen=True)
class GemmUse:
    """One (N, K) a target's ops run, the phases that run it and the op names (for the log)."""

    n: int
    k: int
    phases: tuple[str, ...]
    names: tuple[str, ...]
    lm_head: bool  # only at B rows (the LM head): decode M in both phases


def model_gemm_shapes(targets) -> list[GemmUse]:
    """Every (N, K) the targets' GEMM ops use, in prefill and decode (each `models.registry.Target`: a
    layer or a model; the cost model's own op lists, analytic.composition.step_ops)."""
    uses: dict = {}
    for target in targets:
        for phase in ("prefill", "decode"):
            for c in step_ops(target.kind, target.spec, phase, SHAPE_PROBE_BATCH, SHAPE_PROBE_SEQLEN):
                if c.op.op_class != GEMM:
                    continue
                key = (int(c.op.shape["n"]), int(c.op.shape["k"]))
                phases, names, head = uses.get(key, (set(), set(), True))
                uses[key] = (phases | {phase}, names | {c.op.name}, head and c.group == "head")
    return [GemmUse(n, k, tuple(sorted(p)), tuple(sorted(names)), head) for (n, k), (p, names, head) in sorted(uses.items())]


def targeted_points(targets) -> list[tuple[int, int, int]]:
    """(M, N, K) a targeted calibration times: each shape over the M of the phases that run it."""
    points = set()
    for use in model_gemm_shapes(targets):
        ms = set(TARGET_DECODE_M)
        if "prefill" in use.phases and not use.lm_head:
            ms |= set(TARGET_PREFILL_M)
        points |= {(m, use.n, use.k) for m in ms if 2.0 * m * use.n * use.k <= gemm_grid.MAX_CALL_FLOPS}
    return sorted(points)


def kernel_configurations(targets, families: dict) -> dict[str, tuple]:
    """{family name: the targets' distinct layer specs of the kinds that family times}, for each family
    whose plan() names the layer kinds it runs (the `*_shapes` families)."""
    layers = []
    for target in targets:
        for spec in ([target.spec] if target.kind == "layer" else list(target.spec.layers)):
            if spec not in layers:
                layers.append(spec)
    out = {}
    for name, family in families.items():
        plan = getattr(family, "plan", None)
        if plan is None:
            continue
        kinds = {stub["spec"].kind for stub in plan()}
        specs = tuple(spec for spec in layers if spec.kind in kinds)
        if specs:
            out[name] = specs
    return out


def takes_specs(family) -> bool:
    """Whether a family's measure() can be asked for given configurations (`specs=`)."""
    return "specs" in inspect.signature(family.measure).parameters


def measure_kernel_configurations(bench, configurations: dict, families: dict, log) -> list[str]:
    """Each family asked once for its configurations; returns the families that could not be asked
    (their measure() takes no `specs` yet: the bundled samples stand for them)."""
    skipped = []
    for name, specs in configurations.items():
        family = families[name]
        if not takes_specs(family):
            skipped.append(name)
            continue
        log(f"kernels: {name} at {len(specs)} configuration(s) of the target")
        family.measure(bench, specs=specs)
    if skipped:
        log(f"kernels not targeted (their benchmark takes no configurations yet): {', '.join(skipped)}")
    return skipped


def estimated_seconds(targets, gpu: str, families: dict) -> dict[str, float] | None:
    """{"gemm": s, <family>: s, "total": s}: the GPU time of a targeted calibration, each sample at what
    the bundled calibration of `gpu` predicts under its timing protocol (None without a bundled file)."""
    cal = default_calibration(gpu)
    if cal is None:
        return None
    out = {"gemm": gemm_grid.estimated_section_seconds(targeted_points(targets), gpu)}
    ceil = ceilings(get_gpu(gpu), cal)
    for name, specs in kernel_configurations(targets, families).items():
        if takes_specs(families[name]):  # plus the Triton autotuning of each configuration (SSD)
            out[name] = planned_seconds(families[name], ceil, specs) + getattr(families[name], "SPEC_SETUP_S", 0.0) * len(specs)
    out["total"] = sum(out.values())
    return out


def with_targeted_samples(base: dict, gemm_samples: list[dict], kernel_samples: dict, targets, when: str,
                          extra_provenance: dict | None = None) -> dict:
    """The calibration dict `base` (the bundled one) with these samples: each measured (M, N, K) replaces
    the base's entry of the same key (the pooled leases' times go: this board is the one predicted),
    kernel samples are appended to their keys, the peak recomputed, and provenance.targeted records what."""
    data = dict(base)
    new_keys = {(int(g["m"]), int(g["n"]), int(g["k"])) for g in gemm_samples}
    kept = [g for g in base["gemm"] if (int(g["m"]), int(g["n"]), int(g["k"])) not in new_keys]
    data["gemm"] = sorted(kept + [dict(g) for g in gemm_samples], key=lambda g: (g["n"], g["k"], g["m"]))
    data["gemm_peak_flops"] = gemm_grid.gemm_peak(data["gemm"])
    samples = {key: list(items) for key, items in base.get("samples", {}).items()}
    for key, items in kernel_samples.items():
        samples[key] = samples.get(key, []) + list(items)
    data["samples"] = samples
    provenance = dict(base.get("provenance", {}))
    provenance["targeted"] = {"created": when, "targets": [t.name for t in targets],
                              "gemm_shapes": sorted({(int(g["n"]), int(g["k"])) for g in gemm_samples}),
                              "gemm_samples": len(gemm_samples),
                              "kernel_samples": {k: len(v) for k, v in kernel_samples.items()},
                              **(extra_provenance or {})}
    data["provenance"] = provenance
    return data


def calibrate_targets(targets: list[Target], log=print) -> dict:
    """Measure the targets' GEMMs (and kernel configurations, where their families take them) on this GPU
    and return the bundled calibration of its kind with them (to refit: run.fit_calibration)."""
    torch = cuda_torch()
    torch.manual_seed(0)
    gpu = gpu_key_from_name(torch.cuda.get_device_properties(0).name)
    path = bundled_path(gpu)
    if not path.exists():
        raise PerfbenchError(f"no bundled calibration for {gpu} to add targeted samples to: run `perfbench calibrate` first")
    base = read_calibration_data(path)
    started = time.perf_counter()
    timer = Timer(torch)
    points = targeted_points(targets)
    estimate = estimated_seconds(targets, gpu, FAMILIES)
    if estimate:
        log("targeted calibration, estimated GPU time: "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in estimate.items()))
    for use in model_gemm_shapes(targets):
        log(f"target GEMM N={use.n} K={use.k}: {', '.join(use.names)} ({'/'.join(use.phases)})")
    grid = gemm_grid.measure_section(torch, timer, log, points=points)
    bench = KernelBench(torch, timer, log, {})
    configurations = kernel_configurations(targets, FAMILIES)
    skipped = measure_kernel_configurations(bench, configurations, FAMILIES, log)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = {k: str(v) for k, v in versions(torch).items()}
    data = with_targeted_samples(base, grid, bench.samples, targets, when,
                                 {"duration_s": time.perf_counter() - started, "kernels_not_targeted": skipped, **env})
    log(f"targeted calibration of {', '.join(t.name for t in targets)}: {len(grid)} GEMM samples, "
        f"{sum(len(v) for v in bench.samples.values())} kernel samples in {time.perf_counter() - started:.0f} s")
    return data
