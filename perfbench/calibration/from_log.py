"""Recover a killed calibration's kernel-family samples from its log: a `perfbench calibrate` that a
time limit killed writes no file, but its log holds every timed sample in order, one line each
(`kernels: <family>` then `  <kernel> [hparams] b=.. [L=..]: <time> ms|us`). Each family's plan()
lists the samples measure() takes, in the same order; this pairs line with plan entry, checks that the
kernel name, batch, length and hyper-parameters the line prints are the entry's (refusing otherwise),
and rebuilds the sample measure() would have kept. A family cut off mid-way gives the samples it logged.

What a line cannot carry is dropped: `time_decode_step` times a step as a CUDA graph and eagerly but
logs the eager time only, so those families' graph samples are lost (the plan entry just before its
eager twin, differing in mode alone). A sample's mode is its plan entry's (a graph capture that fell
back to eager is not visible in the log). Times keep the log's rounding (3 decimals of ms, 1 of us)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from perfbench.calibration.kernels import FAMILIES
from perfbench.calibration.kernels.common import spec_sample
from perfbench.calibration.pooling import forget_pools
from perfbench.errors import PerfbenchError

_HEADER = re.compile(r"^kernels: (\S+)\s*$")
_SAMPLE = re.compile(r"^\s+(\S+)((?:\s+\S+=\S+)*):\s+([0-9.]+)\s+(ms|us)\s*$")
_UNITS = {"ms": 1e-3, "us": 1e-6}


@dataclass(frozen=True)
class Recovered:
    """One family's samples rebuilt from a log ({file samples key: [sample, ...]}), how many of its plan
    had a line (`logged`), how many the log never reached (`missing`) and how many no line shows (`dropped`)."""

    family: str
    samples: dict
    logged: int
    missing: int
    dropped: int


def _log_names(module) -> dict:
    """The kernel name a family's log line prints per phase."""
    if hasattr(module, "KERNELS"):
        return {"prefill": module.KERNELS.chunk_name, "decode": module.KERNELS.step_name}
    if hasattr(module, "LOG_NAMES"):
        return module.LOG_NAMES
    raise PerfbenchError(f"kernel family {module.NAME} does not say what its log lines name: not recoverable")


def _sample_key(module, phase: str) -> str:
    """The file's samples key a family files a sample of `phase` under: its one class, or (the 8B layers'
    families) the chunk class for prefill and the step class for decode."""
    classes = module.CLASSES
    if len(classes) == 1:
        return classes[0]
    if len(classes) == 2:
        return classes[0] if phase == "prefill" else classes[1]
    raise PerfbenchError(f"kernel family {module.NAME} files samples under {len(classes)} keys: not recoverable")


def _logged_entries(plan: list[dict]) -> tuple[list[dict], int]:
    """The plan entries a log line stands for: of consecutive entries differing in mode alone, the last
    (the one time_decode_step logs); and how many were dropped so."""
    kept: list[dict] = []
    for entry in plan:
        if kept and {**kept[-1], "mode": None} == {**entry, "mode": None}:
            kept[-1] = entry
        else:
            kept.append(entry)
    return kept, len(plan) - len(kept)


def _check_line(module, entry: dict, name: str, fields: dict, line: str) -> None:
    """Refuse a line whose kernel, batch, length or hyper-parameters are not its plan entry's."""
    expected = {"b": str(entry["batch"])}
    if entry["phase"] == "prefill":
        expected["L"] = str(entry["seqlen"])
    if hasattr(module, "KERNELS"):
        expected.update(kv.split("=", 1) for kv in module.KERNELS.describe(entry["spec"]).split())
    wanted_name = _log_names(module)[entry["phase"]]
    if name != wanted_name or fields != expected:
        shown = " ".join(f"{k}={v}" for k, v in expected.items())
        raise PerfbenchError(f"{module.NAME}: log line {line.strip()!r} does not match its plan entry "
                             f"({wanted_name} {shown}): refusing")


def _family_lines(lines) -> dict[str, list[str]]:
    """Each `kernels: <family>` block's sample lines, in order."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in lines:
        header = _HEADER.match(line)
        if header:
            current = header.group(1)
            if current in blocks:
                raise PerfbenchError(f"the log times kernel family {current} twice: cannot tell which to keep")
            blocks[current] = []
        elif current is not None and _SAMPLE.match(line):
            blocks[current].append(line)
        elif line.strip() and not line.startswith(" "):
            current = None  # another section's heading ("== ...", "fit ...")
    return blocks


def recover_samples(lines) -> list[Recovered]:
    """Every kernel family a calibration log times, its samples rebuilt from the lines and its plan()."""
    recovered = []
    for family, block in _family_lines(lines).items():
        module = FAMILIES.get(family)
        if module is None or not hasattr(module, "plan"):
            raise PerfbenchError(f"kernel family {family} in the log has no plan() to pair its lines with")
        entries, dropped = _logged_entries(module.plan())
        if len(block) > len(entries):
            raise PerfbenchError(f"{family}: the log has {len(block)} lines, its plan {len(entries)} samples: refusing")
        samples: dict[str, list] = {}
        for entry, line in zip(entries, block):
            name, fields, value, unit = _SAMPLE.match(line).groups()
            _check_line(module, entry, name, dict(kv.split("=", 1) for kv in fields.split()), line)
            sample = {"phase": entry["phase"], "batch": entry["batch"], "seqlen": entry["seqlen"],
                      "ops": list(entry["ops"]), "time_s": float(value) * _UNITS[unit]}
            samples.setdefault(_sample_key(module, entry["phase"]), []).append(
                {**spec_sample(entry["spec"], sample), "mode": entry["mode"]})
        recovered.append(Recovered(family, samples, len(block), len(entries) - len(block), dropped))
    return recovered


def with_recovered(data: dict, recovered: list[Recovered], created: str, source: str) -> dict:
    """A calibration dict with the recovered families' samples in place of its own (as `--remeasure`
    replaces them), each family's provenance saying when it ran and which log it came from."""
    data = {**data, "samples": {**data.get("samples", {})}}
    for r in recovered:
        data["samples"].update(r.samples)
    data = forget_pools(data, [r.family for r in recovered])
    provenance = dict(data.get("provenance", {}))
    provenance["remeasured"] = {**provenance.get("remeasured", {}),
                                **{r.family: {"created": created, "recovered_from_log": source,
                                              "samples": str(r.logged), "not_logged": str(r.missing + r.dropped)}
                                   for r in recovered}}
    return {**data, "provenance": provenance}
