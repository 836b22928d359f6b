"""Hand-made results rows with the results-store contract's columns (for compare/dashboard tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RUN_ID = "20261123T211500Z-ab12"


def row(name: str, phase: str, batch: int, seqlen: int, time_ms: float, *, kind: str = "layer",
        mode: str | None = None, status: str = "ok", gpu: str = "h100", run_id: str = RUN_ID,
        spread: float = 0.02) -> dict:
    """One measured point with every contract column; p10/p90 at +-spread around the median."""
    mode = mode or ("graph" if phase == "decode" else "eager")
    ok = status == "ok"
    tokens = batch if phase == "decode" else batch * seqlen
    return {
        "run_id": run_id, "timestamp": "2026-11-23T21:15:00Z", "target_kind": kind, "name": name,
        "phase": phase, "batch": batch, "seqlen": seqlen, "dtype": "bfloat16", "mode": mode,
        "status": status, "reason": "" if ok else "out of memory",
        "time_ms": time_ms if ok else float("nan"),
        "p10_ms": time_ms * (1 - spread) if ok else float("nan"),
        "p90_ms": time_ms * (1 + spread) if ok else float("nan"),
        "mean_ms": time_ms if ok else float("nan"), "std_ms": time_ms * spread / 2 if ok else float("nan"),
        "n_repeats": 50, "peak_mem_bytes": 10 ** 9 * batch,
        "tokens_per_s": tokens / (time_ms / 1e3) if ok else float("nan"),
        "tp": 1, "device": "cuda", "gpu": gpu, "gpu_name": f"NVIDIA {gpu.upper()} 80GB HBM3",
        "driver": "560.35.03", "sm_clock_mhz_before": 1980.0, "sm_clock_mhz_after": 1980.0,
        "mem_clock_mhz_before": 2619.0, "mem_clock_mhz_after": 2619.0, "power_w": 400.0,
        "temperature_c": 50.0, "throttle_reasons": "", "torch_version": "2.11.0",
        "cuda_version": "12.8", "mamba_ssm_version": "2.3.2", "causal_conv1d_version": "1.7.0",
        "flash_attn_version": "", "attn_backend": "flash" if "attention" in name else "",
        "conv_backend": "causal_conv1d" if "mamba" in name else "", "nvtx": True, "l2_flush": True,
        "nvtx_range": f"{name}/{phase}/B={batch}/L={seqlen}", "extra": "{}",
    }


def write_run(directory: Path, rows: list[dict], run_id: str = RUN_ID) -> Path:
    """One run as the store lays it out: run-<id>.parquet plus its manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    path = directory / f"run-{run_id}.parquet"
    frame.to_parquet(path, index=False)
    manifest = {"run_id": run_id, "command": "perfbench run --layer all", "device": "cuda",
                "start": "2026-11-23T21:15:00Z", "end": "2026-11-23T21:45:00Z",
                "n_points": len(rows), "status": "complete"}
    (directory / f"run-{run_id}.json").write_text(json.dumps(manifest))
    return path


def synthetic_sweep(gpu: str = "h100", run_id: str = RUN_ID) -> list[dict]:
    """A small but complete-looking sweep: every layer and paper model, both phases, both modes.

    Times follow a plain bytes-and-flops shape (not the analytic model), so tests never depend on
    how accurate the model is.
    """
    from models.registry import BUILTIN_LAYERS, PAPER_MODELS

    rows = []
    targets = [("layer", n) for n in BUILTIN_LAYERS] + [("model", n) for n in PAPER_MODELS]
    for kind, name in targets:
        scale = 56.0 if kind == "model" else 1.0
        for batch in (1, 8, 64):
            for seqlen in (1024, 4096, 16384):
                prefill = scale * (0.05 + 2e-6 * batch * seqlen)
                rows.append(row(name, "prefill", batch, seqlen, prefill, kind=kind, gpu=gpu,
                                run_id=run_id))
                for mode, launch in (("graph", 0.02), ("eager", 0.15)):
                    decode = scale * (launch + 0.03 + 1e-7 * batch * seqlen * ("attention" in name
                                                                               or "transformer" in name))
                    rows.append(row(name, "decode", batch, seqlen, decode, kind=kind, mode=mode,
                                    gpu=gpu, run_id=run_id))
        rows.append(row(name, "decode", 128, 131072, 1.0, kind=kind, status="oom", gpu=gpu,
                        run_id=run_id))
    return rows
