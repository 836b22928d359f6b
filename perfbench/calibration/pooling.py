"""Calibration figures as medians over several leases' boards: the GEMM grid and the power figures.

A compute-bound GEMM's power-capped rate differs from board to board and from lease to lease: the
same (M, N, K) timed the same way (bench.time_gemm) on three H100 leases of 2026-11-24 came out
652, 694 and 656 TFLOP/s (the MLP's fc1 at 4K tokens) and 718, 719 and 734 (at 64K), the first
lease's grid the slowest on most shapes. A point measured later runs on whichever board the lease
gets, so the cost model reads each shape's median over the leases (`perfbench calibrate --gemm-from`).
Each grid entry keeps its leases' times in `lease_times_s`, so pooling again never takes a median of
medians. The board's power figures (idle, each kernel family's power and SM clock back to back,
the GEMM's burst) move from run to run too (H100 elementwise 461 and 497 W, two runs a minute apart):
`--power-from` takes each figure's median over the runs.
"""

from __future__ import annotations

import json
import statistics

from perfbench.calibration.gemm import gemm_peak
from perfbench.errors import PerfbenchError


def measured_at(data: dict, section: str) -> str | None:
    """When a file's `section` was measured: its `--remeasure section`, else the file's creation."""
    return data.get("provenance", {}).get("remeasured", {}).get(section, {}).get("created") or data.get("created")


def check_same_gpu(name: str, data: dict, other: dict) -> None:
    """Only one GPU kind's figures pool: refuse another's with one line."""
    if other.get("gpu") != data.get("gpu"):
        raise PerfbenchError(f"{name}: calibration of {other.get('gpu')!r}, not {data.get('gpu')!r}")


def pool_sources(data: dict, section: str, pooled_key: str) -> list:
    """The leases or runs whose `section` a file holds: those it was pooled from, else its own."""
    return list(data.get("provenance", {}).get(pooled_key) or [measured_at(data, section)])


def add_pool_sources(name: str, data: dict, other: dict, section: str, pooled_key: str, sources: list) -> None:
    """Append `other`'s sources to `sources`, refusing another GPU kind's file or one already pooled."""
    check_same_gpu(name, data, other)
    already = sorted(set(pool_sources(other, section, pooled_key)) & set(sources), key=str)
    if already:
        what = {"gemm": "GEMM grid", "power": "power figures"}.get(section, section)
        raise PerfbenchError(f"{name}: already in the pool (its {what} of {', '.join(map(str, already))})")
    sources.extend(pool_sources(other, section, pooled_key))


def _key(entry: dict) -> tuple[int, int, int]:
    return int(entry["m"]), int(entry["n"]), int(entry["k"])


def _lease_times(entry: dict) -> list[float]:
    return [float(t) for t in entry.get("lease_times_s") or [entry["time_s"]]]


def pooled_gemm_grid(data: dict, others: dict[str, dict]) -> dict:
    """`data` with each GEMM grid entry's time the median over its leases' times in `data` and in
    the `others` calibrations of the same GPU kind (shapes another file lacks keep the leases that
    have them). The peak rate is recomputed from the pooled grid; everything else stays `data`'s."""
    times = {_key(e): _lease_times(e) for e in data["gemm"]}
    leases = pool_sources(data, "gemm", "gemm_pooled_from")
    for name, other in others.items():
        add_pool_sources(name, data, other, "gemm", "gemm_pooled_from", leases)
        for entry in other.get("gemm", []):
            if _key(entry) in times:
                times[_key(entry)].extend(_lease_times(entry))
    grid = [{**e, "time_s": statistics.median(times[_key(e)]), "lease_times_s": times[_key(e)]} for e in data["gemm"]]
    provenance = {**data.get("provenance", {}), "gemm_pooled_from": leases}
    return {**data, "gemm": grid, "gemm_peak_flops": gemm_peak(grid), "provenance": provenance}


def pooled_power(data: dict, others: dict[str, dict]) -> dict:
    """`data` with each power figure the median over its runs in `data` and the `others` calibrations of
    the same GPU kind (`power_samples` keeps every run's value; figures only some runs have keep those)."""
    samples = {k: [float(v) for v in data.get("power_samples", {}).get(k) or [data["power"][k]]]
               for k in data.get("power", {})}
    runs = pool_sources(data, "power", "power_pooled_from")
    for name, other in others.items():
        if not other.get("power"):
            raise PerfbenchError(f"{name}: no power figures to pool")
        add_pool_sources(name, data, other, "power", "power_pooled_from", runs)
        for key, value in other["power"].items():
            if key in samples:
                samples[key].extend([float(v) for v in other.get("power_samples", {}).get(key) or [value]])
    power = {key: statistics.median(values) for key, values in samples.items()}
    provenance = {**data.get("provenance", {}), "power_pooled_from": runs}
    return {**data, "power": power, "power_samples": samples, "provenance": provenance}


def _sample_identity(sample: dict) -> str:
    """What makes two kernel samples the same measurement: every field but their times."""
    return json.dumps({k: v for k, v in sample.items() if k not in ("time_s", "run_times_s")}, sort_keys=True)


def pooled_kernel_samples(data: dict, others: dict[str, dict], families: dict[str, tuple]) -> dict:
    """`data` with each kernel sample's time the median over the runs of that family in `data` and the
    `others` calibrations of the same GPU kind (`families`: name -> the sample keys it fills). A run is a
    family's measurement (its `--remeasure`, else the file's creation): one a file shares with the pool
    already (an untouched family of a copy) is not counted twice. Each sample keeps its runs' times in
    `run_times_s`; samples another run lacks keep the runs that have them."""
    samples = {key: [dict(s) for s in items] for key, items in data.get("samples", {}).items()}
    provenance = dict(data.get("provenance", {}))
    for family, keys in families.items():
        pooled_key = f"{family}_pooled_from"
        runs = pool_sources(data, family, pooled_key)
        times = {(key, _sample_identity(s)): [float(t) for t in s.get("run_times_s") or [s["time_s"]]]
                 for key in keys for s in samples.get(key, [])}
        if not times:
            continue
        for name, other in others.items():
            check_same_gpu(name, data, other)
            theirs = pool_sources(other, family, pooled_key)
            if set(theirs) & set(runs):
                continue
            runs.extend(theirs)
            for key in keys:
                for s in other.get("samples", {}).get(key, []):
                    if (key, _sample_identity(s)) in times:
                        times[(key, _sample_identity(s))].extend(float(t) for t in s.get("run_times_s") or [s["time_s"]])
        for key in keys:
            samples[key] = [{**s, "time_s": statistics.median(times[(key, _sample_identity(s))]),
                             "run_times_s": times[(key, _sample_identity(s))]} for s in samples.get(key, [])]
        provenance[pooled_key] = runs
    return {**data, "samples": samples, "provenance": provenance}
