"""Elementwise passes (torch add and relu) over sizes: the class's launch floor and HBM rate."""

from __future__ import annotations

from analytic.ops import ELEMENTWISE
from perfbench.calibration.bench import randn
from perfbench.calibration.kernels.common import KernelBench

NAME = "elementwise"
CLASSES = (ELEMENTWISE,)
ELEMENTS = (1 << 12, 1 << 16, 1 << 20, 3 << 20, 1 << 23, 1 << 25, 3 << 25)


def measure(bench: KernelBench) -> None:
    torch, timer = bench.torch, bench.timer
    for elems in ELEMENTS:
        x = randn(torch, elems)
        y = randn(torch, elems)
        t = timer(lambda: torch.add(x, y))
        bench.add(ELEMENTWISE, {"class": ELEMENTWISE, "name": "add", "flops": elems,
                                "bytes": 3 * 2 * elems, "kernels": 1, "time_s": t})
        t = timer(lambda: torch.relu(x))
        bench.add(ELEMENTWISE, {"class": ELEMENTWISE, "name": "relu", "flops": elems,
                                "bytes": 2 * 2 * elems, "kernels": 1, "time_s": t})
    bench.log(f"  elementwise: {bench.count(ELEMENTWISE)} samples")
