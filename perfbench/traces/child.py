"""Child process of `perfbench trace --torch-profiler`: `perfbench run` under torch.profiler.

    python -m perfbench.traces.child --trace OUT.json -- <perfbench run arguments>

Every harness range (`perfbench.measure.nvtx_ranges.measured_range(name)`) is also entered as
`torch.profiler.record_function(name)`, so the Chrome trace carries the NVTX names. The harness looks
`nvtx_ranges.measured_range` up on the module at each call, so the patch takes effect whenever it is made.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from perfbench.cli import app
from perfbench.errors import USER_ERRORS
from perfbench.measure import nvtx_ranges


def patch_measured_range(module) -> None:
    """Wrap `module.measured_range(name, ...)` in `torch.profiler.record_function(name)`."""
    from torch.profiler import record_function

    original = module.measured_range

    @contextlib.contextmanager
    def measured_range(name, *args, **kwargs):
        scope = record_function(str(name)) if name is not None else contextlib.nullcontext()
        with scope:
            with original(name, *args, **kwargs) as value:
                yield value

    measured_range.__wrapped__ = original
    module.measured_range = measured_range


def profile_call(function, trace: Path) -> int:
    """Run `function()` under torch.profiler (CPU, plus CUDA when present) and export the trace."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        code = function()
    trace = Path(trace)
    trace.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace))
    return code


def _run_cli(run_args: list[str]) -> int:
    try:
        app(args=["run", *run_args], standalone_mode=False)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m perfbench.traces.child")
    parser.add_argument("--trace", type=Path, required=True, help="Chrome trace JSON to write")
    options = parser.parse_args(argv[:split])

    patch_measured_range(nvtx_ranges)
    return profile_call(lambda: _run_cli(argv[split + 1:]), options.trace)


if __name__ == "__main__":
    raise SystemExit(main())
