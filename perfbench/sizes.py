"""Parsing of the size lists the CLI takes: `--batch 1,8,64`, `--seqlen 1k,4k,128K`."""

from __future__ import annotations

import re

from perfbench.errors import PerfbenchError

_SIZE = re.compile(r"^\s*(\d+)\s*([kKmM]?)\s*$")
_MULT = {"": 1, "k": 1024, "m": 1024 * 1024}
# The largest batch or length taken: 2^31 - 1. Far past any GPU's memory (one bf16 token of a 4096-wide
# model at this batch is 16 TiB), and small enough that batch x length x width stays inside the int64
# and float64 arithmetic of the cost model (2^70 wrapped to -2^63 there and predicted a negative batch).
MAX_SIZE = 2**31 - 1


def parse_size(text: str) -> int:
    """'4k' -> 4096, '128K' -> 131072, '512' -> 512; zero, negative or junk is an error."""
    match = _SIZE.match(text)
    if not match:
        raise PerfbenchError(f"not a size: {text!r} (use e.g. 512, 4k, 128K)")
    value = int(match.group(1)) * _MULT[match.group(2).lower()]
    if value <= 0:
        raise PerfbenchError(f"sizes must be positive, got {text!r}")
    if value > MAX_SIZE:
        raise PerfbenchError(f"size {text.strip()!r} is too large (at most {MAX_SIZE:,}, i.e. 2^31 - 1)")
    return value


def parse_sizes(text: str) -> list[int]:
    """A comma-separated list of sizes, order kept, duplicates dropped."""
    if text is None or not str(text).strip():
        raise PerfbenchError("empty size list")
    out: list[int] = []
    for part in str(text).split(","):
        value = parse_size(part)
        if value not in out:
            out.append(value)
    return out


def parse_names(text: str) -> list[str]:
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise PerfbenchError("empty name list")
    return names


def format_size(value: int) -> str:
    """4096 -> '4K', 512 -> '512' (for labels and NVTX range names)."""
    if value >= 1024 and value % 1024 == 0:
        return f"{value // 1024}K"
    return str(value)
