"""How long `perfbench calibrate` keeps the GPU busy, estimated before it runs (`--dry-run`, and the
first lines of its log).

Each section's module estimates its own benchmark (`estimate_s`) from what a calibration file of the
same GPU holds: its grid's and samples' times, each under the protocol that times it
(bench.timed_seconds: warm-up, trials, rests, power-capped stretches). The paper-shape kernel families
take their stored samples' times; each `*_shapes` family its planned samples (kernels.<family>.plan())
at the time the cost model, calibrated by that same file, predicts for them; a family's SETUP_S adds
what it spends before timing (SSD: the Triton autotuning of each configuration)."""

from __future__ import annotations

from analytic.calibration import from_dict
from analytic.efficiency import ceilings, op_time
from analytic.fit import sample_ops
from analytic.hardware import get_gpu
from perfbench.calibration import (copy_bandwidth, gemm, gemm_relu_input, gemm_unaligned, host, l2_resident, launch,
                                   power, step, sustained, writeback)
from perfbench.calibration.bench import POWER_LIMITED_MIN_S, timed_seconds
from perfbench.calibration.kernels import FAMILIES
from perfbench.calibration.kernels.common import spec_sample


# Every section a whole calibration measures, by the name `--remeasure` takes (copy and launch: whole runs only).
SECTIONS = {"copy": copy_bandwidth, "launch": launch, "gemm": gemm, "gemm_unaligned": gemm_unaligned,
            "gemm_relu_input": gemm_relu_input, "power": power, "writeback": writeback, "step": step,
            "sustained": sustained, "l2_resident": l2_resident, "host": host}


def sample_seconds(sample: dict, call_s: float) -> float:
    """Wall seconds of one sample whose kernel takes `call_s`, under the protocol that times it."""
    if sample.get("timing") == "point":
        return timed_seconds(call_s, "point")
    if "flash_attention" in sample.get("ops", ()) and call_s > POWER_LIMITED_MIN_S:
        return timed_seconds(call_s, "power_limited")
    return timed_seconds(call_s, "timer")


def planned_seconds(family, ceil, specs=None) -> float:
    """GPU seconds of one `*_shapes` family's planned samples (at `specs`, default its spread's), at the
    cost model's time for each."""
    total = 0.0
    for stub in (family.plan() if specs is None else family.plan(specs=specs)):
        sample = spec_sample(stub["spec"], {k: v for k, v in stub.items() if k != "spec"})
        total += sample_seconds(sample, sum(float(op_time(op, ceil)[0][0]) for op in sample_ops(sample)))
    return total


def measured_seconds(samples: list[dict]) -> float:
    """GPU seconds of re-taking samples a file holds, at their stored times."""
    return sum(sample_seconds(s, float(s["time_s"])) for s in samples)


def estimate(data: dict, only: list[str] | None = None) -> dict[str, float]:
    """{name: GPU seconds} of each section and kernel family of a calibration like `data` (a calibration
    dict of the same GPU kind), and "total": all of them, or with `only` those named. Sections and the
    paper-shape families at the times `data` stored, `*_shapes` families at the model's times."""
    cal = from_dict(data, "estimate")
    gpu = get_gpu(cal.gpu)
    ceil, ridge = ceilings(gpu, cal), gpu.peak_bf16_flops / gpu.mem_bw_bytes_s
    out: dict[str, float] = {}
    for name, module in SECTIONS.items():
        if only is None or name in only:
            out[name] = module.estimate_s(data, ceil, ridge)
    for name, family in FAMILIES.items():
        if only is not None and name not in only:
            continue
        stored = [s for key in family.CLASSES for s in cal.samples.get(key, [])]
        out[name] = (planned_seconds(family, ceil) if hasattr(family, "plan") else measured_seconds(stored)) \
            + getattr(family, "SETUP_S", 0.0)
    out["total"] = sum(out.values())
    return out


def estimate_lines(data: dict, only: list[str] | None = None) -> list[str]:
    figures = estimate(data, only)
    measured = data.get("provenance", {}).get("duration_s")
    head = f"estimated GPU time on {data['gpu']}" + (
        f", re-measuring {', '.join(only)}:" if only is not None else
        f" for a whole calibration (this file's first run took {measured:.0f} s, before the sections added since):"
        if measured else ":")
    return [head] + [f"  {name:32s} {seconds:7.0f} s" for name, seconds in figures.items()]
