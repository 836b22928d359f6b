"""Calibration files: measured ceilings and per-op-class efficiencies for one GPU.

Written by `perfbench calibrate` from microbenchmarks (never from the evaluation sweep), read by
the cost model. JSON, versioned, with provenance. Fields:

    format            "perfbench-calibration"
    version           1
    gpu               short key ("h100", "h200", ...) — must match the GPU it is used for
    gpu_name          what the driver reported
    created           ISO timestamp (UTC)
    provenance        {torch, cuda, driver, mamba_ssm, causal_conv1d, command, ...}
    copy_bandwidth_bytes_s   device-to-device copy, bytes read + written per second (large copies)
    gemm_peak_flops          best bf16 GEMM rate measured over the grid
    gemm                     list of {m, n, k, time_s}: the bf16 GEMM grid (decode to prefill M)
    launch                   {graph_kernel_s, eager_kernel_s}: per-kernel cost in a CUDA graph
                             replay and per eager PyTorch op
    op_classes               {class: {t0_s, bw_bytes_s, flops_s, ...}} fitted per op class from
                             its kernels run alone (see analytic/efficiency.py for each term)
    samples                  {class: [{...measured point...}]} the raw microbenchmark points
    allreduce                optional {bus_bw_bytes_s, latency_s, n_gpus}
    power                    optional {idle_w, limit_w, gemm_burst_speedup, ...}: the board's idle
                             power, its enforced power limit, and how much faster a big GEMM runs
                             between idle gaps than back to back at the limit (analytic/efficiency.py)
    writeback                optional {dirty_bytes, bw_bytes_s, samples}: how many stored bytes L2
                             still holds dirty after a kernel, and the rate at which a following
                             weight-streaming GEMM writes them back (samples: {written_bytes, excess_s})
    gemm_unaligned           optional list of {m, n, k, layout, align_bytes, time_s}: bf16 GEMMs that lay the
                             tokens out as a leading dimension (analytic.ops.LD_LAYOUTS: Mamba-1's in_proj,
                             dt_proj and out_proj, all at B*L), 16-byte aligned (the baseline) and not
                             (cuBLAS then runs slower kernels)
    gemm_relu_input          optional list of {m, n, k, dense_s, relu_s}: bf16 GEMMs whose input is a ReLU's
                             output (the MLP's fc2), power-capped on the grid's dense input and on a squared
                             ReLU's half-zero one (perfbench/calibration/gemm_relu_input.py)
    step                     optional {base_s, kernel_s, cold_kernel_s, samples}: what a decode step's CUDA
                             graph adds to its kernels' calibrated times when the GPU is the bottleneck
                             (perfbench/calibration/step.py; samples: {chain, kernels, cold_kernels, sum_s, step_s})
    sustained                optional {elapsed_s, slowdown, call_s}: how much slower a compute-bound GEMM
                             runs the longer it has held the board at its power limit, relative to the
                             state the GEMM grid is timed in (perfbench/calibration/sustained.py)
    host_samples             optional {"host/name/phase" | "host_wall/name/phase": [s, ...]}: every window
                             of each host launch chain (a layer's, the models' add + norm's, a built-in
                             model's whole); `launch` holds their median (perfbench/calibration/host.py)
    l2_resident              optional {samples: [{bytes, warm_s, cold_s}], resident: [...]}: a decode GEMV of
                             `bytes` of weights per call in a graph replayed back to back, on one weight
                             (resident while it fits in L2) and on rotated copies (cold), and how resident
                             each working set stayed (perfbench/calibration/l2_resident.py)
    host_probes              optional [{cpu_model, cpus, python_loop_s, launch_s, launch_device, created,
                             chains?}]: the host each pooled lease's chains were timed on
                             (perfbench/measure/host_probe.py); `chains` ("mamba3/prefill", ...) where the
                             lease timed only those; a chain's leases' median over a run's probe is that
                             chain's host-speed factor (analytic/host_chain.py)
    uncertainty              optional {classes: {"<term class>/<phase>": {q10, q50, q90, n}}, sets: [...],
                             created}: percentiles of log(measured / predicted) per term class (an op class,
                             or step / host / eager / all) over never-fitted held-out result sets, and their
                             share-weighted point count n; leave_one_out: {interpolated, extrapolated}
                             quantiles of the GEMM grid's shapes each predicted without its own samples
                             (perfbench/calibration/uncertainty.py; read by analytic/uncertainty.py)
"""

from __future__ import annotations

import gzip
import json
import zlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from analytic.ops import LD_LAYOUTS, OP_CLASSES
from models.specs import SpecError

FORMAT = "perfbench-calibration"
VERSION = 1
STEP_KEYS = ("base_s", "kernel_s", "cold_kernel_s")
REQUIRED = ("gpu", "copy_bandwidth_bytes_s", "gemm_peak_flops", "gemm", "launch", "op_classes")
# Term classes of a prediction interval (analytic/uncertainty.py): the op classes, a decode graph's step
# overhead, the host chain beyond the GPU (or a host-bound point), an eager decode step, and every point.
STEP_TERM, HOST_TERM, EAGER_TERM, POOLED_TERM = "step", "host", "eager", "all"
UNCERTAINTY_TERMS = OP_CLASSES + (STEP_TERM, HOST_TERM, EAGER_TERM, POOLED_TERM)
UNCERTAINTY_PHASES = ("prefill", "decode")


class CalibrationError(SpecError):
    """A calibration file that is missing, corrupt, or for another GPU (one-line message)."""


@dataclass(frozen=True)
class Calibration:
    gpu: str
    gpu_name: str
    copy_bandwidth_bytes_s: float
    gemm_peak_flops: float
    gemm: tuple  # of (m, n, k, time_s)
    launch: dict
    op_classes: dict
    created: str = ""
    provenance: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    allreduce: dict = field(default_factory=dict)
    source: str = ""
    power: dict = field(default_factory=dict)
    writeback: dict = field(default_factory=dict)
    step: dict = field(default_factory=dict)
    gemm_unaligned: tuple = ()  # of (m, n, k, layout, align_bytes, time_s)
    gemm_relu_input: tuple = ()  # of (m, n, k, dense_s, relu_s)
    sustained: dict = field(default_factory=dict)  # {elapsed_s: [...], slowdown: [...], call_s}
    uncertainty: dict = field(default_factory=dict)  # {classes: {key: {q10, q50, q90, n}}, sets, created}
    l2_resident: dict = field(default_factory=dict)  # {samples: [{bytes, warm_s, cold_s}], resident: [...]}
    host_samples: dict = field(default_factory=dict)  # {"host/name/phase": (s, ...)}: every window of each chain
    host_probes: tuple = ()  # of {launch_s, python_loop_s, cpu_model, ...}: the hosts the chains were timed on

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "gpu": self.gpu, "gpu_name": self.gpu_name,
            "created": self.created, "provenance": self.provenance,
            "copy_bandwidth_bytes_s": self.copy_bandwidth_bytes_s,
            "gemm_peak_flops": self.gemm_peak_flops,
            "gemm": [dict(m=m, n=n, k=k, time_s=t) for m, n, k, t in self.gemm],
            "launch": self.launch, "op_classes": self.op_classes, "samples": self.samples,
            "allreduce": self.allreduce, **({"power": self.power} if self.power else {}),
            **({"writeback": self.writeback} if self.writeback else {}),
            **({"step": self.step} if self.step else {}),
            **({"gemm_unaligned": [dict(m=m, n=n, k=k, layout=lay, align_bytes=a, time_s=t)
                                   for m, n, k, lay, a, t in self.gemm_unaligned]}
               if self.gemm_unaligned else {}),
            **({"gemm_relu_input": [dict(m=m, n=n, k=k, dense_s=d, relu_s=r) for m, n, k, d, r in self.gemm_relu_input]}
               if self.gemm_relu_input else {}),
            **({"sustained": self.sustained} if self.sustained else {}),
            **({"uncertainty": self.uncertainty} if self.uncertainty else {}),
            **({"l2_resident": self.l2_resident} if self.l2_resident else {}),
            **({"host_samples": {k: list(v) for k, v in self.host_samples.items()}} if self.host_samples else {}),
            **({"host_probes": [dict(p) for p in self.host_probes]} if self.host_probes else {}),
        }

    def save(self, path: Path) -> Path:
        return write_calibration_data(path, self.to_dict())


def _rate_table(table: dict) -> dict:
    """A measured rate table per load path: ascending lengths, one ascending token list and one
    positive rate list of the same size per length."""
    out = {}
    for path, entry in table.items():
        lengths = [float(v) for v in entry["seqlen"]]
        tokens = [[float(t) for t in ts] for ts in entry["tokens"]]
        rates = [[float(r) for r in rs] for rs in entry["rate"]]
        if (not lengths or len(tokens) != len(lengths) or len(rates) != len(lengths) or lengths != sorted(lengths)
                or any(len(t) != len(r) or not t or t != sorted(t) for t, r in zip(tokens, rates))
                or any(r <= 0 for rs in rates for r in rs)):
            raise ValueError(f"rate_table.{path} is not ascending lengths with matching token and rate lists")
        out[str(path)] = {"seqlen": lengths, "tokens": tokens, "rate": rates}
    return out


def _class_value(name: str, value):
    """An op class's parameters are numbers, except the measured rate table of the scan."""
    return _rate_table(value) if name == "rate_table" else float(value)


def from_dict(data: dict, source: str = "") -> Calibration:
    where = source or "calibration"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CalibrationError(f"{where}: not a perfbench calibration file (format != {FORMAT!r})")
    if data.get("version") != VERSION:
        raise CalibrationError(f"{where}: unsupported calibration version {data.get('version')!r}")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise CalibrationError(f"{where}: missing fields {', '.join(missing)}")
    try:
        gemm = tuple((float(g["m"]), int(g["n"]), int(g["k"]), float(g["time_s"])) for g in data["gemm"])
        unaligned = tuple((float(g["m"]), int(g["n"]), int(g["k"]), str(g.get("layout", "out")), int(g["align_bytes"]),
                           float(g["time_s"])) for g in data.get("gemm_unaligned", []))
        relu_input = tuple((float(g["m"]), int(g["n"]), int(g["k"]), float(g["dense_s"]), float(g["relu_s"]))
                           for g in data.get("gemm_relu_input", []))
        power = {str(k): float(v) for k, v in data.get("power", {}).items()}
        launch = {k: float(v) for k, v in data["launch"].items()}
        copy_bw, peak = float(data["copy_bandwidth_bytes_s"]), float(data["gemm_peak_flops"])
        op_classes = {str(k): {str(p): _class_value(p, x) for p, x in v.items()} for k, v in data["op_classes"].items()}
        provenance, samples = dict(data.get("provenance", {})), dict(data.get("samples", {}))
        allreduce = dict(data.get("allreduce", {}))
        writeback = dict(data.get("writeback", {}))
        for key in ("dirty_bytes", "bw_bytes_s"):
            if key in writeback:
                writeback[key] = float(writeback[key])
        step = dict(data.get("step", {}))
        sustained = dict(data.get("sustained", {}))
        if sustained:
            sustained = {"elapsed_s": [float(v) for v in sustained["elapsed_s"]],
                         "slowdown": [float(v) for v in sustained["slowdown"]],
                         **({"call_s": float(sustained["call_s"])} if "call_s" in sustained else {})}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalibrationError(f"{where}: malformed field ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if (copy_bw <= 0 or peak <= 0 or any(t <= 0 for *_, t in gemm + unaligned)
            or any(min(m, d, r) <= 0 for m, _n, _k, d, r in relu_input)):
        raise CalibrationError(f"{where}: ceilings and times must be positive")
    if any(v <= 0 for v in power.values()):
        raise CalibrationError(f"{where}: power figures must be positive")
    if power and not power.get("idle_w", 0.0) < power.get("limit_w", 0.0):
        raise CalibrationError(f"{where}: power.idle_w must be below power.limit_w")
    if writeback and not (writeback.get("dirty_bytes", 0.0) >= 0 and writeback.get("bw_bytes_s", 0.0) > 0):
        raise CalibrationError(f"{where}: writeback needs dirty_bytes >= 0 and a positive bw_bytes_s")
    if any(a not in (2, 4, 8, 16) or lay not in LD_LAYOUTS for _m, _n, _k, lay, a, _t in unaligned):
        raise CalibrationError(f"{where}: gemm_unaligned needs a layout in {LD_LAYOUTS} and align_bytes 2, 4, 8 or 16")
    for key in STEP_KEYS:
        if key in step:
            try:
                step[key] = float(step[key])
            except (TypeError, ValueError):
                raise CalibrationError(f"{where}: step.{key} is not a number ({step[key]!r})") from None
    if step and not all(step.get(key, -1.0) >= 0 for key in STEP_KEYS):
        raise CalibrationError(f"{where}: step needs {', '.join(STEP_KEYS)}, each >= 0")
    if sustained:
        elapsed, slowdown = sustained["elapsed_s"], sustained["slowdown"]
        if not (len(elapsed) == len(slowdown) >= 2 and all(a < b for a, b in zip(elapsed, elapsed[1:]))
                and all(1.0 <= a <= b for a, b in zip(slowdown, slowdown[1:]))):
            raise CalibrationError(f"{where}: sustained needs >= 2 increasing elapsed_s and a slowdown "
                                   "of the same length that starts >= 1 and never falls")
    for key in ("graph_kernel_s", "eager_kernel_s"):
        if key not in launch:
            raise CalibrationError(f"{where}: launch.{key} missing")
    uncertainty = uncertainty_section(data.get("uncertainty", {}), where)
    host_samples, host_probes = host_section(data, where)
    l2_resident = l2_resident_section(data.get("l2_resident", {}), where)
    return Calibration(gpu=str(data["gpu"]), gpu_name=str(data.get("gpu_name", "")),
                       copy_bandwidth_bytes_s=copy_bw, gemm_peak_flops=peak, gemm=gemm,
                       launch=launch, op_classes=op_classes, created=str(data.get("created", "")),
                       provenance=provenance, samples=samples, allreduce=allreduce, source=source,
                       power=power, writeback=writeback, step=step, gemm_unaligned=unaligned,
                       gemm_relu_input=relu_input, sustained=sustained, uncertainty=uncertainty,
                       host_samples=host_samples, host_probes=host_probes, l2_resident=l2_resident)


def l2_resident_section(section, where: str) -> dict:
    """The validated `l2_resident` section: samples of positive bytes, warm_s and cold_s in ascending
    bytes, and one `resident` fraction in [0, 1] per sample."""
    if not section:
        return {}
    try:
        samples = [{"bytes": float(s["bytes"]), "warm_s": float(s["warm_s"]), "cold_s": float(s["cold_s"])}
                   for s in section["samples"]]
        resident = [float(r) for r in section["resident"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}: malformed l2_resident ({type(exc).__name__})") from None
    sizes = [s["bytes"] for s in samples]
    if (not samples or len(resident) != len(samples) or sizes != sorted(sizes)
            or any(min(s.values()) <= 0 for s in samples) or any(not 0.0 <= r <= 1.0 for r in resident)):
        raise CalibrationError(f"{where}: l2_resident needs positive samples in ascending bytes and a "
                               "resident fraction in [0, 1] for each")
    return {"samples": samples, "resident": resident}


PROBE_TIMES = ("launch_s", "python_loop_s")  # a host probe's times, best measure of launch speed first


def host_section(data: dict, where: str) -> tuple[dict, tuple]:
    """The validated host windows ({key: (positive seconds, ...)}) and host probes (each a dict whose
    launch_s / python_loop_s, where present, are positive seconds)."""
    try:
        samples = {str(k): tuple(float(v) for v in values) for k, values in data.get("host_samples", {}).items()}
        probes = tuple(dict(p) for p in data.get("host_probes", []))
        for probe in probes:
            for key in PROBE_TIMES:
                if key in probe:
                    probe[key] = float(probe[key])
            if "chains" in probe:  # the chains this lease timed (all of the file's without the key)
                if isinstance(probe["chains"], str):
                    raise TypeError("chains is a list of chain names")
                probe["chains"] = tuple(str(c) for c in probe["chains"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise CalibrationError(f"{where}: malformed host_samples or host_probes ({type(exc).__name__})") from None
    if any(v <= 0 for values in samples.values() for v in values):
        raise CalibrationError(f"{where}: host_samples must be positive seconds")
    if any(probe.get(key, 1.0) <= 0 for probe in probes for key in PROBE_TIMES):
        raise CalibrationError(f"{where}: host_probes' launch_s and python_loop_s must be positive")
    return samples, probes


def uncertainty_section(section, where: str) -> dict:
    """The validated `uncertainty` section: each class key "<term class>/<phase>" with finite
    q10 <= q50 <= q90 and n >= 0; `sets` a list of names; optional `leave_one_out` {interpolated,
    extrapolated} quantiles of the same form. One-line CalibrationError otherwise."""
    if not section:
        return {}
    if not isinstance(section, dict) or not isinstance(section.get("classes"), dict):
        raise CalibrationError(f"{where}: uncertainty needs a classes object")
    classes = {}
    for key, entry in section["classes"].items():
        term, _, phase = str(key).partition("/")
        if term not in UNCERTAINTY_TERMS or phase not in UNCERTAINTY_PHASES:
            raise CalibrationError(f"{where}: uncertainty class {key!r} is not <term>/<phase> "
                                   f"(terms: {', '.join(UNCERTAINTY_TERMS)}; phases: prefill, decode)")
        classes[str(key)] = _quantile_entry(entry, f"{where}: uncertainty.{key}")
    sets = section.get("sets", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise CalibrationError(f"{where}: uncertainty.sets must be a list of result set names")
    loo = section.get("leave_one_out", {})
    if not isinstance(loo, dict) or set(loo) - {"interpolated", "extrapolated"}:
        raise CalibrationError(f"{where}: uncertainty.leave_one_out takes only interpolated and extrapolated entries")
    loo = {key: _quantile_entry(entry, f"{where}: uncertainty.leave_one_out.{key}") for key, entry in loo.items()}
    return {"classes": classes, "sets": list(sets), "created": str(section.get("created", "")),
            **({"leave_one_out": loo} if loo else {})}


def _quantile_entry(entry, what: str) -> dict:
    """{q10, q50, q90, n} as floats: finite, q10 <= q50 <= q90, n >= 0; one-line CalibrationError otherwise."""
    try:
        q10, q50, q90, n = (float(entry[k]) for k in ("q10", "q50", "q90", "n"))
    except (KeyError, TypeError, ValueError):
        raise CalibrationError(f"{what} needs numbers q10, q50, q90 and n") from None
    if not (all(math.isfinite(v) for v in (q10, q50, q90, n)) and q10 <= q50 <= q90 and n >= 0):
        raise CalibrationError(f"{what} needs finite q10 <= q50 <= q90 and n >= 0")
    return {"q10": q10, "q50": q50, "q90": q90, "n": n}


def write_calibration_data(path: Path, data: dict) -> Path:
    """Write a calibration's dict as compact JSON, gzipped where the name ends in .gz (the bundled
    files: they travel to the GPU machine beside a 61 MiB kit under a 64 MiB limit, and their raw
    samples compress fivefold; mtime 0 so the same content gives the same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, separators=(",", ":")) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    else:
        path.write_text(text)
    return path


def read_calibration_data(path: Path) -> dict:
    """A calibration file's raw dict, validated (refits and merges edit the dict, not a Calibration)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except FileNotFoundError:
        raise CalibrationError(f"calibration file not found: {path}") from None
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise CalibrationError(f"{path}: not a readable gzip file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not valid JSON ({getattr(exc, 'msg', exc.__class__.__name__)})") from None
    from_dict(data, str(path))
    return data


def load_calibration(path: Path, gpu: str | None = None) -> Calibration:
    """Read and validate a calibration file; `gpu` (if given) must match the file's GPU."""
    cal = from_dict(read_calibration_data(path), str(path))
    if gpu is not None and cal.gpu != gpu:
        raise CalibrationError(f"{path}: calibration is for {cal.gpu!r}, not {gpu!r}")
    return cal


def bundled_path(gpu: str) -> Path:
    return Path(__file__).resolve().parent / "calibrations" / f"{gpu}.json.gz"


def default_calibration(gpu: str) -> Calibration | None:
    """The calibration bundled with perfbench for this GPU, or None (datasheet roofline)."""
    path = bundled_path(gpu)
    if not path.exists():
        return None
    stat = path.stat()
    return _load_cached(str(path), gpu, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _load_cached(path: str, gpu: str, mtime_ns: int, size: int) -> Calibration:
    """Parse a bundled file once per version of it (a grid of predictions reads it many times)."""
    return load_calibration(Path(path), gpu)


def resolve(calibration, gpu: str) -> Calibration | None:
    """'default' -> bundled (or None); 'none'/None -> None; a path or Calibration -> that one."""
    if calibration is None or (isinstance(calibration, str) and calibration.lower() == "none"):
        return None
    if isinstance(calibration, Calibration):
        if calibration.gpu != gpu:
            raise CalibrationError(f"calibration is for {calibration.gpu!r}, not {gpu!r}")
        return calibration
    if isinstance(calibration, str) and calibration == "default":
        return default_calibration(gpu)
    return load_calibration(Path(calibration), gpu)
