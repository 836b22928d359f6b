"""`perfbench accuracy`: write docs/accuracy.md, the README's accuracy block and the gate's snapshot."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Optional

import typer

from perfbench.errors import PerfbenchError, file_errors
from perfbench.report import accuracy as report

ROOT = Path(__file__).resolve().parents[2]


def accuracy_command(
    out: Path = typer.Option(ROOT / "docs" / "accuracy.md", "--out", help="The per-set accuracy document."),
    readme: Optional[Path] = typer.Option(
        ROOT / "README.md", "--readme", help="A file whose accuracy block (between the markers) is refreshed."),
    snapshot: Optional[Path] = typer.Option(
        ROOT / "tests" / "data" / "accuracy_snapshot.json.gz", "--snapshot",
        help="The accuracy gate's record: median / p90 / n per never-fitted set x target x phase "
             "(gzipped when the path ends in .gz)."),
    results_root: Path = typer.Option(ROOT / "results", "--results-root",
                                      help="The results root holding index.toml."),
) -> None:
    """Compare every indexed result set with the bundled calibrations and write the accuracy files.

    Deterministic: running it twice writes the same bytes (the tests check the committed files).
    """
    acc = report.compute(results_root)
    targets = [(out, report.render(acc))]
    if readme is not None:
        if not readme.is_file():
            raise PerfbenchError(f"README not found: {readme}")
        targets.append((readme, report.replace_block(readme.read_text(), report.readme_block(acc), str(readme))))
    if snapshot is not None:
        targets.append((snapshot, report.snapshot_json(acc)))
    for path, text in targets:
        with file_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, text)
        print(f"wrote {path}", file=sys.stderr)


def _write(path: Path, text: str) -> None:
    """Text as is, or gzipped with mtime 0 when the path ends in .gz, so equal text is equal bytes."""
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    else:
        path.write_text(text)
