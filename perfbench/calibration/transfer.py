"""Kernel families carried from a calibration of another GPU with the same SMs.

The H100 SXM and the H200 are the same GH100 die (132 SMs at up to 1.98 GHz, the same 228 KB of shared
memory per SM); the H200 has more and faster HBM. A kernel family that one of them measured and the
other did not (Mamba-3's and Gated DeltaNet's, first timed on an H100) would otherwise run on the other
at its class's ceilings, which another kernel set. What its fit holds is mostly the SM's: launch floor,
host dispatch, FLOP rate, a chunk's latency, the programs an SM holds. Only its byte ceiling is the
memory's, so that one is scaled by the two files' measured copy bandwidths.

A carried family sits in `transferred_classes` (with where it came from), and the fit uses it only while
this file has no samples of that family: a family measured here replaces it.
"""

from __future__ import annotations

from analytic.fit import samples_by_family
from analytic.hardware import get_gpu
from perfbench.errors import PerfbenchError

SECTION = "transferred_classes"
SM_TERMS_NOTE = "per-SM terms as fitted there; bw_bytes_s scaled by the copy-bandwidth ratio"


def transferred_classes(data: dict, other: dict, source: str, families=None) -> dict:
    """`data` with the kernel families `other` fitted and `data` has no samples of (or `families`, when
    given) carried into its `transferred_classes`. Refuses GPUs whose SMs differ."""
    here, there = get_gpu(data["gpu"]), get_gpu(other["gpu"])
    if (here.sm_count, here.smem_per_sm_bytes) != (there.sm_count, there.smem_per_sm_bytes):
        raise PerfbenchError(f"{source}: a {other['gpu']} has other SMs than a {data['gpu']} "
                             f"({there.sm_count} vs {here.sm_count}); its kernel families do not carry over")
    measured_here = set(samples_by_family(data.get("samples", {})))
    fitted_there = set(other.get("op_classes", {})) & set(samples_by_family(other.get("samples", {})))
    wanted = set(families) if families else fitted_there - measured_here
    missing = wanted - fitted_there
    if missing:
        raise PerfbenchError(f"{source} has no fitted samples of {', '.join(sorted(missing))}")
    ratio = float(data["copy_bandwidth_bytes_s"]) / float(other["copy_bandwidth_bytes_s"])
    carried = {}
    for family in sorted(wanted):
        params = dict(other["op_classes"][family])
        params["bw_bytes_s"] = float(params["bw_bytes_s"]) * ratio
        carried[family] = params
    provenance = {**data.get("provenance", {}),
                  SECTION: {"from": source, "gpu": other["gpu"], "created": other.get("created", ""),
                            "families": sorted(carried), "how": SM_TERMS_NOTE}}
    return {**data, SECTION: {**data.get(SECTION, {}), **carried}, "provenance": provenance}


def with_transferred(classes: dict, data: dict) -> dict:
    """Fitted `classes` plus each carried family this file did not fit from its own samples."""
    return {**{k: dict(v) for k, v in data.get(SECTION, {}).items() if k not in classes}, **classes}
