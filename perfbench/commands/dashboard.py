"""`perfbench dashboard`: the Streamlit dashboard over a results directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from perfbench.errors import PerfbenchError


def app_path() -> Path:
    return Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


def streamlit_argv(results_dir: Path, port: int, headless: bool, address: str = "localhost") -> list[str]:
    """The `streamlit run` command line; the results directory follows `--` for the app."""
    return [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false", "--", "--results", str(results_dir)]


def dashboard_command(
    results_dir: Optional[Path] = typer.Argument(
        None, help="Results directory (default: the bundled H100 data, results/h100)."),
    port: int = typer.Option(8501, "--port", help="Port to serve on (localhost)."),
    headless: bool = typer.Option(False, "--headless", help="Do not open a browser window."),
    address: str = typer.Option("localhost", "--address",
                                help="Interface to bind (0.0.0.0 to reach it from other machines)."),
    result_set: Optional[str] = typer.Option(
        None, "--result-set", help="A set of results/index.toml by name (e.g. h200)."),
) -> None:
    """Serve the dashboard: accuracy, curves, roofline, whole models, what-if, runs."""
    from perfbench.compare import bundled_results_dir

    try:
        import streamlit  # noqa: F401
        import plotly  # noqa: F401
    except ImportError as exc:
        raise PerfbenchError(f"the dashboard needs {exc.name}: pip install 'perfbench[dashboard]'") from None
    if not app_path().is_file():
        raise PerfbenchError(f"dashboard app not found at {app_path()} (run from a source checkout)")
    from perfbench.result_sets import resolve_results_path

    path = resolve_results_path(results_dir, result_set, bundled_results_dir()).resolve()
    env = dict(os.environ, PERFBENCH_RESULTS=str(path))
    print(f"perfbench dashboard on http://{address}:{port} · results {path}", file=sys.stderr)
    code = subprocess.call(streamlit_argv(path, port, headless, address), env=env)
    if code not in (0, -2, 130):
        raise typer.Exit(code)
