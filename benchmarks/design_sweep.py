"""Time `perfbench design`'s sweep: 100 designs x 4 context lengths (the issue's target: under 1 s on a CPU).

    PYTHONPATH=. python3 benchmarks/design_sweep.py [--calibration none|default] [--repeats 5]

Prints the median wall time of `analytic.design.design_sweep` over repeats, with the bundled H100
calibration (default) or the datasheet roofline, after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time

from analytic.design import design_models, design_sweep
from models.registry import get_model

SEQLENS = [1024, 4096, 16384, 65536]
BATCHES = [1, 64]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = get_model("mamba2-hybrid-8b")
    designs = design_models(base, list(range(25)), ["mamba2", "mamba3", "gdn", "mamba"])
    design_sweep(designs[:4], SEQLENS, BATCHES, calibration=args.calibration)  # imports, calibration file cache
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        frame = design_sweep(designs, SEQLENS, BATCHES, calibration=args.calibration)
        times.append(time.perf_counter() - start)
    print(f"{len(designs)} designs x {len(SEQLENS)} lengths ({len(frame)} rows, calibration "
          f"{args.calibration}): median {statistics.median(times) * 1e3:.0f} ms over {args.repeats} "
          f"(min {min(times) * 1e3:.0f}, max {max(times) * 1e3:.0f})")


if __name__ == "__main__":
    main()
