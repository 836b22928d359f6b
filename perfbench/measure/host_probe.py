"""How fast this machine's host runs a launch chain: recorded with every run and every calibration.

A small prefill or an eager decode step is host-bound: its time is the Python launch chain (PyTorch
dispatch, Triton's launchers, mamba_ssm's Python), and that chain's speed is the host's. The GPUs are
lent with shared virtual hosts whose speed differs from one lease to the next by up to ~1.8x, every
chain together: H100 Mamba-2 prefill at B=1 ran 1.00-1.16 ms a call on the 2026-11-23 leases, 1.24-2.07
ms on the 2026-11-24 ones and 0.93-0.95 ms on 2026-12-07 (the same harness and layer code); the H200
calibration's four leases read 0.94-1.68 ms, and every one of its chains moved by the same factor
(docs/notes/2026-12-07-host-speed.md). So a run records its host (`host` in the run manifest) and a
calibration the host its chains were timed on (`host_probes`, one per pooled lease), and the ratio of
the two probes is the host-speed factor `perfbench predict --host-speed` and `compare --host-speed run`
take (`analytic.host_chain.host_speed`).

The probe is a fixed chain of the kind a layer runs: `LAUNCH_OPS` tiny elementwise ops back to back,
no synchronisation inside (dispatch and launch, what a host-bound step waits on), timed by wall clock
in `WINDOWS` windows whose median is kept; and a fixed pure-Python loop (the interpreter alone). Both
take a few milliseconds. The CPU model and count come from /proc/cpuinfo where it exists.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

from analytic.calibration import PROBE_TIMES

LAUNCH_OPS = 200  # ops per window: ~1 ms of launches, far longer than the timer's resolution
WINDOWS = 9
LOOP_ITERATIONS = 20_000


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The host CPU's model name (first `model name` line), else what `platform` says."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _python_loop() -> int:
    """A fixed interpreter workload: calls, attribute and dict access, integer arithmetic."""
    table, total = {"a": 1}, 0
    for i in range(LOOP_ITERATIONS):
        total += table.get("a", 0) + (i & 7)
    return total


def python_loop_s(windows: int = WINDOWS) -> float:
    """Median seconds of the fixed pure-Python loop."""
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        _python_loop()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def launch_chain_s(torch, device: str = "cuda", windows: int = WINDOWS) -> float:
    """Median seconds per op of LAUNCH_OPS tiny in-place adds issued back to back (a launch chain with
    nothing to wait on: on a GPU the host's dispatch and launch cost; on a CPU, dispatch and the op)."""
    x = torch.zeros(8, device=device)
    for _ in range(LAUNCH_OPS):  # warm the dispatcher and the kernel's launch path
        x.add_(1.0)
    times = []
    for _ in range(windows):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(LAUNCH_OPS):
            x.add_(1.0)
        times.append((time.perf_counter() - start) / LAUNCH_OPS)
    if device == "cuda":
        torch.cuda.synchronize()
    return statistics.median(times)


def host_probe(torch=None, device: str = "cpu", when: str = "") -> dict:
    """This host: {cpu_model, cpus, python_loop_s, launch_s (with torch), launch_device, created}."""
    probe = {"cpu_model": cpu_model(), "cpus": os.cpu_count() or 0, "python_loop_s": python_loop_s()}
    if torch is not None:
        probe.update(launch_s=launch_chain_s(torch, device), launch_device=device)
    if when:
        probe["created"] = when
    return probe


def median_probe(probes: list[dict]) -> dict:
    """One probe for the runs of a lease (or a set): the median of each probe time they recorded."""
    return {key: float(statistics.median(p[key] for p in probes if key in p))
            for key in PROBE_TIMES if any(key in p for p in probes)}
