"""Running the profilers: a child `python -m perfbench run ...` under Nsight Systems or Nsight
Compute, then their exports. Command lines are built by plain functions so tests can read them.

Nsight Systems options (`nsys profile --help`): `--trace=cuda,nvtx` (CUDA API + kernels, NVTX
ranges), `--sample=none` and `--cpuctxsw=none` (no CPU sampling or context switches: smaller
reports, less perturbation), `--cuda-graph-trace=node` (kernels inside CUDA graphs traced one by
one; the default, `graph`, records a replayed decode step as one opaque range). On the GPU machine
`nsys` is the kit's wrapper (`source .gpu/activate.sh`), which carries the libraries its importer
needs to turn a capture into a .nsys-rep.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

from perfbench.errors import PerfbenchError

NSYS_MISSING = ("nsys (Nsight Systems) is not on PATH (on the GPU machine: source .gpu/activate.sh); "
                "use --torch-profiler for a torch.profiler trace instead")
NCU_MISSING = "ncu (Nsight Compute) is not on PATH; --ncu needs it"


def require_tool(name: str, message: str) -> str:
    """The tool's path, or a one-line PerfbenchError saying what to do instead."""
    path = shutil.which(name)
    if path is None:
        raise PerfbenchError(message)
    return path


def child_command(run_args: list[str]) -> list[str]:
    """The child process: this interpreter running `perfbench run` with the given arguments, so the
    NVTX ranges are the harness's own."""
    return [sys.executable, "-m", "perfbench", "run", *run_args]


def nsys_profile_command(nsys: str, report_base: Path, child: list[str]) -> list[str]:
    """`nsys profile ... -o <report_base> <child>`: writes <report_base>.nsys-rep."""
    return [nsys, "profile", "--trace=cuda,nvtx", "--sample=none", "--cpuctxsw=none",
            "--cuda-graph-trace=node", "--force-overwrite=true", f"--output={report_base}", *child]


def nsys_export_command(nsys: str, report: Path, sqlite_path: Path) -> list[str]:
    return [nsys, "export", "--type=sqlite", "--force-overwrite=true", f"--output={sqlite_path}", str(report)]


def run_logged(command: list[str], log: Path, what: str, stdout: Path | None = None) -> None:
    """Run `command`, appending its output to `log` (stdout to `stdout` if given); a failure is one
    line naming the log and its last line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(open(log, "a"))
        out = stack.enter_context(open(stdout, "w")) if stdout else err
        err.write(f"$ {' '.join(map(str, command))}\n")
        err.flush()
        code = subprocess.call([str(c) for c in command], stdout=out, stderr=err)
    if code != 0:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.lower().startswith(("error", "==error=="))]
        last = (errors or lines or [""])[-1]
        raise PerfbenchError(f"{what} failed (exit {code}): {last[:200]} (log: {log})")


def tool_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line for line in (out.stdout or out.stderr).splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
