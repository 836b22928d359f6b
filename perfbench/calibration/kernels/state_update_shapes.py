"""The decode state update over its hyper-parameters: Mamba-2's head dim, d_state and groups (the SSD
spread's specs), and Mamba-1's d_state and d_inner (the scan spread's), each on rotated states as a
decode step finds them (out of L2). These fit the update's latency per wave of programs
(analytic.families.state_update)."""

from __future__ import annotations

from perfbench.calibration.bench import rotation
from perfbench.calibration.kernels.common import KernelBench
from perfbench.calibration.kernels.selective_scan_shapes import SPECS as SCAN_SPECS
from perfbench.calibration.kernels.ssd_shapes import SPECS as SSD_SPECS
from perfbench.calibration.kernels.state_update import mamba1_update, mamba2_update, state_bytes

NAME = "state_update_shapes"
CLASSES = (NAME,)
MAMBA2_SPECS = tuple(s for s in SSD_SPECS if s.chunk_size == 128)  # the chunk does not enter decode
MAMBA1_SPECS = SCAN_SPECS
BATCHES = (1, 6, 40)


def measure(bench: KernelBench) -> None:
    torch, timer = bench.torch, bench.timer
    for spec in MAMBA2_SPECS + MAMBA1_SPECS:
        make = (mamba2_update if spec.kind == "mamba2" else mamba1_update)(torch, spec)
        for b in BATCHES:
            run_all, copies = rotation(lambda b=b: make(b), state_bytes(spec, b))
            t = timer(run_all) / copies
            bench.add_spec(NAME, spec, {"phase": "decode", "batch": b, "seqlen": 1024,
                                        "ops": ["selective_state_update"], "time_s": t})
            bench.log(f"  {spec.kind} state_update d_inner={spec.d_inner} d_state={spec.d_state} b={b}: "
                      f"{t * 1e6:.1f} us")


def plan() -> list[dict]:
    """Every sample measure() takes, without its time."""
    return [{"spec": spec, "phase": "decode", "batch": b, "seqlen": 1024, "ops": ["selective_state_update"],
             "mode": "graph"} for spec in MAMBA2_SPECS + MAMBA1_SPECS for b in BATCHES]
