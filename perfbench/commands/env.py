"""`perfbench env`: what is installed here and which kernels `perfbench run` will use."""

from __future__ import annotations

import json

import typer

from perfbench.errors import require
from perfbench.measure.host_probe import host_probe
from perfbench.measure.telemetry import GpuTelemetry, env_versions, gpu_key, sdpa_backends_enabled
from perfbench.output import print_table


def _importable(module: str, attr: str | None = None) -> bool:
    import importlib

    try:
        mod = importlib.import_module(module)
        return attr is None or getattr(mod, attr, None) is not None
    except Exception:  # noqa: BLE001 - a broken extension raises more than ImportError
        return False


def environment() -> dict:
    """Versions, GPU identity and the kernel path of each layer kind, as plain data."""
    torch = require("torch", "perfbench env")
    from models.torch_layers import conv_backend, default_attn_backend, module_version

    cuda = torch.cuda.is_available()
    info: dict = {"versions": env_versions()}
    info["versions"].update({"nvtx": module_version("nvtx"), "pynvml": module_version("pynvml")})
    if cuda:
        props = torch.cuda.get_device_properties(0)
        ident = GpuTelemetry(0).identity()
        info["gpu"] = {"name": ident["gpu_name"] or props.name, "key": gpu_key(props.name),
                       "driver": ident["driver"], "memory_gib": round(props.total_memory / 2**30, 1),
                       "sm_count": props.multi_processor_count,
                       "l2_mib": round(getattr(props, "L2_cache_size", 0) / 2**20, 1)}
    else:
        info["gpu"] = None
    info["host"] = host_probe(torch, "cuda" if cuda else "cpu")  # compare launch_s with a calibration's host_probes
    mamba = _importable("mamba_ssm")
    conv = conv_backend()
    state_update = _importable("mamba_ssm.ops.triton.selective_state_update", "selective_state_update")
    attn = default_attn_backend("cuda" if cuda else "cpu")
    kernels = {}
    if mamba:
        kernels["mamba prefill"] = ("mamba_inner_fn: selective_scan_cuda + causal_conv1d" if conv == "causal_conv1d"
                                    else "selective_scan_cuda + torch conv1d (no causal_conv1d)")
        kernels["mamba decode"] = ("causal_conv1d_update" if conv == "causal_conv1d" else "torch conv step") + \
            (" + selective_state_update (Triton)" if state_update else " + torch SSM step")
        kernels["mamba2 prefill"] = ("mamba_split_conv1d_scan_combined: causal_conv1d + Triton SSD + gated RMSNorm"
                                     if conv == "causal_conv1d" else "torch conv1d + mamba_chunk_scan_combined (Triton SSD)")
        kernels["mamba2 decode"] = kernels["mamba decode"]
    else:
        kernels["mamba, mamba2"] = "unavailable: mamba_ssm does not import (CPU reference layers only)"
    kernels["attention"] = (f"flash_attn {module_version('flash_attn')}" if attn == "flash_attn"
                            else f"torch SDPA, forced backend '{attn}' (--attn-backend to change)")
    kernels["attention decode (GQA)"] = "query heads folded per KV group, one SDPA call over the cache"
    kernels["norms (models)"] = "mamba_ssm Triton layer_norm_fn (add+norm fused)" if (mamba and cuda) else "torch"
    info["kernels"] = kernels
    if cuda:
        info["sdpa_global_switches"] = sdpa_backends_enabled()
        info["sdpa_available"] = {
            "flash": bool(getattr(torch.backends.cuda, "is_flash_attention_available", lambda: False)()),
            "cudnn": bool(torch.backends.cudnn.is_available()),
        }
    info["conv_backend"] = conv
    return info


def env_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Print the versions, the GPU and the kernel each layer will run (perfbench run's view)."""
    info = environment()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    import pandas as pd

    rows = [(key, value or "–") for key, value in info["versions"].items()]
    gpu = info["gpu"]
    rows.append(("gpu", "none (no CUDA): `perfbench run` needs --cpu-reference" if gpu is None else
                 f"{gpu['name']} ({gpu['key']}), {gpu['memory_gib']} GiB, {gpu['sm_count']} SMs, "
                 f"L2 {gpu['l2_mib']} MiB, driver {gpu['driver']}"))
    host = info["host"]
    rows.append(("host", f"{host['cpu_model']}, {host['cpus']} CPUs; launch {host['launch_s'] * 1e6:.2f} us an op "
                 f"({host['launch_device']}), Python loop {host['python_loop_s'] * 1e3:.2f} ms"))
    print_table(pd.DataFrame(rows, columns=["what", "version"]), "environment", fold=["version"],
                show_header=False)
    print_table(pd.DataFrame(list(info["kernels"].items()), columns=["layer", "kernel"]),
                "kernels perfbench run will use", fold=["kernel"], show_header=False)
