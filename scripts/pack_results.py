"""Pack result-set directories (run-<id>.parquet + run-<id>.json) into the bundled layout.

    python scripts/pack_results.py results/h100-holdout22 [more set dirs] --purpose "..." [--fitted]

Each set's rows join `results/<gpu>.parquet` (`results/<gpu>-tp.parquet` for tensor-parallel sets)
with a `set` column, its manifests join `results/manifests.json.gz`, and `results/index.toml` gains an
entry (start and end from the manifests, the grid from the rows). The directories are then yours to
delete. Packing a set already in the index replaces it. zstd level 19: the files are written once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfbench.measure.result_sets import (INDEX_FILE, MANIFESTS_FILE, SET_COLUMN, read_manifests, read_index,  # noqa: E402
                                   write_manifests)
from perfbench.measure.results import SCHEMA  # noqa: E402


def grid_of(table: pa.Table) -> str:
    """'layers mamba, mlp; models ...; prefill, decode; B 1,4 x L 1024,4096' from the rows."""
    frame = table.select(["target_kind", "name", "phase", "batch", "seqlen", "tp"]).to_pandas()
    parts = []
    for kind in ("layer", "model"):
        names = sorted(set(frame.loc[frame.target_kind == kind, "name"]))
        if names:
            parts.append(f"{kind}s " + ", ".join(names))
    parts.append(", ".join(p for p in ("prefill", "decode") if p in set(frame.phase)))
    parts.append("B " + ",".join(map(str, sorted(set(frame.batch)))) + " x L "
                 + ",".join(map(str, sorted(set(frame.seqlen)))))
    if (frame.tp > 1).any():
        parts.append("TP " + ",".join(map(str, sorted(set(frame.tp)))))
    return "; ".join(parts)


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def write_index(root: Path, entries: list[dict]) -> None:
    lines = ["# The bundled result sets (perfbench/measure/result_sets.py). `fitted`: was anything ever fitted to",
             "# the set or tuned while looking at it; `note` says where that is unsure. Rows live in `file`",
             "# with a `set` column; manifests in manifests.json.gz. `perfbench compare results/<name>` reads one.",
             ""]
    for entry in entries:
        lines.append("[[sets]]")
        for key in ("name", "gpu", "file", "start", "end", "grid", "purpose", "fitted", "note"):
            value = entry[key]
            lines.append(f"{key} = " + ("true" if value is True else "false" if value is False
                                        else toml_string(str(value))))
        lines.append("")
    (root / INDEX_FILE).write_text("\n".join(lines))


def pack(set_dirs: list[Path], root: Path, purpose: dict[str, str], fitted: dict[str, bool],
         note: dict[str, str]) -> None:
    old = {s.name: dict(name=s.name, gpu=s.gpu, file=s.file, start=s.start, end=s.end, grid=s.grid,
                        purpose=s.purpose, fitted=s.fitted, note=s.note) for s in read_index(root)}
    manifests_path = root / MANIFESTS_FILE
    manifests = dict(read_manifests(str(manifests_path)))
    new_tables: dict[str, list[pa.Table]] = {}
    for directory in set_dirs:
        name = directory.name
        tables = [pq.read_table(f).cast(SCHEMA) for f in sorted(directory.glob("run-*.parquet"))]
        table = pa.concat_tables(tables)
        runs = [json.loads(f.read_text()) for f in sorted(directory.glob("run-*.json"))]
        gpu = sorted(set(table.column("gpu").to_pylist()))[0]
        is_tp = max(table.column("tp").to_pylist()) > 1
        file = f"{gpu}-tp.parquet" if is_tp else f"{gpu}.parquet"
        table = table.append_column(SET_COLUMN, pa.array([name] * table.num_rows, pa.string()))
        new_tables.setdefault(file, []).append(table)
        manifests[name] = runs
        old[name] = dict(name=name, gpu=gpu, file=file, start=min(m["start"] for m in runs),
                         end=max(m.get("end") or m["start"] for m in runs), grid=grid_of(table),
                         purpose=purpose.get(name, old.get(name, {}).get("purpose", "")),
                         fitted=fitted.get(name, old.get(name, {}).get("fitted", False)),
                         note=note.get(name, old.get(name, {}).get("note", "")))
    replaced = {d.name for d in set_dirs}
    for file, tables in new_tables.items():
        target = root / file
        if target.is_file():
            kept = pq.read_table(target)
            mask = pa.compute.invert(pa.compute.is_in(kept.column(SET_COLUMN), pa.array(sorted(replaced))))
            tables = [kept.filter(mask)] + tables
        combined = pa.concat_tables(tables)
        order = sorted(range(combined.num_rows), key=lambda i: (combined.column(SET_COLUMN)[i].as_py(),
                                                                 combined.column("run_id")[i].as_py(), i))
        pq.write_table(combined.take(pa.array(order)), target, compression="zstd", compression_level=19)
    write_manifests(manifests_path, manifests)
    write_index(root, sorted(old.values(), key=lambda e: (e["gpu"], e["start"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--root", type=Path, default=Path("results"))
    parser.add_argument("--purpose", default="")
    parser.add_argument("--fitted", action="store_true")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    names = [d.name for d in args.sets]
    pack(args.sets, args.root, {n: args.purpose for n in names if args.purpose},
         {n: args.fitted for n in names}, {n: args.note for n in names if args.note})


if __name__ == "__main__":
    main()
