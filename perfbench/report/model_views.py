"""Whole-model views over predictions and results: grids, memory, capacity, decode speedup.

Issue 7 asks for the paper's four 8B models side by side: decode step and tokens/s over context
and batch, memory (weights, KV cache vs SSM state), the largest batch that fits, and the
Mamba-2-Hybrid vs Transformer decode speedup beside the paper's "up to 8x". These helpers build
the tidy frames the report and the dashboard plot.
"""

from __future__ import annotations

import pandas as pd

from analytic.hardware import get_gpu
from analytic.memory import max_batch, memory_footprint
from analytic.predict import predict
from models.registry import BUILTIN_LAYERS, get_model
from perfbench.sizes import format_size

HYBRID, TRANSFORMER = "mamba2-hybrid-8b", "transformer-8b"
BATCHES = (1, 8, 32, 64, 128)
CONTEXTS = (1024, 4096, 16384, 32768, 131072)


def predict_models(models, phase: str, batches, contexts, gpu: str, calibration="default",
                   graphs: bool = True) -> pd.DataFrame:
    """Predicted rows for each model (a name or ModelSpec) over batches x contexts."""
    frames = [predict(model, phase, list(batches), list(contexts), gpu=gpu, calibration=calibration,
                      graphs=graphs) for model in models]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def memory_frame(models, batch: int, contexts, phase: str = "decode") -> pd.DataFrame:
    """Bytes of weights, KV cache, SSM state and activations per model and context."""
    rows = []
    for model in models:
        spec = get_model(model) if isinstance(model, str) else model
        for context in contexts:
            parts = memory_footprint(spec, batch, context, phase=phase)
            rows.append({"name": spec.name, "batch": batch, "seqlen": int(context),
                         **{k: float(v) for k, v in parts.items()}})
    return pd.DataFrame(rows)


def max_batch_frame(models, contexts, gpu: str) -> pd.DataFrame:
    """Largest decode batch that fits in the GPU's memory, per model (rows) and context (columns)."""
    spec_gpu = get_gpu(gpu)
    table = {}
    for model in models:
        spec = get_model(model) if isinstance(model, str) else model
        table[spec.name] = {format_size(int(c)): max_batch(spec, int(c), spec_gpu) for c in contexts}
    return pd.DataFrame(table).T


def decode_speedup(frame: pd.DataFrame, fast: str = HYBRID, base: str = TRANSFORMER) -> pd.DataFrame:
    """tokens/s of `fast` over `base` at the same (batch, seqlen); rows only where both exist.

    `fits_fast` / `fits_base` say whether each model fits the GPU there (the predictions' `fits`
    column; measured points ran, so they fit): a speedup where one does not fit is not a speedup.
    """
    columns = ["batch", "seqlen", "speedup", "fits_fast", "fits_base"]
    if frame.empty or not {fast, base} <= set(frame["name"]):
        return pd.DataFrame(columns=columns)
    frame = frame.assign(fits=frame["fits"].astype(bool) if "fits" in frame else True)
    cols = ["batch", "seqlen", "tokens_per_s", "fits"]
    a = frame[frame["name"] == fast][cols]
    b = frame[frame["name"] == base][cols]
    both = a.merge(b, on=["batch", "seqlen"], suffixes=("_fast", "_base"))
    both["speedup"] = both["tokens_per_s_fast"] / both["tokens_per_s_base"]
    return both.sort_values(["batch", "seqlen"]).reset_index(drop=True)


def capacity_speedup(contexts, gpu: str, calibration="default", fast: str = HYBRID,
                     base: str = TRANSFORMER) -> pd.DataFrame:
    """Predicted speedup when each model decodes at its own largest batch that fits.

    This is the throughput comparison behind "up to 8x": a smaller cache lets the hybrid hold
    more sequences, not only step faster per sequence.
    """
    spec_gpu = get_gpu(gpu)
    rows = []
    for context in contexts:
        batches = {name: max_batch(get_model(name), int(context), spec_gpu) for name in (fast, base)}
        if min(batches.values()) < 1:
            continue
        rate = {name: float(predict(name, "decode", [b], [int(context)], gpu=gpu,
                                    calibration=calibration)["tokens_per_s"].iloc[0])
                for name, b in batches.items()}
        rows.append({"seqlen": int(context), "batch_hybrid": batches[fast],
                     "batch_transformer": batches[base], "speedup": rate[fast] / rate[base]})
    return pd.DataFrame(rows, columns=["seqlen", "batch_hybrid", "batch_transformer", "speedup"])


def measured_models(points: pd.DataFrame, phase: str) -> pd.DataFrame:
    """Measured whole-model ok rows of one phase (an empty frame when there are none)."""
    if points.empty or "target_kind" not in points.columns:
        return pd.DataFrame(columns=["name", "batch", "seqlen", "time_ms", "tokens_per_s"])
    rows = points[(points["target_kind"] == "model") & (points["phase"] == phase)]
    return rows.reset_index(drop=True)


def measured_max_batch(frame: pd.DataFrame) -> pd.DataFrame:
    """Largest batch measured ok per model and context (decode), from raw results rows."""
    rows = frame[(frame.get("target_kind") == "model") & (frame["phase"] == "decode")
                 & (frame["status"] == "ok")] if not frame.empty else frame
    if rows.empty:
        return pd.DataFrame()
    table = rows.groupby(["name", "seqlen"])["batch"].max().unstack("seqlen").astype("Int64")
    table.columns = [format_size(int(c)) for c in table.columns]
    return table


def layer_names(spec) -> dict[str, int]:
    """How many of each built-in layer a model stacks (its mixers matched to BUILTIN_LAYERS)."""
    counts: dict[str, int] = {}
    for layer in spec.layers:
        name = next((n for n, s in BUILTIN_LAYERS.items() if s == layer), None)
        if name is None:
            return {}
        counts[name] = counts.get(name, 0) + 1
    return counts


def sum_of_layers(points: pd.DataFrame, model: str, phase: str = "decode") -> pd.DataFrame:
    """Measured whole-model time vs the sum of its measured layers at the same points.

    The gap is what composition leaves out or adds (norms, residuals, embedding, LM head, and
    launch gaps between layers); worth knowing. Rows only where every layer was measured.
    """
    columns = ["batch", "seqlen", "model_ms", "layers_ms", "model_over_layers"]
    counts = layer_names(get_model(model))
    ok = points[points["phase"] == phase] if not points.empty else points
    whole = ok[(ok["target_kind"] == "model") & (ok["name"] == model)] if not ok.empty else ok
    if whole.empty or not counts:
        return pd.DataFrame(columns=columns)
    layers = ok[(ok["target_kind"] == "layer") & ok["name"].isin(counts)]
    per_point = layers.pivot_table(index=["batch", "seqlen"], columns="name", values="time_ms", aggfunc="last")
    if not set(counts) <= set(per_point.columns):
        return pd.DataFrame(columns=columns)
    per_point = per_point.dropna(subset=list(counts))
    summed = sum(per_point[name] * n for name, n in counts.items()).rename("layers_ms").reset_index()
    out = whole[["batch", "seqlen", "time_ms"]].rename(columns={"time_ms": "model_ms"}).merge(
        summed, on=["batch", "seqlen"])
    out["model_over_layers"] = out["model_ms"] / out["layers_ms"]
    return out[columns].sort_values(["batch", "seqlen"]).reset_index(drop=True)
