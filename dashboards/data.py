"""Shared data loading and sidebar settings for every dashboard page.

The results directory comes from `streamlit run dashboards/app.py -- --results DIR`, else the
PERFBENCH_RESULTS environment variable, else the bundled H100 data. Loading and joining with the
analytic model are cached (st.cache_data) on the directory's file list, sizes and mtimes, so a
new run appearing invalidates the cache and nothing else does.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from perfbench.errors import USER_ERRORS
from perfbench.measure.results import source_files
from perfbench.report.compare import bundled_results_dir, compare, load_measured

ENV_VAR = "PERFBENCH_RESULTS"
MODES = {"graph": "CUDA graphs", "eager": "eager"}
PREDICTIONS = {"default": "calibrated (when a calibration is bundled)", "none": "datasheet roofline"}


def default_results_dir() -> str:
    argv = sys.argv[1:]
    if "--results" in argv and argv.index("--results") + 1 < len(argv):
        return argv[argv.index("--results") + 1]
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]

    return str(bundled_results_dir())


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose; pages read it through `settings()`."""

    results_dir: str
    calibration: str  # "default" | "none"
    mode: str  # decode timing mode: "graph" | "eager"
    gpu: str | None  # the GPU to show (None: whatever the results hold)


def settings() -> Settings:
    state = st.session_state
    return Settings(results_dir=state.get("results_dir") or default_results_dir(),
                    calibration=state.get("calibration", "default"),
                    mode=state.get("mode", "graph"), gpu=state.get("gpu"))


def sidebar() -> None:
    """The shared controls; app.py draws them once above every page."""
    with st.sidebar:
        st.text_input("Results directory", value=default_results_dir(), key="results_dir",
                      help="A perfbench results dataset (run-*.parquet); default: bundled H100 data.")
        st.radio("Prediction", list(PREDICTIONS), format_func=PREDICTIONS.get, key="calibration",
                 help="Calibrated: the GPU's bundled calibration file. Datasheet: plain roofline.")
        st.radio("Decode timing", list(MODES), format_func=MODES.get, key="mode", horizontal=True)
        gpus = available_gpus()
        if gpus:
            st.selectbox("GPU", gpus, key="gpu")
        frame, _ = try_results()
        for skipped in (frame.attrs.get("skipped", []) if frame is not None else []):
            st.warning(f"skipped damaged results file {skipped}; the other runs loaded")


# --------------------------------------------------------------------------- loading

def signature(path: str) -> tuple:
    """Files, sizes and mtimes `path` reads (a packed set's file, then run files and manifests):
    the cache key that changes when a run lands."""
    root = Path(path)
    files = source_files(root)
    if root.is_dir():
        files += sorted(p for p in root.rglob("*.json"))
    out = []
    for file in files:
        stat = file.stat()
        out.append((str(file), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


@st.cache_data(show_spinner="Loading results…", max_entries=8)
def _load(path: str, sig: tuple) -> pd.DataFrame:
    return load_measured(path)


@st.cache_data(show_spinner="Predicting every measured point…", max_entries=16)
def _compare(path: str, sig: tuple, calibration: str, mode: str, gpu: str | None):
    return compare(_load(path, sig), gpu=gpu, calibration=calibration, mode=mode)


def try_results(path: str | None = None) -> tuple[pd.DataFrame | None, str | None]:
    """(frame, None) or (None, one-line reason) — never raises for bad data."""
    path = path or settings().results_dir
    try:
        frame = _load(path, signature(path))
    except USER_ERRORS as exc:
        return None, str(exc)
    except Exception as exc:  # a damaged dataset must not show a traceback
        return None, f"cannot read results in {path}: {type(exc).__name__}: {exc}"
    return frame, None


def results_or_stop() -> pd.DataFrame:
    """The results frame, or a one-line st.error and the page stops."""
    frame, error = try_results()
    if error:
        st.error(error)
        st.stop()
    return frame


def available_gpus() -> list[str]:
    frame, _ = try_results()
    if frame is None or "gpu" not in frame:
        return []
    return sorted(set(frame.loc[frame["status"] == "ok", "gpu"].dropna()))


def comparison_or_stop(mode: str | None = None):
    """compare() on the current settings (cached), or a one-line st.error and stop."""
    s = settings()
    frame = results_or_stop()
    del frame
    try:
        result = _compare(s.results_dir, signature(s.results_dir), s.calibration, mode or s.mode, s.gpu)
    except USER_ERRORS as exc:
        st.error(str(exc))
        st.stop()
    for note in result.notes:
        st.caption(f"note: {note}")
    return result


def current_gpu() -> str:
    """The GPU the sidebar picked, or h100 when the results hold none."""
    return settings().gpu or "h100"


def describe(result) -> str:
    decode = MODES[result.mode]
    return (f"Prediction: **{result.prediction}** · decode timed with **{decode}** · "
            f"err = (predicted − measured) / measured")


# --------------------------------------------------------------------------- tables

SIGNIFICANT = 4  # digits every dashboard table shows of a non-integer number
_CHAR_PX, _PAD_PX, _MAX_PX = 8, 34, 560  # a column as wide as its label or widest cell, up to _MAX_PX


def round_number(value):
    """The dashboard's one number format: SIGNIFICANT significant digits, the integer part kept whole
    (255.30599999999998 -> 255.3, 19153.88 -> 19154, 0.0123456 -> 0.01235); not a float: as is."""
    if not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return value
    decimals = max(0, SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))
    return round(value, decimals)


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every float column in the dashboard's number format."""
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    return frame.assign(**{str(c): frame[c].map(round_number) for c in floats}) if floats else frame


def column_widths(frame: pd.DataFrame, column_config: dict | None = None) -> dict:
    """Column configs with a pixel width that shows each column's label and widest cell unclipped."""
    config = dict(column_config or {})
    for column in frame.columns:
        entry = config.get(column)
        entry = dict(entry) if isinstance(entry, dict) else ({"label": entry} if isinstance(entry, str) else {})
        if entry.get("width") is None:
            label = entry.get("label") or str(column)
            cells = frame[column].map(lambda v: str(round_number(v))) if len(frame) else pd.Series([], dtype=str)
            chars = max([len(label)] + [len(text) for text in cells])
            entry["width"] = min(_MAX_PX, _CHAR_PX * chars + _PAD_PX)
        config[column] = entry
    return config


def table(rows, column_config: dict | None = None, **kwargs):
    """st.dataframe in the dashboard's one number format, every column wide enough for its contents;
    `rows` is a DataFrame or a pandas Styler over one."""
    if isinstance(rows, pd.DataFrame):
        rows = rounded(rows)
        frame = rows
    else:  # a Styler: its colours are computed from .data when drawn, so rounding .data keeps them
        rows.data = rounded(rows.data)
        frame = rows.data
    return st.dataframe(rows, column_config=column_widths(frame, column_config), **kwargs)


def plot(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def try_comparison(mode: str | None = None):
    """(Comparison, None) or (None, one-line reason): for pages that also work without results."""
    s = settings()
    frame, error = try_results()
    if error:
        return None, error
    try:
        return _compare(s.results_dir, signature(s.results_dir), s.calibration, mode or s.mode, s.gpu), None
    except USER_ERRORS as exc:
        return None, str(exc)
