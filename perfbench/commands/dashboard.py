"""`perfbench dashboard`: the Streamlit dashboard over a results directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from perfbench.errors import PerfbenchError, require
from perfbench.measure.result_sets import resolve_results_path
from perfbench.report.compare import bundled_results_dir


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
    require("streamlit", "perfbench dashboard")
    require("plotly", "perfbench dashboard")
    if not app_path().is_file():
        raise PerfbenchError(f"dashboard app not found at {app_path()} (run from a source checkout)")

    path = resolve_results_path(results_dir, result_set, bundled_results_dir()).resolve()
    env = dict(os.environ, PERFBENCH_RESULTS=str(path))
    print(f"perfbench dashboard on http://{address}:{port} · results {path}", file=sys.stderr)
    code = serve(streamlit_argv(path, port, headless, address), env)
    if code not in (0, -2, -15, 130, 143):
        raise typer.Exit(code)


def serve(argv: list[str], env: dict, grace_s: float = 10.0) -> int:
    """Run the server in a process group of its own and wait; however this command ends (Ctrl-C,
    SIGTERM, an error), the whole group is stopped before it returns, so nothing keeps the port.

    Its own group, because a terminal's Ctrl-C reaches the foreground group but `kill -TERM <pid>`
    reaches only this process: the child is stopped here in both cases, SIGTERM first, then SIGKILL
    after `grace_s`."""
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        return proc.wait()
    finally:
        stop_group(proc, grace_s)


def stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the process group of `proc` (started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
