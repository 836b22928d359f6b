"""Predicted vs counted: which kernels ran inside each measured point's NVTX range, and
Nsight Compute's DRAM bytes and FLOPs per operation beside the analytic model's.

Reads what `perfbench trace` writes (traces/README.md): breakdown*.parquet and ncu_vs_model*.parquet
through perfbench.traces.load_breakdowns / load_comparisons, and raw captures (.sqlite, .torch.json,
.ncu.csv) that have no Parquet beside them — the bundled tests/data fixtures — through the same
parsers `perfbench trace` uses. Nothing here parses a trace format itself.
"""

import os
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import data
from perfbench.errors import USER_ERRORS
from perfbench.traces import load_breakdowns, load_comparisons, parse_range_name
from perfbench.traces.figures import kernel_time_figure, predicted_vs_counted_figure
from perfbench.traces.ncu import TOLERANCE, compare_with_model, counted, parse_ncu_csv
from perfbench.traces.nsys_sqlite import parse_nsys_sqlite
from perfbench.traces.schema import BREAKDOWN_COLUMNS, COMPARISON_COLUMNS, empty
from perfbench.traces.summary import predicted_vs_counted
from perfbench.traces.torch_profiler import parse_torch_trace

ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "PERFBENCH_TRACES"
BUNDLED = ROOT / "tests" / "data"
SUFFIXES = (".parquet", ".sqlite", ".json", ".csv")
OFF_COLOUR = "background-color: #fde2e1"
# capture.py names a point's ncu files after its range: mamba2/decode/B=64/L=4096 -> mamba2_decode_B_64_L_4096
_NCU_STEM = re.compile(r"^(?P<name>.+)_(?P<phase>prefill|decode)_B_(?P<batch>\d+)_L_(?P<seqlen>\d+)$")


def default_traces_dir() -> str:
    return os.environ.get(ENV_VAR) or str(ROOT / "traces")


def signature(roots: tuple[str, ...]) -> tuple:
    """Trace files under `roots` with sizes and mtimes: the cache key that changes when a trace lands."""
    out = []
    for root in roots:
        path = Path(root)
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for file in files:
            if file.is_file() and file.suffix in SUFFIXES:
                stat = file.stat()
                out.append((str(file), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def ncu_range(csv_path: Path) -> str | None:
    """The point an ncu CSV profiled, from capture.py's file naming (None if it does not follow it)."""
    match = _NCU_STEM.match(csv_path.name.removesuffix(".ncu.csv"))
    if not match:
        return None
    rng = f"{match['name']}/{match['phase']}/B={int(match['batch'])}/L={int(match['seqlen'])}"
    return rng if parse_range_name(rng) else None


def _raw_files(root: Path, pattern: str, parquet: str) -> list[Path]:
    """Raw captures under `root` that no `parquet` file beside them already stands for."""
    if root.is_file():
        return [root] if root.match(pattern) else []
    if not root.is_dir():
        return []
    return [f for f in sorted(root.rglob(pattern)) if not any(f.parent.glob(parquet))]


def _label(path: Path, root: Path) -> str:
    """A raw capture's trace id on the page: its path from the traces root's own name."""
    return f"{root.name}/{path.relative_to(root)}" if root.is_dir() else path.name


@st.cache_data(show_spinner="Reading traces…", max_entries=8)
def collect(roots: tuple[str, ...], sig: tuple, gpu: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """(breakdowns, comparisons, problems, skipped) of every trace under `roots`: a file that cannot
    be read is a one-line problem, a CSV whose point is unknown a one-line skip; never an exception."""
    del sig
    breakdowns, comparisons, notes, skipped = [], [], [], []
    for text in roots:
        root = Path(text)
        for loader, sink in ((load_breakdowns, breakdowns), (load_comparisons, comparisons)):
            try:
                sink.append(loader(root))
            except USER_ERRORS as exc:
                notes.append(" ".join(str(exc).split()))
        for path in _raw_files(root, "*.sqlite", "breakdown*.parquet"):
            _parse(lambda p=path: parse_nsys_sqlite(p, trace_id=_label(p, root)), path, breakdowns, notes)
        for path in _raw_files(root, "*.torch.json", "breakdown*.parquet"):
            _parse(lambda p=path: parse_torch_trace(p, trace_id=_label(p, root)), path, breakdowns, notes)
        for path in _raw_files(root, "*.ncu.csv", "ncu_vs_model*.parquet"):
            rng = ncu_range(path)
            if rng is None:
                skipped.append(f"{_label(path, root)}: its name does not say which point it profiled "
                               "(capture writes <name>_<phase>_B_<batch>_L_<seqlen>.ncu.csv); not compared")
                continue
            _parse(lambda p=path, r=rng: compare_with_model(counted(parse_ncu_csv(p), r, _label(p, root)), gpu=gpu),
                   path, comparisons, notes)
    return (_concat(breakdowns, BREAKDOWN_COLUMNS), _concat(comparisons, COMPARISON_COLUMNS), notes, skipped)


def _parse(read, path: Path, sink: list, notes: list) -> None:
    try:
        sink.append(read())
    except USER_ERRORS as exc:
        notes.append(" ".join(str(exc).split()))
    except Exception as exc:  # a damaged capture must not take the page down
        notes.append(" ".join(f"{path.name}: cannot parse ({type(exc).__name__}: {exc})".split()))


def _concat(frames: list[pd.DataFrame], columns: dict) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty(columns)
    return pd.concat(frames, ignore_index=True).drop_duplicates().reset_index(drop=True)


def _ratio(value: float) -> str:
    if pd.isna(value):
        return "–"
    return "only counted" if value == float("inf") else f"x{value:.2f}"


def _highlight(frame: pd.DataFrame, off: pd.Series):
    """Rows beyond ±20 % on a red background (a Styler; st.dataframe keeps the colours)."""
    return frame.style.apply(lambda row: [OFF_COLOUR if off.loc[row.name] else ""] * len(row), axis=1)


def _point_key(frame: pd.DataFrame) -> pd.Series:
    return frame["trace_id"].where(frame["trace_id"] != "", "(no id)")


# --------------------------------------------------------------------------- page

st.title("Predicted vs counted: kernels per point")
with st.sidebar:
    st.text_input("Traces directory", value=default_traces_dir(), key="traces_dir",
                  help="Where `perfbench trace` wrote its run-id folders (default: traces/).")
    st.checkbox("Include the bundled captures (tests/data)", value=True, key="traces_bundled")

traces_dir = st.session_state.get("traces_dir") or default_traces_dir()
roots = [traces_dir] + ([str(BUNDLED)] if st.session_state.get("traces_bundled", True) else [])
roots = tuple(dict.fromkeys(roots))
breakdowns, comparisons, problems, skipped = collect(roots, signature(roots), data.current_gpu())
for problem in problems:
    st.warning(problem)
where = " and ".join(f"`{r}`" for r in roots)
if breakdowns.empty and comparisons.empty:
    missing = [r for r in roots if not Path(r).exists()]
    reason = f"{', '.join(missing)} does not exist. " if missing else ""
    st.info(f"No traces under {where}. {reason}Capture some with `perfbench trace --layer mamba2 --phase "
            "decode --batch 64 --seqlen 4096` (add `--ncu` for counters); traces/README.md says how.")
    for skip in skipped:
        st.caption(skip)
    st.stop()
st.caption(f"Traces from {where}. A kernel belongs to the point whose NVTX range was open when it was "
           f"launched; per-step values divide by the timed steps the range covered. Operations whose "
           f"counted DRAM bytes or FLOPs differ from the analytic model's by more than "
           f"{TOLERANCE:.0%} are red and name their kernels.")

# ---- kernel breakdown (nsys / torch.profiler)
st.header("Kernels inside each point")
if breakdowns.empty:
    st.info("No kernel breakdown in these traces (Nsight Systems or `--torch-profiler` captures write "
            "breakdown.parquet).")
else:
    breakdowns = breakdowns.assign(trace=_point_key(breakdowns))
    left, right = st.columns([2, 3])
    traces = sorted(set(breakdowns["trace"]), reverse=True)  # trace ids are timestamps: newest first
    trace = left.selectbox("Trace", traces, key="traces_trace")
    rows = breakdowns[breakdowns["trace"] == trace]
    sources = ", ".join(sorted(set(rows["source"])))
    data.plot(kernel_time_figure(rows, f"GPU time per step by op class · {trace} ({sources})"),
              key="traces_kernel_time")
    point = right.selectbox("Point (NVTX range)", sorted(set(rows["nvtx_range"])), key="traces_point")
    kernels = rows[rows["nvtx_range"] == point].sort_values("gpu_time_ms", ascending=False)
    first = kernels.iloc[0]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("GPU time per step", f"{kernels['gpu_time_ms_per_step'].sum() * 1e3:,.1f} us")
    c2.metric("kernels per step", f"{kernels['count_per_step'].sum():g}")
    c3.metric("distinct kernels", len(kernels))
    c4.metric("timed steps", int(first["steps"]))
    table = kernels.assign(gpu_time_us_per_step=kernels["gpu_time_ms_per_step"] * 1e3, share=kernels["share"] * 100)
    table = table[["kernel", "op_class", "count", "count_per_step", "gpu_time_ms", "gpu_time_us_per_step",
                   "mean_us", "share", "kernel_full"]]
    data.table(table, hide_index=True, column_config={
        "share": st.column_config.ProgressColumn("share %", format="%.1f", min_value=0, max_value=100),
        "gpu_time_ms": st.column_config.NumberColumn("GPU time (ms, all steps)", format="%.3f"),
        "gpu_time_us_per_step": st.column_config.NumberColumn("GPU time per step (us)", format="%.2f"),
        "mean_us": st.column_config.NumberColumn("mean (us)", format="%.2f"),
        "count_per_step": st.column_config.NumberColumn("per step", format="%g"),
        "kernel_full": st.column_config.TextColumn("full name", width="large")}, key="traces_kernels")
    st.caption(f"source {first['source']} on {first['device']} · range entered {int(first['range_instances'])} "
               f"times ({first['range_ms']:,.2f} ms of CPU wall time)"
               + (f" · results run {first['results_run_id']}" if first["results_run_id"] else ""))

# ---- Nsight Compute vs the analytic model
st.header("DRAM bytes and FLOPs: counted (ncu) vs predicted (analytic)")
for skip in skipped:
    st.caption(skip)
if comparisons.empty:
    st.info("No Nsight Compute comparison in these traces yet: `perfbench trace --ncu …` writes "
            "ncu_vs_model.parquet per trace.")
    st.stop()
comparisons = comparisons.assign(trace=_point_key(comparisons))
summary, point_off = [], []
for trace, group in comparisons.groupby("trace", sort=False):  # the same point may be in several traces
    totals = group[group["op_class"] == "total"].set_index("nvtx_range")["mismatch"]
    rows = predicted_vs_counted(group).assign(trace=trace)
    summary.append(rows)
    point_off += [bool(totals.get(f"{r.name}/{r.phase}/B={r.batch}/L={r.seqlen}", False)) or bool(r.off_by_20pct)
                  for r in rows.itertuples(index=False)]
summary = pd.concat(summary, ignore_index=True)
st.markdown("**Per point, whole step** (ratio = counted ÷ predicted; red: the step or an operation in it "
            f"is off by more than {TOLERANCE:.0%})")
shown = summary.assign(bytes_ratio=summary["bytes_ratio"].map(_ratio), flops_ratio=summary["flops_ratio"].map(_ratio))
shown = shown[["trace", *[c for c in shown.columns if c != "trace"]]]
data.table(_highlight(shown, pd.Series(point_off, index=shown.index)), hide_index=True, key="traces_summary",
             column_config={c: st.column_config.NumberColumn(format="%.3e") for c in
                            ("predicted_bytes", "counted_bytes", "predicted_flops", "counted_flops")})
choices = list(dict.fromkeys(f"{r.nvtx_range} · {r.trace}" for r in comparisons.itertuples(index=False)))
choice = st.selectbox("Point", choices, key="traces_ncu_point")
ops = comparisons[[f"{r.nvtx_range} · {r.trace}" == choice for r in comparisons.itertuples(index=False)]]
left, right = st.columns(2)
with left:
    data.plot(predicted_vs_counted_figure(ops, "bytes", f"DRAM bytes per step · {ops['nvtx_range'].iloc[0]}"),
              key="traces_ncu_bytes")
with right:
    data.plot(predicted_vs_counted_figure(ops, "flops", f"FLOPs per step · {ops['nvtx_range'].iloc[0]}"),
              key="traces_ncu_flops")
per_op = ops[["ops", "op_class", "kernels", "predicted_bytes", "counted_bytes", "bytes_ratio",
              "predicted_flops", "counted_flops", "flops_ratio", "mismatch"]].reset_index(drop=True)
per_op = per_op.assign(bytes_ratio=per_op["bytes_ratio"].map(_ratio), flops_ratio=per_op["flops_ratio"].map(_ratio),
                       mismatch=per_op["mismatch"].map({True: f"off > {TOLERANCE:.0%}", False: ""}))
data.table(_highlight(per_op, ops["mismatch"].reset_index(drop=True)), hide_index=True,
             key="traces_ncu_ops", column_config={
                 c: st.column_config.NumberColumn(format="%.3e") for c in
                 ("predicted_bytes", "counted_bytes", "predicted_flops", "counted_flops")})
flagged = ops[ops["mismatch"] & (ops["op_class"] != "total")]
if flagged.empty:
    st.success(f"Every operation of this point is within {TOLERANCE:.0%} (or under 1 % of the step).")
for r in flagged.itertuples(index=False):
    st.markdown(f"- **{r.ops}** ({r.op_class}) — bytes {_ratio(r.bytes_ratio)}, FLOPs {_ratio(r.flops_ratio)}"
                f" of predicted; kernel{'s' if ',' in r.kernels else ''}: `{r.kernels or 'none counted'}`"
                + (f" · {r.note}" if r.note else ""))
