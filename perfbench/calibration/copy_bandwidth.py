"""Device-to-device copy bandwidth over sizes (bytes read + written per second): the HBM ceiling
every memory-bound op class starts its fit from (`copy_bandwidth_bytes_s`, `copy_curve`)."""

from __future__ import annotations

from perfbench.calibration.bench import Timer, randn, timed_seconds


def measure_copy(torch, timer: Timer, log) -> tuple[float, list]:
    curve = []
    for mib in (1, 4, 16, 64, 256, 1024, 2048):
        n = mib * 1024 * 1024 // 2
        src = randn(torch, n)
        dst = torch.empty_like(src)
        t = timer(lambda: dst.copy_(src))
        curve.append({"bytes": 2 * src.numel() * 2, "time_s": t})
        log(f"copy {mib:5d} MiB: {2 * src.numel() * 2 / t / 1e12:.3f} TB/s")
        del src, dst
    best = max(c["bytes"] / c["time_s"] for c in curve if c["bytes"] >= 256 * 2**20)
    return best, curve


def estimate_s(data: dict, ceil, ridge: float) -> float:
    """GPU seconds of the copy sizes, at their stored times."""
    return sum(timed_seconds(c["time_s"]) for c in data.get("copy_curve", []))
