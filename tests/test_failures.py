"""Every command fails well: a missing optional dependency, an unwritable path, an absurd size, a
sweep with nothing measured and a SIGTERM each end in one line and a known exit status, with nothing
already written lost."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfbench.cli import app
from perfbench.errors import PerfbenchError, USER_ERRORS, file_errors, require
from perfbench.sizes import MAX_SIZE, parse_size

ROOT = Path(__file__).resolve().parents[1]
CPU_RUN = ["run", "--layer", "mlp", "--cpu-reference", "--phase", "decode", "--batch", "1", "--seqlen", "4",
           "--repeats", "1", "--max-repeats", "1", "--warmup", "0"]


def _cli(code: str, *args: str) -> subprocess.CompletedProcess:
    """`perfbench ARGS` through the real entry point, after `code` ran in the same interpreter."""
    script = f"import sys\n{code}\nfrom perfbench.cli import main\nsys.argv = ['perfbench', *{list(args)!r}]\nmain()\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def _hide(monkeypatch, module: str) -> None:
    """Make `import module` fail as it does where the package is not installed."""
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


def _one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), proc.stderr
    return lines[-1]


# ------------------------------------------------------------------ missing optional dependencies

def test_require_names_the_extra_of_a_missing_module(monkeypatch):
    _hide(monkeypatch, "plotly")
    with pytest.raises(PerfbenchError, match=r"pip install 'perfbench\[dashboard\]'"):
        require("plotly", "the report")


def test_require_returns_an_installed_module():
    assert require("json") is json


@pytest.mark.parametrize("module,args,extra", [
    ("torch", ["env"], "torch"),
    ("torch", CPU_RUN, "torch"),
    ("plotly", ["compare", "--html", "report.html"], "dashboard"),
    ("streamlit", ["dashboard"], "dashboard"),
])
def test_missing_optional_dependency_is_a_user_error_naming_the_extra(monkeypatch, tmp_path, module, args, extra):
    _hide(monkeypatch, module)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args + (["--out", str(tmp_path / "res")] if args[0] == "run" else []))
    assert isinstance(result.exception, USER_ERRORS), result.exception
    assert f"perfbench[{extra}]" in str(result.exception)
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "res").exists()


def test_env_without_torch_is_one_line_and_exit_2():
    line = _one_line_exit_2(_cli("sys.modules['torch'] = None", "env"))
    assert "perfbench[torch]" in line


def test_compare_html_without_plotly_is_one_line_and_exit_2(tmp_path):
    line = _one_line_exit_2(_cli("sys.modules['plotly'] = None", "compare", "--html", str(tmp_path / "r.html")))
    assert "perfbench[dashboard]" in line and not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------ file-system errors

def test_run_out_at_a_file_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    line = _one_line_exit_2(_cli("", *CPU_RUN, "--out", str(blocker)))
    assert str(blocker) in line and "a file is in the way" in line
    assert blocker.read_text() == "keep me"


def test_run_out_under_a_file_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _one_line_exit_2(_cli("", *CPU_RUN, "--out", str(blocker / "results")))
    assert str(blocker) in line and "not a directory" in line


_READ_ONLY = """
import errno, pathlib
def _read_only(self, *args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system", str(self))
pathlib.Path.mkdir = _read_only
"""


def test_run_out_on_a_read_only_file_system_is_one_line_and_exit_2(tmp_path):
    line = _one_line_exit_2(_cli(_READ_ONLY, *CPU_RUN, "--out", str(tmp_path / "res")))
    assert str(tmp_path / "res") in line and "read-only file system" in line


def test_trace_out_on_a_read_only_file_system_is_one_line_and_exit_2(tmp_path):
    line = _one_line_exit_2(_cli(_READ_ONLY, "trace", "--layer", "mlp", "--torch-profiler",
                                 "--out", str(tmp_path / "traces")))
    assert str(tmp_path / "traces") in line and "read-only file system" in line


def test_models_file_given_a_directory_is_one_line_and_exit_2(tmp_path):
    line = _one_line_exit_2(_cli("", "models", "--models-file", str(tmp_path)))
    assert str(tmp_path) in line and "is a directory" in line


def test_file_errors_names_the_path_and_the_reason():
    with pytest.raises(PerfbenchError, match=r"^cannot write /x/y: read-only file system$"):
        with file_errors("/x/y"):
            raise OSError(errno.EROFS, "Read-only file system")


def test_a_failed_write_keeps_the_rows_already_written(tmp_path, monkeypatch):
    from perfbench.measure import results
    from results_factory import synthetic_sweep

    rows = synthetic_sweep()[:2]
    writer = results.RunWriter(tmp_path, {"command": "test"})
    writer.append(rows[0])

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "replace", full_disk)
    with pytest.raises(PerfbenchError, match="No space left on device"):
        writer.append(rows[1])
    monkeypatch.undo()
    assert len(results.load_results(writer.parquet_path)) == 1


def test_an_oserror_reaching_the_cli_is_one_line_and_exit_2(tmp_path):
    code = ("import perfbench.commands.models as m\n"
            "def broken(*a, **k):\n    raise PermissionError(13, 'Permission denied', '/some/path')\n"
            "m.models_frame = broken")
    line = _one_line_exit_2(_cli(code, "models"))
    assert line == "error: cannot use /some/path: Permission denied"


# ------------------------------------------------------------------ sizes and failed sweeps

def test_a_size_beyond_the_limit_is_refused():
    with pytest.raises(PerfbenchError, match="too large"):
        parse_size(str(2**70))


def test_the_largest_size_is_taken():
    assert parse_size(str(MAX_SIZE)) == MAX_SIZE


def test_predict_with_batch_two_to_the_seventy_is_one_line_and_exit_2():
    line = _one_line_exit_2(_cli("", "predict", "--layer", "mlp", "--batch", "1180591620717411303424"))
    assert "too large" in line


def test_a_sweep_with_no_point_measured_exits_2_and_keeps_its_rows(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from perfbench.measure import harness
    from perfbench.measure.results import load_results

    def broken(target, options):
        raise RuntimeError("this layer cannot be built")

    monkeypatch.setattr(harness, "TorchWorkload", broken)
    monkeypatch.setattr(harness.run_sweep, "__kwdefaults__",
                        {**harness.run_sweep.__kwdefaults__, "workload_factory": broken})
    result = CliRunner().invoke(app, [*CPU_RUN, "--batch", "1,2", "--out", str(tmp_path)])
    assert isinstance(result.exception, PerfbenchError)
    assert "no point of the sweep was measured (2 error)" in str(result.exception)
    assert len(load_results(tmp_path)) == 2


# ------------------------------------------------------------------ signals

def _wait_for(predicate, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited early with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out")


def _ok_points(out: Path) -> int:
    manifests = list(out.glob("run-*.json"))
    try:
        return json.loads(manifests[0].read_text())["n_points"] if manifests else 0
    except (json.JSONDecodeError, OSError):
        return 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_run_marks_its_manifest_interrupted(tmp_path, sig):
    pytest.importorskip("torch")
    out = tmp_path / "res"
    args = ["run", "--layer", "mlp", "--cpu-reference", "--phase", "decode", "--batch", ",".join(map(str, range(1, 400))),
            "--seqlen", "4", "--repeats", "1", "--max-repeats", "1", "--warmup", "0", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "perfbench", *args], cwd=ROOT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _ok_points(out) >= 1, 240, proc)
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    manifest = json.loads(next(out.glob("run-*.json")).read_text())
    assert manifest["status"] == "interrupted"
    assert proc.returncode == 128 + sig


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """Whether a new server could listen on `port`: SO_REUSEADDR as servers (Streamlit's included) set
    it, so the closed connections' TIME_WAIT does not count, only a socket still listening."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_sigterm_of_the_dashboard_stops_its_server_and_frees_the_port(synthetic_results_dir):
    pytest.importorskip("streamlit")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "perfbench", "dashboard", str(synthetic_results_dir),
                             "--headless", "--port", str(port), "--address", "127.0.0.1"], cwd=ROOT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _healthy(port), 120, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    deadline = time.monotonic() + 5  # the server's socket closes as it exits; allow it a moment
    while not _port_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _port_free(port) and not _healthy(port)
