"""The bundled result sets: `results/index.toml` and the consolidated Parquet files it points to.

The sets measured for this repository (44 directories of run-<id>.parquet + manifest) are packed,
one zstd Parquet file per GPU with a `set` column, so the tracked tree stays small. The
index lists each set once: name, GPU, file, start and end (from its runs' manifests), grid, purpose
and `fitted` (whether anything was ever fitted to it or tuned on it; `note` says where that is unsure).
The manifests live in `results/manifests.json.gz` (compact JSON, gzip), keyed by set.

A path `results/<name>` names set `<name>` when `results/index.toml` lists it, whether or not a
directory of that name exists: `perfbench compare results/h100` reads the packed rows, and any
run-<id>.parquet a later `perfbench run --out results/h100` writes there is read alongside them.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from perfbench.errors import PerfbenchError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

INDEX_FILE = "index.toml"
MANIFESTS_FILE = "manifests.json.gz"
SET_COLUMN = "set"


@dataclass(frozen=True)
class ResultSet:
    """One indexed set: its rows are those of `root / file` whose `set` column is `name`."""

    name: str
    gpu: str
    file: str
    start: str
    end: str
    grid: str
    purpose: str
    fitted: bool
    note: str
    root: Path

    @property
    def path(self) -> Path:
        """Where the set's own directory would be (and where new runs of it land)."""
        return self.root / self.name

    @property
    def data_file(self) -> Path:
        return self.root / self.file


def bundled_root() -> Path:
    return Path(__file__).resolve().parents[2] / "results"


def read_index(root: str | Path) -> tuple[ResultSet, ...]:
    """The sets `root/index.toml` lists (empty when there is no index)."""
    index = Path(root) / INDEX_FILE
    if not index.is_file():
        return ()
    return _read_index(str(index.absolute()), index.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _read_index(index: str, _mtime: int) -> tuple[ResultSet, ...]:
    try:
        data = tomllib.loads(Path(index).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PerfbenchError(f"unreadable results index {index}: {exc}") from None
    sets = []
    for entry in data.get("sets", []):
        try:
            sets.append(ResultSet(
                name=entry["name"], gpu=entry["gpu"], file=entry["file"], start=entry["start"],
                end=entry["end"], grid=entry.get("grid", ""), purpose=entry.get("purpose", ""),
                fitted=bool(entry["fitted"]), note=entry.get("note", ""), root=Path(index).parent))
        except KeyError as exc:
            raise PerfbenchError(f"results index {index}: a set lacks {exc}") from None
    return tuple(sets)


def find_set(path: str | Path) -> ResultSet | None:
    """The indexed set that `path` (results/<name>) names, else None."""
    path = Path(path)
    for result_set in read_index(path.parent):
        if result_set.name == path.name:
            return result_set
    return None


def named_set(name: str, root: str | Path | None = None) -> ResultSet:
    """Set `name` of the index under `root` (default: the bundled results/); one-line error if absent."""
    root = Path(root) if root is not None else bundled_root()
    sets = read_index(root)
    for result_set in sets:
        if result_set.name == name:
            return result_set
    known = ", ".join(s.name for s in sets) or f"none: no {root / INDEX_FILE}"
    raise PerfbenchError(f"unknown result set {name!r} (known: {known})")


def read_set(result_set: ResultSet):
    """The set's packed rows, without the `set` column (as its runs wrote them)."""
    import pyarrow.parquet as pq

    table = pq.read_table(result_set.data_file, filters=[(SET_COLUMN, "=", result_set.name)])
    return table.drop_columns([SET_COLUMN]).to_pandas()


def set_manifests(result_set: ResultSet) -> list[dict]:
    """The run manifests of a packed set (empty when the manifests file is missing or unreadable)."""
    return read_manifests(str(result_set.root / MANIFESTS_FILE)).get(result_set.name, [])


@lru_cache(maxsize=4)
def read_manifests(path: str) -> dict:
    """{set: [manifest, ...]} of a packed manifests file ({} when missing or unreadable)."""
    try:
        return json.loads(gzip.decompress(Path(path).read_bytes()))
    except (OSError, EOFError, ValueError):
        return {}


def write_manifests(path: Path, manifests: dict) -> None:
    """Compact JSON, gzip with no timestamp (the same manifests give the same bytes)."""
    text = json.dumps(dict(sorted(manifests.items())), separators=(",", ":")) + "\n"
    Path(path).write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))


def resolve_results_path(path: Path | None, result_set: str | None, default: Path) -> Path:
    """The results path a command reads: `--result-set NAME` (a set of the index in `path`, a
    results root, else of the bundled results/), else `path`, else `default`."""
    if result_set is None:
        return Path(path) if path is not None else default
    root = Path(path) if path is not None else None
    if root is not None and not (root / INDEX_FILE).is_file():
        raise PerfbenchError(f"--result-set {result_set}: {root} holds no {INDEX_FILE}")
    return named_set(result_set, root).path
