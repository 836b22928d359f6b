"""How long `perfbench calibrate` keeps the GPU busy, estimated before it runs (`--dry-run`, and the
first line of its log).

The sections and kernel families a bundled calibration holds took its `provenance.duration_s`. Each
`*_shapes` family adds its planned samples (kernels.<family>.plan()), each timed as its protocol
times it (bench.timed_seconds) at the time the cost model, calibrated by that same file, predicts
for it; SSD adds the Triton autotuning of each new configuration."""

from __future__ import annotations

from analytic.calibration import from_dict
from analytic.efficiency import ceilings, op_time
from analytic.fit import sample_ops, spec_fields
from analytic.hardware import get_gpu
from perfbench.calibration.bench import POWER_LIMITED_MIN_S, timed_seconds
from perfbench.calibration.kernels import FAMILIES, ssd_shapes


def sample_seconds(sample: dict, call_s: float) -> float:
    """Wall seconds of one sample whose kernel takes `call_s`, under the protocol that times it."""
    if sample.get("timing") == "point":
        return timed_seconds(call_s, "point")
    if "flash_attention" in sample.get("ops", ()) and call_s > POWER_LIMITED_MIN_S:
        return timed_seconds(call_s, "power_limited")
    return timed_seconds(call_s, "timer")


def planned_seconds(family, ceil) -> float:
    """GPU seconds of one `*_shapes` family's planned samples, at the cost model's time for each."""
    total = 0.0
    for stub in family.plan():
        sample = {**stub, "layer": stub["spec"].kind, "kind": stub["spec"].kind, "spec": spec_fields(stub["spec"])}
        total += sample_seconds(sample, sum(float(op_time(op, ceil)[0][0]) for op in sample_ops(sample)))
    if family is ssd_shapes:
        total += ssd_shapes.SPEC_SETUP_S * len(ssd_shapes.SPECS)
    return total


def measured_seconds(samples: list[dict]) -> float:
    """GPU seconds of re-taking samples a file holds, at their stored times."""
    return sum(sample_seconds(s, float(s["time_s"])) for s in samples)


def estimate(data: dict, only: list[str] | None = None) -> dict[str, float]:
    """{name: GPU seconds} of a calibration like `data` (a calibration dict of the same GPU kind) and
    "total": a whole one (the file's own duration plus the `*_shapes` families it lacks) or, with
    `only`, a re-measurement of those kernel families (sections other than kernel families: not
    estimated, left out)."""
    cal = from_dict(data, "estimate")
    ceil = ceilings(get_gpu(cal.gpu), cal)
    out: dict[str, float] = {}
    if only is None:
        out["bundled sections and families"] = float(cal.provenance.get("duration_s", 0.0))
    for name, family in FAMILIES.items():
        stored = [s for key in family.CLASSES for s in cal.samples.get(key, [])]
        if only is None and stored:
            continue
        if only is not None and name not in only:
            continue
        out[name] = measured_seconds(stored) if stored and not hasattr(family, "plan") else planned_seconds(family, ceil)
    out["total"] = sum(out.values())
    return out


def estimate_lines(data: dict, only: list[str] | None = None) -> list[str]:
    figures = estimate(data, only)
    head = (f"estimated GPU time on {data['gpu']}: " + ("re-measuring " + ", ".join(only) if only is not None else
            f"{figures['bundled sections and families']:.0f} s as its calibration file measured, plus the "
            "families it lacks"))
    return [head] + [f"  {name:32s} {seconds:7.0f} s" for name, seconds in figures.items()]
