"""Cut real captures down to test fixtures (tests/data/, each well under 1 MiB).

    python -m perfbench.traces.trim sqlite BIG.sqlite SMALL.sqlite [--max-kernels 48]
    python -m perfbench.traces.trim ncu BIG.ncu.csv SMALL.ncu.csv [--max-kernels 48]
    python -m perfbench.traces.trim torch BIG.json SMALL.json [--max-kernels 48]

Each keeps the tool's own format and schema (SQLite tables are re-created from the source's own
CREATE statements): the point ranges, and for each range instance its first kernels up to a
whole number of steps (at most --max-kernels), with their launch calls and the strings they use.
A range instance cut short ends just after its last kept launch, so the trimmed trace still parses
to whole steps.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd

from perfbench.traces.breakdown import assign_instances, point_ranges
from perfbench.traces.kernels import whole_steps
from perfbench.traces.nsys_sqlite import DOMAIN_CREATE, _connect, domain_ids, read_kernels, read_ranges
from perfbench.traces.torch_profiler import load_chrome_trace, trace_tables

KEEP_TABLES = ("StringIds", "NVTX_EVENTS", "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME",
               "TARGET_INFO_GPU")


def _kept_kernels(points: pd.DataFrame, kernels: pd.DataFrame, max_kernels: int) -> tuple[pd.DataFrame, dict]:
    """The first whole steps of each range instance (<= max_kernels launches), and new range ends."""
    kernels = kernels.copy()
    kernels["instance"] = assign_instances(points, kernels)
    kernels = kernels[kernels["instance"] >= 0].sort_values("launch_ns", kind="stable")
    kept, ends = [], {}
    for instance, group in kernels.groupby("instance"):
        names = group["kernel"].tolist()
        if len(names) > max_kernels:
            period, steps = whole_steps(names)
            steps = max(1, min(steps, max_kernels // max(period, 1)))
            group = group.iloc[:period * steps] if period * steps <= len(names) else group.iloc[:max_kernels]
            ends[instance] = int(group["launch_ns"].max()) + 1
        kept.append(group)
    return (pd.concat(kept) if kept else kernels.iloc[:0]), ends


def trim_sqlite(source: Path, target: Path, max_kernels: int = 48) -> Path:
    """A copy of an nsys export with only the point ranges and their first kernels."""

    target = Path(target)
    target.unlink(missing_ok=True)
    with closing(_connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        points = point_ranges(read_ranges(src))
        kept, ends = _kept_kernels(points, read_kernels(src, ids=True), max_kernels)
        domains = set(domain_ids(src))
        schema = dict(src.execute("SELECT name, sql FROM sqlite_master WHERE type='table'").fetchall())
        for table in KEEP_TABLES:
            if table in schema:
                dst.execute(schema[table])
        range_rows = {}
        for row in points.itertuples(index=False):
            range_rows.setdefault((row.start_ns, row.nvtx_range), ends.get(row.instance, row.end_ns))
        strings: set[int] = set()

        def copy(table: str, where: str, params=(), fix=None) -> None:
            cursor = src.execute(f"SELECT * FROM {table} WHERE {where}", params)
            names = [d[0] for d in cursor.description]
            for values in cursor.fetchall():
                record = dict(zip(names, values))
                if fix:
                    record = fix(record)
                    if record is None:
                        continue
                for key in ("textId", "shortName", "demangledName", "mangledName", "nameId"):
                    if record.get(key) is not None:
                        strings.add(int(record[key]))
                dst.execute(f"INSERT INTO {table} ({','.join(names)}) VALUES ({','.join('?' * len(names))})",
                            [record[n] for n in names])

        texts = dict(src.execute("SELECT id, value FROM StringIds").fetchall())

        def fix_range(record: dict):
            if record["eventType"] == DOMAIN_CREATE:
                return record
            if domains and record.get("domainId") not in domains:
                return None
            text = (record.get("text") or texts.get(record.get("textId")) or "").strip()
            key = (record["start"], text)
            if key not in range_rows:
                return None
            record["end"] = range_rows[key]
            return record

        copy("NVTX_EVENTS", "1", fix=fix_range)
        rows = [int(r) for r in kept["row"]]
        corrs = sorted({int(c) for c in kept["corr"].dropna()})
        for chunk in _chunks(rows):
            copy("CUPTI_ACTIVITY_KIND_KERNEL", f"rowid IN ({','.join(map(str, chunk))})")
        if "CUPTI_ACTIVITY_KIND_RUNTIME" in schema:
            for chunk in _chunks(corrs):
                copy("CUPTI_ACTIVITY_KIND_RUNTIME", f"correlationId IN ({','.join(map(str, chunk))})")
        if "TARGET_INFO_GPU" in schema:
            copy("TARGET_INFO_GPU", "1")
        for string_id in sorted(strings):
            if string_id in texts:
                dst.execute("INSERT INTO StringIds (id, value) VALUES (?, ?)", (string_id, texts[string_id]))
        dst.commit()
        dst.execute("VACUUM")
    return target


def _chunks(values: list[int], size: int = 500):
    for i in range(0, len(values), size):
        yield values[i:i + size]


def trim_ncu_csv(source: Path, target: Path, max_kernels: int = 48) -> Path:
    """The header (and units row) plus the first launches of an ncu --csv --page raw export."""
    lines = Path(source).read_text(errors="replace").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID"'))
    body = lines[start + 1:]
    units = body[:1] if body and body[0].startswith('""') else []
    Path(target).write_text("\n".join([lines[start], *units, *body[len(units):len(units) + max_kernels]]) + "\n")
    return Path(target)


def trim_torch_trace(source: Path, target: Path, max_kernels: int = 48) -> Path:
    """The point ranges, their kernels (or top CPU ops) and those kernels' launch calls."""
    events = load_chrome_trace(source)
    ranges, kernels, device = trace_tables(events)
    points = point_ranges(ranges)
    kernels["kernel"] = kernels["kernel_full"]
    kept, ends = _kept_kernels(points, kernels, max_kernels)
    keep_kernels = {(int(r.start_ns), r.kernel_full) for r in kept.itertuples()}
    range_ns = {int(r.start_ns): ends.get(r.instance, r.end_ns) for r in points.itertuples()}
    out, corrs = [], set()
    for e in events:
        if e.get("ph") != "X" or "ts" not in e:
            if e.get("ph") == "M":
                out.append(e)
            continue
        start = int(round(float(e["ts"]) * 1000))
        cat = e.get("cat")
        if cat == "user_annotation" and start in range_ns:
            e = dict(e, dur=(range_ns[start] - start) / 1000.0)
            out.append(e)
        elif cat in ("kernel", "cpu_op") and (start, e.get("name", "")) in keep_kernels:
            out.append(e)
            corrs.add((e.get("args") or {}).get("correlation"))
    out += [e for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver")
            and (e.get("args") or {}).get("correlation") in corrs - {None}]
    Path(target).write_text(json.dumps({"traceEvents": out, "traceName": str(Path(source).name),
                                        "device": device}))
    return Path(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perfbench.traces.trim")
    parser.add_argument("kind", choices=("sqlite", "ncu", "torch"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--max-kernels", type=int, default=48)
    options = parser.parse_args(argv)
    trim = {"sqlite": trim_sqlite, "ncu": trim_ncu_csv, "torch": trim_torch_trace}[options.kind]
    path = trim(options.source, options.target, options.max_kernels)
    print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
