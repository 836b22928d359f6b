"""Writing tidy frames the way the CLI promises: a terminal table, CSV, JSON (list of objects), Markdown.

`print_table` is the one terminal-table renderer of every command. It never cuts a cell: names stay
whole and the table fits the terminal by leaving out its lesser columns (named in a line under it),
or by folding a column of sentences onto several lines, never by wrapping every row into a mess.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Iterable, Sequence

import pandas as pd

from perfbench.errors import PerfbenchError

FORMATS = ("table", "csv", "json", "markdown")
_FOLD_MIN = 24  # a folding column (sentences) keeps at least this many characters a line


def _cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def terminal_width(stream=None) -> int | None:
    """Columns to fit: $COLUMNS when set, the terminal's width when writing to one, else None (a
    pipe or a file: the table at its natural width, every column shown)."""
    stream = stream or sys.stdout
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return os.get_terminal_size(stream.fileno()).columns
    return None


def fit_columns(widths: dict[str, int], width: int | None, keep: Iterable[str] = (),
                priority: Sequence[str] | None = None, fold: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(shown, left out): `keep` always, then the others in `priority` order while the table fits.

    A column costs its widest cell plus three (padding and rule), the table one more; a folding
    column costs at most _FOLD_MIN, since it can break its lines."""
    keep, fold = list(keep), set(fold)
    cost = {c: min(w, _FOLD_MIN) + 3 if c in fold else w + 3 for c, w in widths.items()}
    shown = [c for c in widths if c in keep]
    total = 1 + sum(cost[c] for c in shown)
    left_out = []
    for column in priority or list(widths):
        if column in shown or column not in widths:
            continue
        if width is None or total + cost[column] <= width:
            shown.append(column)
            total += cost[column]
        else:
            left_out.append(column)
    return [c for c in widths if c in shown], left_out


def print_table(frame: pd.DataFrame, title: str | None = None, *, keep: Iterable[str] = (),
                right: Iterable[str] | None = None, priority: Sequence[str] | None = None,
                fold: Iterable[str] = (), width: int | None = None, stream=None,
                show_header: bool = True) -> list[str]:
    """Print `frame` as a terminal table fitted to `width` (default: `terminal_width`); returns the
    columns left out. `keep`: columns never left out (the names; default the first); `right`:
    right-aligned columns (default the numeric ones); `fold`: columns that may break onto lines."""
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    stream = stream or sys.stdout
    width = terminal_width(stream) if width is None else width
    columns = [str(c) for c in frame.columns]
    cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    widths = {c: max([cell_len(c) if show_header else 0] + [cell_len(row[i]) for row in cells])
              for i, c in enumerate(columns)}
    keep = list(keep) or columns[:1]
    fold = set(fold)
    shown, left_out = fit_columns(widths, width, keep, priority, fold)
    if right is None:
        right = [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    right = set(right)
    table = Table(title=title, title_justify="left", show_header=show_header)
    for column in shown:
        table.add_column(column, justify="right" if column in right else "left",
                         no_wrap=column not in fold, overflow="fold",
                         min_width=None if column in fold else widths[column])
    index = {c: i for i, c in enumerate(columns)}
    for row in cells:
        table.add_row(*(Text(row[index[c]]) for c in shown))  # plain text: `mamba2[d_state=64]` is no markup
    needed = 1 + sum(widths[c] + 3 for c in shown)
    console = Console(file=stream, width=needed if width is None else max(width, 1 + sum(
        (_FOLD_MIN if c in fold else widths[c]) + 3 for c in shown)), soft_wrap=False)
    console.print(table, highlight=False)
    if left_out:
        console.print(f"({len(left_out)} column{'s' if len(left_out) > 1 else ''} left out to fit {width} "
                      f"columns: {', '.join(left_out)})", highlight=False, soft_wrap=True)
    return left_out


def emit(frame: pd.DataFrame, fmt: str, title: str | None = None, stream=None, **table) -> None:
    """`frame` in one of FORMATS; `table` goes to `print_table` (keep, priority, ...)."""
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
        print_table(frame, title, stream=stream, **table)
