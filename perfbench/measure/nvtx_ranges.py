"""NVTX ranges around measured regions, so a trace reads `mamba2/decode/B=64/L=4096`.

Contract (the trace helper parses these): domain "perfbench"; one range per measured call, named
`<name>/<phase>/B=<batch>/L=<seqlen>` with integer batch and seqlen. Warm-up calls get no range.
A no-op when the `nvtx` package is missing or ranges are switched off (`--no-nvtx`), so the
overhead of the ranges can be measured as on vs off.
"""

from __future__ import annotations

import contextlib
import importlib

DOMAIN = "perfbench"


def range_name(name: str, phase: str, batch: int, seqlen: int) -> str:
    return f"{name}/{phase}/B={int(batch)}/L={int(seqlen)}"


def nvtx_module():
    """The `nvtx` package, or None where it is not installed."""
    try:
        return importlib.import_module("nvtx")
    except ImportError:
        return None


@contextlib.contextmanager
def measured_range(name: str, enabled: bool = True):
    """push_range/pop_range in domain "perfbench" around the block (no-op without nvtx)."""
    module = nvtx_module() if enabled else None
    if module is None:
        yield
        return
    module.push_range(message=name, domain=DOMAIN)
    try:
        yield
    finally:
        module.pop_range(domain=DOMAIN)
