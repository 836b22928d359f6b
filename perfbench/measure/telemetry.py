"""What the machine was doing while a point was measured: GPU identity, clocks, power, heat, throttling,
and the software versions that decide which kernels ran.

pynvml (nvidia-ml-py) is read before and after every point; where it is missing or has no GPU the
fields are empty/NaN rather than an error, so CPU runs and tests work the same way.
"""

from __future__ import annotations

import math
import platform

# Bits of nvmlDeviceGetCurrentClocksEventReasons (nvml.h, "clocks event reasons").
THROTTLE_BITS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}

GPU_KEYS = (("h200", "h200"), ("h100", "h100"), ("a100", "a100"), ("l40s", "l40s"), ("a10", "a10"))


def gpu_key(name: str) -> str:
    """Short key the analytic model uses: 'NVIDIA H100 80GB HBM3' -> 'h100'; '' or CPU -> 'cpu'."""
    lowered = (name or "").lower()
    if not lowered or lowered == "cpu":
        return "cpu"
    for needle, key in GPU_KEYS:
        if needle in lowered:
            return key
    words = [w for w in lowered.replace("nvidia", "").split() if w]
    return words[0] if words else "other"


def throttle_names(mask: int) -> str:
    """'sw_power_cap|hw_slowdown' for a reasons bitmask; '' when nothing throttles."""
    return "|".join(name for bit, name in THROTTLE_BITS.items() if mask & bit)


NO_READING = {"sm_clock_mhz": math.nan, "mem_clock_mhz": math.nan, "power_w": math.nan,
              "temperature_c": math.nan, "throttle_reasons": ""}  # a snapshot without NVML


class GpuTelemetry:
    """pynvml handle for one GPU; every read returns NaN/'' when NVML is unavailable."""

    def __init__(self, index: int = 0, enabled: bool = True):
        self._nvml = None
        self._handle = None
        if not enabled:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - no driver, no GPU, no package
            self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def _read(self, fn, *args, default=math.nan):
        if self._nvml is None:
            return default
        try:
            return fn(self._handle, *args)
        except Exception:  # noqa: BLE001 - a query the GPU does not support
            return default

    def identity(self) -> dict:
        if self._nvml is None:
            return {"gpu_name": "", "driver": ""}
        nv = self._nvml
        name = self._read(nv.nvmlDeviceGetName, default="")
        try:
            driver = nv.nvmlSystemGetDriverVersion()
        except Exception:  # noqa: BLE001
            driver = ""
        as_text = (lambda v: v.decode() if isinstance(v, bytes) else str(v))
        return {"gpu_name": as_text(name), "driver": as_text(driver)}

    def snapshot(self) -> dict:
        """Clocks (MHz), power (W), temperature (C), throttle reasons, now."""
        if self._nvml is None:
            return dict(NO_READING)
        nv = self._nvml
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons")
        mask = self._read(reasons_fn, default=0)
        power_mw = self._read(nv.nvmlDeviceGetPowerUsage)
        return {
            "sm_clock_mhz": float(self._read(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM)),
            "mem_clock_mhz": float(self._read(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_MEM)),
            "power_w": float(power_mw) / 1e3,
            "temperature_c": float(self._read(nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)),
            "throttle_reasons": throttle_names(int(mask)) if isinstance(mask, int) else "",
        }


def env_versions() -> dict:
    """Versions that decide the kernels: torch, CUDA, mamba-ssm, causal-conv1d, flash-attn."""
    from models.torch_layers import module_version

    import torch

    return {
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "mamba_ssm_version": module_version("mamba_ssm"),
        "causal_conv1d_version": module_version("causal_conv1d"),
        "flash_attn_version": module_version("flash_attn"),
        "triton_version": module_version("triton"),
        "python_version": platform.python_version(),
    }


def sdpa_backends_enabled() -> dict:
    """torch's global SDPA switches (which backends SDPA may pick when not forced)."""
    import torch

    cuda = torch.backends.cuda
    out = {}
    for name, fn in (("flash", "flash_sdp_enabled"), ("efficient", "mem_efficient_sdp_enabled"),
                     ("cudnn", "cudnn_sdp_enabled"), ("math", "math_sdp_enabled")):
        getter = getattr(cuda, fn, None)
        out[name] = bool(getter()) if getter else False
    return out
