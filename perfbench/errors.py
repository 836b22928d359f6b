"""Errors the CLI turns into one line on stderr and exit code 2, and the two shared paths into
them: a missing optional dependency (`require`) and a file-system failure (`file_errors`)."""

from __future__ import annotations

import errno
import importlib
import os
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from models.specs import SpecError


class PerfbenchError(Exception):
    """A user-facing failure with a one-line message (bad input, missing GPU, corrupt file...)."""


USER_ERRORS = (PerfbenchError, SpecError)

# The pyproject extra that brings each optional module (the import name's top-level package).
EXTRAS = {"torch": "torch", "plotly": "dashboard", "streamlit": "dashboard", "pynvml": "gpu",
          "nvtx": "gpu", "einops": "gpu", "mamba_ssm": "mamba", "causal_conv1d": "mamba",
          "flash_attn": "flash", "playwright": "test"}


def missing_dependency(name: str, needed_for: str = "") -> PerfbenchError:
    """The one line for an optional package that is not installed: what needs it, which extra."""
    top = name.split(".")[0]
    extra = EXTRAS.get(top)
    fix = f"pip install 'perfbench[{extra}]'" if extra else f"pip install {top}"
    return PerfbenchError(f"{needed_for + ' needs' if needed_for else 'needs'} {top}, which is not "
                          f"installed: {fix}")


def require(module: str, needed_for: str = "") -> ModuleType:
    """Import an optional module, or raise PerfbenchError naming the extra that installs it.

    Only a missing package becomes the one line; a package that is present but broken raises as is."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.split(".")[0] != exc.name.split(".")[0] and exc.name.split(".")[0] not in EXTRAS:
            raise
        raise missing_dependency(exc.name or module, needed_for) from None


def os_error_line(exc: OSError, path: str | Path | None = None, verb: str = "write") -> str:
    """`cannot write PATH: reason` for a file-system failure, the path the OS names first."""
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, FileExistsError) or exc.errno == errno.EEXIST:
        reason = "a file is in the way (a directory is needed there)"
    elif isinstance(exc, NotADirectoryError) or exc.errno == errno.ENOTDIR:
        reason = "a part of the path is a file, not a directory"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    return f"cannot {verb} {where}: {reason}" if where is not None else f"cannot {verb}: {reason}"


@contextmanager
def file_errors(path: str | Path | None = None):
    """Turn an OSError inside the block into a one-line PerfbenchError naming the path and reason."""
    try:
        yield
    except OSError as exc:
        raise PerfbenchError(os_error_line(exc, path)) from None


def writable_directory(path: str | Path) -> Path:
    """Make `path` a directory and check a file can be created in it, before any work is done whose
    result would then have nowhere to go; one line naming the path and the reason otherwise."""
    path = Path(path)
    with file_errors(path):
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".perfbench-write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    return path


def exception_line(exc: Exception, width: int = 160) -> str:
    """`Type: first line of the message` (cut to `width`), for a log line about a failure that is
    recorded and passed over rather than raised."""
    text = str(exc).splitlines()[0][:width] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"
