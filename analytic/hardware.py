"""GPU specs from vendor datasheets: the uncalibrated ceilings of the roofline.

These are peaks no kernel reaches (an H100 SXM runs large bf16 GEMMs near 780 TFLOP/s and device
copies near 3 TB/s, FIELD-NOTES.md); `analytic.calibration` replaces them with measured ceilings.
Sources: NVIDIA H100 Tensor Core GPU datasheet (SXM5: 989 TFLOP/s dense BF16, 67 TFLOP/s FP32,
3.35 TB/s HBM3, 80 GB, NVLink 900 GB/s), H200 datasheet (141 GB HBM3e at 4.8 TB/s, same compute),
A100 datasheet (SXM4 80GB: 312 TFLOP/s BF16, 19.5 TFLOP/s FP32, 2.039 TB/s, NVLink 600 GB/s).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.specs import SpecError

GiB = 1024**3


@dataclass(frozen=True)
class GPUSpec:
    key: str
    name: str
    peak_bf16_flops: float
    peak_fp32_flops: float
    mem_bw_bytes_s: float
    mem_bytes: float  # usable device memory
    l2_bytes: float
    sm_count: int
    nvlink_bw_bytes_s: float  # per GPU, one direction (ring all-reduce bus bandwidth ceiling)
    graph_kernel_s: float = 2.0e-6  # per-kernel cost inside a CUDA graph replay (launch gap + ramp)
    eager_kernel_s: float = 10.0e-6  # host cost per eager PyTorch op (dispatch + launch)
    allreduce_latency_s: float = 10.0e-6
    smem_per_sm_bytes: float = 228 * 1024  # shared memory per SM (H100/H200: 228 KB; A100: 164 KB)


GPUS: dict[str, GPUSpec] = {
    "h100": GPUSpec("h100", "NVIDIA H100 80GB HBM3 (SXM)", 989.4e12, 66.9e12, 3.35e12, 79.6 * GiB,
                    50e6, 132, 450e9),
    "h200": GPUSpec("h200", "NVIDIA H200 (SXM)", 989.4e12, 66.9e12, 4.8e12, 139.8 * GiB, 50e6, 132, 450e9),
    "a100": GPUSpec("a100", "NVIDIA A100-SXM4-80GB", 312e12, 19.5e12, 2.039e12, 79.2 * GiB, 40e6, 108, 300e9,
                    smem_per_sm_bytes=164 * 1024),
}

_NAME_HINTS = (("h200", "h200"), ("h100", "h100"), ("a100", "a100"))


def get_gpu(key: str) -> GPUSpec:
    if key not in GPUS:
        raise SpecError(f"unknown GPU {key!r} (known: {', '.join(GPUS)})")
    return GPUS[key]


def gpu_key_from_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; unknown names -> lower-cased first word after NVIDIA."""
    lowered = name.lower()
    for hint, key in _NAME_HINTS:
        if hint in lowered:
            return key
    words = lowered.replace("nvidia", "").split()
    return words[0] if words else "unknown"
