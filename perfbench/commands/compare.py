"""`perfbench compare`: accuracy of the analytic model against measured results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from perfbench.errors import PerfbenchError, require

FORMATS = ("table", "csv", "json", "markdown")


def compare_command(
    results_dir: Optional[Path] = typer.Argument(
        None, help="Results directory or results/<set> of results/index.toml (default: the bundled H100 sweep, results/h100)."),
    gpu: Optional[str] = typer.Option(
        None, "--gpu", help="Only points measured on this GPU (h100, h200, a100)."),
    calibration: str = typer.Option(
        "default", "--calibration",
        help="Calibration file, 'default' (the GPU's bundled one) or 'none' (datasheet roofline)."),
    fmt: str = typer.Option("table", "--format", help="table, csv, json or markdown."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML report."),
    mode: str = typer.Option("graph", "--mode", help="Decode timing mode: graph (CUDA graphs) or eager."),
    result_set: Optional[str] = typer.Option(
        None, "--result-set", help="A set of results/index.toml by name (e.g. h100-holdout19); "
        "RESULTS_DIR, if given, is then the results root holding the index."),
) -> None:
    """Join measured points with predictions for the same GPU; print error per target x phase.

    err = (predicted - measured) / measured. Only ok points count; decode uses --mode.
    """
    from perfbench.report.compare import bundled_results_dir, compare, metrics_csv, metrics_records

    if fmt not in FORMATS:
        raise PerfbenchError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    if html is not None:  # before the comparison's work, not after it
        require("plotly", "perfbench compare --html")
    from perfbench.measure.result_sets import resolve_results_path

    path = resolve_results_path(results_dir, result_set, bundled_results_dir())
    result = compare(path, gpu=gpu, calibration=calibration, mode=mode)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    header = _header(path, result)
    tp_title, tp_rows = _tensor_parallel_rows(result)
    if fmt == "json":
        print(header, file=sys.stderr)
        print(json.dumps(metrics_records(result.metrics), indent=2))
    elif fmt == "csv":
        print(header, file=sys.stderr)
        sys.stdout.write(metrics_csv(result.metrics))
    elif fmt == "markdown":
        print(header + "\n")
        print(_markdown(result.metrics))
        if tp_rows is not None:
            print(f"\n{tp_title}\n")
            print(_markdown_table(tp_rows, _TP_RIGHT))
    else:
        _print_table(header, result.metrics)
        if tp_rows is not None:
            _print_rows(tp_title, tp_rows, _TP_RIGHT)
    if html is not None:
        from perfbench.report.html_page import write_report

        write_report(result, html, source=str(path))
        print(f"wrote {html}", file=sys.stderr)


def _header(path: Path, result) -> str:
    gpus = ", ".join(sorted(set(result.metrics["gpu"])))
    decode = "CUDA graphs" if result.mode == "graph" else "eager"
    return (f"{path} · GPU {gpus} · prediction: {result.prediction} · decode timed with {decode} · "
            "err = (predicted - measured) / measured")


_RIGHT = {"n", "median |err|", "p90 |err|", "bias", "datasheet median", "datasheet p90", "in interval"}


_TP_RIGHT = {"tp", "measured ms", "predicted ms", "err", "all-reduce share", "speedup", "speedup pred",
             "GiB/GPU pred"}


def _tensor_parallel_rows(result):
    """(title line, display rows) of the comparison's tensor-parallel table, or (None, None)."""
    if result.tensor_parallel.empty:
        return None, None
    from perfbench.tp.compare import display_tp_table, tp_summary

    return ("Tensor parallel (per rank, analytic model): " + tp_summary(result.tensor_parallel),
            display_tp_table(result.tensor_parallel))


def _markdown(metrics) -> str:
    from perfbench.report.compare import display_table

    return _markdown_table(display_table(metrics), _RIGHT)


def _markdown_table(table, right: set) -> str:
    head = list(table.columns)
    cell = lambda value: str(value).replace("|", "\\|")  # noqa: E731 - a literal pipe ends a cell
    lines = ["| " + " | ".join(cell(h) for h in head) + " |",
             "|" + "|".join("---:" if h in right else "---" for h in head) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in cells) + " |" for cells in table.itertuples(index=False)]
    return "\n".join(lines)


def _print_table(header: str, metrics) -> None:
    from perfbench.report.compare import display_table

    _print_rows(header, display_table(metrics), _RIGHT)


# Which columns a narrow terminal keeps first (the target and phase always).
_PRIORITY = ["median |err|", "p90 |err|", "bias", "n", "mode", "worst point", "datasheet median", "datasheet p90",
             "host-bound", "gpu"]
_TP_PRIORITY = ["tp", "measured ms", "predicted ms", "err", "speedup", "speedup pred", "all-reduce share",
                "GiB/GPU pred"]


def _print_rows(header: str, table_rows, right: set) -> None:
    from perfbench.output import print_table

    print(header)
    keep = [c for c in ("target", "phase", "point", "tp") if c in table_rows.columns]
    print_table(table_rows, keep=keep, right=right,
                priority=[c for c in _PRIORITY + _TP_PRIORITY if c in table_rows.columns] +
                         [c for c in table_rows.columns if c not in _PRIORITY + _TP_PRIORITY])
