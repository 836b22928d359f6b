"""Parse an Nsight Systems SQLite export (`nsys export --type sqlite`) into the kernel breakdown.

Tables and columns used (Nsight Systems SQLite export schema; "Common SQLite examples" in its
exporter docs; every column is read by name, so added columns in newer versions do no harm):
  StringIds(id, value)                                   string table
  NVTX_EVENTS(start, end, eventType, text, textId, domainId, globalTid, ...)
      eventType 59 = push/pop range, 60 = start/end range, 75 = domain create (text = domain
      name, domainId = its id). Registered strings (the `nvtx` Python package registers every
      message) leave `text` NULL and put the string in StringIds via `textId`.
  CUPTI_ACTIVITY_KIND_KERNEL(start, end, correlationId, globalPid, shortName, demangledName, ...)
      shortName / demangledName are StringIds ids.
  CUPTI_ACTIVITY_KIND_RUNTIME(start, end, globalTid, correlationId, nameId, ...)
      the launch call (cudaLaunchKernel, cuLaunchKernel from Triton, cudaGraphLaunch for graph
      kernels traced with --cuda-graph-trace=node) sharing the kernel's correlationId.
Timestamps are nanoseconds on one clock for CPU and GPU events. globalTid packs the pid in bits
24..47, so `globalTid >> 24 == globalPid >> 24` ties a launch to the kernel's process.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd

from perfbench.errors import PerfbenchError
from perfbench.traces.breakdown import build_breakdown
from perfbench.traces.schema import DOMAIN

PUSH_POP, START_END, DOMAIN_CREATE = 59, 60, 75


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _connect(path: Path) -> sqlite3.Connection:
    path = Path(path)
    if not path.is_file():
        raise PerfbenchError(f"nsys SQLite export not found: {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise PerfbenchError(f"{path}: not an SQLite database ({exc})") from None
    return db


def _query(db: sqlite3.Connection, sql: str, params=()) -> pd.DataFrame:
    """Rows as a frame with integer columns kept exact (Int64), NULLs included.

    pandas' own reader turns an INTEGER column with NULLs into float64, which rounds the 50-bit
    globalTid values; thread matching needs them exact.
    """
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    columns = list(zip(*rows)) if rows else [()] * len(names)
    data = {}
    for name, values in zip(names, columns):
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int) for v in present):
            data[name] = pd.array(list(values), dtype="Int64")
        else:
            data[name] = pd.Series(list(values), dtype=object)
    return pd.DataFrame(data, columns=names)


def domain_ids(db: sqlite3.Connection, domain: str = DOMAIN) -> list[int]:
    """domainId(s) of the NVTX domain named `domain` (its eventType 75 rows)."""
    if "NVTX_EVENTS" not in _tables(db):
        return []
    join = "LEFT JOIN StringIds s ON e.textId = s.id" if "StringIds" in _tables(db) else ""
    value = "COALESCE(e.text, s.value)" if join else "e.text"
    rows = db.execute(f"SELECT DISTINCT e.domainId FROM NVTX_EVENTS e {join} "
                      f"WHERE e.eventType = {DOMAIN_CREATE} AND {value} = ?", (domain,)).fetchall()
    return [int(row[0]) for row in rows if row[0] is not None]


def read_ranges(db: sqlite3.Connection, domain: str = DOMAIN) -> pd.DataFrame:
    """NVTX push/pop and start/end ranges of `domain` (all domains if it was never created)."""
    columns = ["tid", "start_ns", "end_ns", "text"]
    if "NVTX_EVENTS" not in _tables(db):
        return pd.DataFrame(columns=columns)
    has_strings = "StringIds" in _tables(db) and "textId" in _columns(db, "NVTX_EVENTS")
    join = "LEFT JOIN StringIds s ON e.textId = s.id" if has_strings else ""
    text = "COALESCE(e.text, s.value)" if has_strings else "e.text"
    where = f"e.eventType IN ({PUSH_POP}, {START_END})"
    ids = domain_ids(db, domain)
    if ids:
        where += f" AND e.domainId IN ({','.join(str(i) for i in ids)})"
    query = (f"SELECT e.globalTid AS tid, e.start AS start_ns, e.end AS end_ns, {text} AS text "
             f"FROM NVTX_EVENTS e {join} WHERE {where}")
    return _query(db, query)


def read_kernels(db: sqlite3.Connection, ids: bool = False) -> pd.DataFrame:
    """Kernels with their names and the CPU time and thread of the call that launched them
    (`ids`: also the kernel's rowid and correlationId, as `row` and `corr`)."""
    columns = ["tid", "launch_ns", "start_ns", "end_ns", "kernel", "kernel_full"] + (["row", "corr"] if ids else [])
    tables = _tables(db)
    if "CUPTI_ACTIVITY_KIND_KERNEL" not in tables:
        return pd.DataFrame(columns=columns)
    have = _columns(db, "CUPTI_ACTIVITY_KIND_KERNEL")
    short = "shortName" if "shortName" in have else "demangledName"
    full = "demangledName" if "demangledName" in have else short
    pid = "k.globalPid" if "globalPid" in have else "NULL"
    kernels = _query(db, f"SELECT k.rowid AS row, k.start AS start_ns, k.end AS end_ns, k.correlationId AS corr, "
                         f"{pid} AS pid, ss.value AS kernel, sf.value AS kernel_full "
                         f"FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                         f"LEFT JOIN StringIds ss ON k.{short} = ss.id "
                         f"LEFT JOIN StringIds sf ON k.{full} = sf.id")
    kernels["kernel_full"] = kernels["kernel_full"].fillna(kernels["kernel"]).fillna("<unknown>")
    kernels["kernel"] = kernels["kernel"].fillna(kernels["kernel_full"])
    if "CUPTI_ACTIVITY_KIND_RUNTIME" in tables:
        launches = _query(db, "SELECT correlationId AS corr, globalTid AS tid, start AS launch_ns "
                              "FROM CUPTI_ACTIVITY_KIND_RUNTIME")
    else:
        launches = pd.DataFrame(columns=["corr", "tid", "launch_ns"])
    kernels["proc"] = _process(kernels["pid"])
    launches["proc"] = _process(launches["tid"])
    launches = launches.drop_duplicates(["proc", "corr"])
    if kernels["proc"].isna().all():
        kernels = kernels.drop(columns="proc").merge(launches.drop(columns="proc").drop_duplicates("corr"),
                                                     on="corr", how="left")
    else:
        kernels = kernels.merge(launches, on=["proc", "corr"], how="left")
    kernels["launch_ns"] = kernels["launch_ns"].fillna(kernels["start_ns"])
    kernels["tid"] = pd.array(kernels["tid"], dtype="Int64")
    return kernels[columns]


def _process(values: pd.Series) -> pd.Series:
    """The process part of a globalTid / globalPid (Int64: these ids exceed float precision)."""
    return pd.array(pd.to_numeric(values, errors="coerce"), dtype="Int64") // (1 << 24)


def parse_nsys_sqlite(path: Path, *, trace_id: str = "", results_run_id: str = "",
                      domain: str = DOMAIN) -> pd.DataFrame:
    """The kernel breakdown of every perfbench point range in an nsys SQLite export."""
    with closing(_connect(path)) as db:
        ranges = read_ranges(db, domain)
        kernels = read_kernels(db)
    return build_breakdown(ranges, kernels, source="nsys", trace_id=trace_id, device="cuda",
                           results_run_id=results_run_id)


def range_names(path: Path, domain: str = DOMAIN) -> list[str]:
    """Distinct NVTX range names of `domain` in an export (what the GPU test checks)."""
    with closing(_connect(path)) as db:
        texts = read_ranges(db, domain)["text"].dropna().astype(str).str.strip()
    return sorted(set(texts))


__all__ = ["parse_nsys_sqlite", "range_names", "read_ranges", "read_kernels", "domain_ids"]
