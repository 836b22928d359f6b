"""The results store: an append-only Parquet dataset, one file per run plus a JSON manifest.

Layout of a results directory (default `results/`; the bundled H100 data is `results/h100/`)::

    run-<run_id>.parquet   one row per measured point (schema below)
    run-<run_id>.json      manifest: run_id, command, start, end, device, gpu, gpu_name, env
                           (versions), sweep (targets, phases, batches, seqlens, options),
                           n_points, n_ok, status ("running", "complete", "interrupted", "failed"),
                           host (the host's CPU and launch speed, `perfbench.measure.host_probe`;
                           runs from 2026-12-07 on)

run_id is `<UTC time>-<4 hex>`, e.g. `20261123T211500Z-ab12`. A run rewrites its own Parquet file
(atomically, through a hidden temporary file) after every point, so a killed sweep loses at most
the point in flight; no run ever touches another run's files. `perfbench run --resume` skips the
points already present under the output directory. `load_results(path)` reads every run under a
directory, recursively.

Schema: one row per point (layer or whole model x phase x batch x seqlen x dtype x mode)

============================  ========  ===========================================================
column                        type      meaning
============================  ========  ===========================================================
run_id                        string    the run that measured the point
timestamp                     string    ISO-8601 UTC time the point finished
target_kind                   string    "layer" or "model"
name                          string    layer name ("mamba2") or model name ("transformer-8b")
phase                         string    "prefill" or "decode"
batch                         int64     sequences
seqlen                        int64     prompt length (prefill) or context length (decode)
dtype                         string    "bfloat16" (float32/float64 for CPU reference runs)
mode                          string    decode: "graph" (CUDA-graph replay) or "eager"; prefill "eager"
status                        string    "ok", "oom", "skipped" (estimated not to fit / unavailable)
                                        or "error"
reason                        string    why not ok; "" when ok
time_ms                       float64   median per-call time (model prefill: time to first token)
p10_ms, p90_ms                float64   10th / 90th percentile of the per-call times
mean_ms, std_ms               float64   mean and sample standard deviation
n_repeats                     int64     timed calls
peak_mem_bytes                int64     torch.cuda.max_memory_allocated over the point (0 on CPU)
tokens_per_s                  float64   decode: batch / time; prefill: batch * seqlen / time
tp                            int64     tensor-parallel degree (1)
device                        string    "cuda" or "cpu"
gpu                           string    short key: "h100", "h200", "a100", "cpu", ...
gpu_name, driver              string    from NVML
sm_clock_mhz_before/_after    float64   SM clock before and after the point
mem_clock_mhz_before/_after   float64   memory clock before and after the point
power_w, temperature_c        float64   read after the point
throttle_reasons              string    NVML clock-event reasons after the point, "|"-joined
torch_version, cuda_version,  string    versions ("" if absent)
mamba_ssm_version,
causal_conv1d_version,
flash_attn_version
attn_backend                  string    "flash", "cudnn", "efficient", "math", "flash_attn";
                                        "" when no attention layer ran
conv_backend                  string    "causal_conv1d" or "torch" for Mamba layers, else ""
nvtx                          bool      NVTX ranges were on
l2_flush                      bool      L2 was flushed before each timed call
nvtx_range                    string    e.g. "mamba2/decode/B=64/L=4096"
extra                         string    JSON: first-call time, GQA path, memory estimate, ...
============================  ========  ===========================================================
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.registry import Target, spec_from_table
from perfbench.errors import PerfbenchError, file_errors, writable_directory
from perfbench.measure.result_sets import find_set, read_set, set_manifests

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
SCHEMA = pa.schema([
    ("run_id", _S), ("timestamp", _S), ("target_kind", _S), ("name", _S), ("phase", _S),
    ("batch", _I), ("seqlen", _I), ("dtype", _S), ("mode", _S), ("status", _S), ("reason", _S),
    ("time_ms", _F), ("p10_ms", _F), ("p90_ms", _F), ("mean_ms", _F), ("std_ms", _F),
    ("n_repeats", _I), ("peak_mem_bytes", _I), ("tokens_per_s", _F), ("tp", _I), ("device", _S),
    ("gpu", _S), ("gpu_name", _S), ("driver", _S), ("sm_clock_mhz_before", _F),
    ("sm_clock_mhz_after", _F), ("mem_clock_mhz_before", _F), ("mem_clock_mhz_after", _F),
    ("power_w", _F), ("temperature_c", _F), ("throttle_reasons", _S), ("torch_version", _S),
    ("cuda_version", _S), ("mamba_ssm_version", _S), ("causal_conv1d_version", _S),
    ("flash_attn_version", _S), ("attn_backend", _S), ("conv_backend", _S), ("nvtx", _B),
    ("l2_flush", _B), ("nvtx_range", _S), ("extra", _S),
])
COLUMNS = tuple(SCHEMA.names)
STATUSES = ("ok", "oom", "skipped", "error")
# Identity of a point for --resume: the same point measured the same way on the same GPU.
POINT_KEY = ("target_kind", "name", "phase", "batch", "seqlen", "dtype", "mode", "gpu")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def empty_frame() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with file_errors(path):
        tmp.write_bytes(data)
        os.replace(tmp, path)


def validate_row(row: dict) -> None:
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"result row lacks columns {missing}")
    if row["status"] not in STATUSES:
        raise ValueError(f"status {row['status']!r} not in {STATUSES}")


class RunWriter:
    """Appends rows of one run; rewrites run-<id>.parquet and its manifest after each point."""

    def __init__(self, out_dir: Path, manifest: dict, run_id: str | None = None):
        self.out_dir = writable_directory(out_dir)
        self.run_id = run_id or new_run_id()
        self.rows: list[dict] = []
        self.manifest = {"run_id": self.run_id, "start": utc_now(), "end": None, "status": "running",
                         "n_points": 0, "n_ok": 0, **manifest}
        self._write_manifest()

    @property
    def parquet_path(self) -> Path:
        return self.out_dir / f"run-{self.run_id}.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / f"run-{self.run_id}.json"

    def append(self, row: dict) -> None:
        row = {**row, "run_id": self.run_id}
        validate_row(row)
        self.rows.append({c: row[c] for c in COLUMNS})
        self._write_table()
        self.manifest["n_points"] = len(self.rows)
        self.manifest["n_ok"] = sum(r["status"] == "ok" for r in self.rows)
        self._write_manifest()

    def close(self, status: str = "complete") -> None:
        self.manifest["status"] = status
        self.manifest["end"] = utc_now()
        self._write_manifest()

    def _write_table(self) -> None:
        table = pa.Table.from_pylist(self.rows, schema=SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _atomic_write_bytes(self.parquet_path, sink.getvalue().to_pybytes())

    def _write_manifest(self) -> None:
        _atomic_write_bytes(self.manifest_path, (json.dumps(self.manifest, indent=2, default=str) + "\n").encode())


def result_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))


class DamagedResultsWarning(UserWarning):
    """A results file that could not be read was skipped; the other runs loaded."""


def results_exist(path: str | Path) -> bool:
    """`path` is a results file or directory, or names a set of a results index."""
    return Path(path).exists() or find_set(path) is not None


def source_files(path: str | Path) -> list[Path]:
    """The files `load_results(path)` reads: an indexed set's packed file, then the run files."""
    found = find_set(path)
    return ([found.data_file] if found is not None else []) + result_files(Path(path))


def load_results(path: str | Path) -> pd.DataFrame:
    """Every run under `path` (a directory, searched recursively, one Parquet file, or
    results/<set> of a results index, whose packed rows come first) as one frame.

    An empty or missing-data directory gives an empty frame with the schema's columns. A file that
    is not readable Parquet is skipped with one DamagedResultsWarning naming it (the healthy runs
    load); the frame's `attrs["skipped"]` lists such files.
    """
    path = Path(path)
    packed = find_set(path)
    if not path.exists() and packed is None:
        raise PerfbenchError(f"no results at {path}")
    frames, skipped = [], []
    if packed is not None:
        _read_or_skip(packed.data_file, lambda: read_set(packed), frames, skipped)
    for file in result_files(path):
        _read_or_skip(file, lambda: pq.read_table(file).to_pandas(), frames, skipped)
    frame = _schema_frame(frames)
    frame.attrs["skipped"] = [str(f) for f in skipped]
    return frame


def _read_or_skip(file: Path, read, frames: list, skipped: list) -> None:
    try:
        frames.append(read())
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        skipped.append(file)
        warnings.warn(f"skipped damaged results file {file} ({type(exc).__name__})",
                      DamagedResultsWarning, stacklevel=3)


def _schema_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return empty_frame()
    frame = pd.concat(frames, ignore_index=True)
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    extras = [c for c in frame.columns if c not in COLUMNS]
    return frame[list(COLUMNS) + extras]


def run_manifests(path: str | Path) -> list[dict]:
    """The manifests of the runs under `path` (a packed set's, then run-*.json files); an unreadable
    manifest becomes {"run_id": ..., "error": ...} rather than stopping the others."""
    path = Path(path)
    packed = find_set(path)
    out = list(set_manifests(packed)) if packed is not None else []
    if path.is_dir():
        for file in sorted(path.rglob("run-*.json")):
            try:
                out.append(json.loads(file.read_text()))
            except (OSError, ValueError):
                out.append({"run_id": file.stem.removeprefix("run-"), "error": f"unreadable manifest {file.name}"})
    return out


def recorded_targets(path: str | Path) -> dict:
    """name -> models.registry.Target for the specs the runs under `path` recorded in their manifests
    (`sweep.specs`, written by `perfbench run`): what an imported, overridden or file-defined target
    was, so `compare` can price it without its config. A later run's spec wins a name."""
    path = Path(path)
    if path.is_file():
        try:
            manifests = [json.loads(path.read_text())]
        except (OSError, ValueError):
            manifests = []
    else:
        manifests = run_manifests(path)
    out: dict = {}
    for manifest in manifests:
        try:
            specs = manifest.get("sweep", {}).get("specs", {})
        except AttributeError:
            continue  # not a manifest this reader understands: the points are priced by name
        for name, entry in (specs or {}).items():
            out[name] = Target(entry["kind"], name, spec_from_table(entry["kind"], name, entry["spec"], "manifest"))
    return out


DEVICE_FAULT = "device fault: "  # reason prefix of a point whose CUDA error killed the context


def done_keys(path: Path, statuses=("ok", "oom", "skipped"), tp: int | None = None) -> set[tuple]:
    """POINT_KEY tuples already recorded under `path` with a final status (for --resume), at one
    tensor-parallel degree if `tp` is given.

    Errors are not final: a resumed sweep measures them again, except a device fault (an illegal
    address inside a library kernel faults again at the same point, and would stop every resume there).
    """
    path = Path(path)
    if not results_exist(path):
        return set()
    frame = load_results(path)
    if frame.empty:
        return set()
    keep = frame["status"].isin(statuses)
    keep |= (frame["status"] == "error") & frame["reason"].fillna("").str.startswith(DEVICE_FAULT)
    if tp is not None:
        keep &= frame["tp"].astype("Int64") == tp
    frame = frame[keep]
    return {point_key(row) for row in frame[list(POINT_KEY)].to_dict("records")}


def point_key(row: dict) -> tuple:
    return tuple(int(row[c]) if c in ("batch", "seqlen") else str(row[c]) for c in POINT_KEY)
