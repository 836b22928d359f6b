"""Writing tidy frames the way the CLI promises: a rich table, CSV, JSON (list of objects), Markdown."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd

from perfbench.errors import PerfbenchError

FORMATS = ("table", "csv", "json", "markdown")


def _cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def emit(frame: pd.DataFrame, fmt: str, title: str | None = None, stream=None) -> None:
    stream = stream or sys.stdout
    if fmt not in FORMATS:
        raise PerfbenchError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if fmt == "csv":
        frame.to_csv(stream, index=False)
    elif fmt == "json":
        stream.write(json.dumps(json.loads(frame.to_json(orient="records")), indent=1) + "\n")
    elif fmt == "markdown":
        header = "| " + " | ".join(frame.columns) + " |"
        rule = "|" + "|".join("---" for _ in frame.columns) + "|"
        rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
        stream.write("\n".join([header, rule, *rows]) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_lines=False)
        for column in frame.columns:
            table.add_column(str(column), justify="right" if pd.api.types.is_numeric_dtype(frame[column]) else "left")
        for row in frame.itertuples(index=False):
            table.add_row(*(_cell(v) for v in row))
        Console(file=stream, width=max(120, 14 * len(frame.columns))).print(table)
