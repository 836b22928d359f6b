"""The `perfbench` command line (typer). Each command lives in perfbench/commands/<name>.py.

Command modules must not import torch at import time: `perfbench predict` runs on a CPU-only
machine in well under a second.
"""

from __future__ import annotations

import signal
import sys
import warnings

import typer

from perfbench.commands import COMMANDS
from perfbench.errors import USER_ERRORS, os_error_line

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Performance modelling and profiling of SSM, attention and hybrid LMs.")


def _register() -> None:
    for name, func in COMMANDS.items():
        app.command(name)(func)


_register()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT would be: every command cleans up after both the same way (a run
    marks its manifest "interrupted", the dashboard stops its server)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _caused_by_sigterm(exc: BaseException) -> bool:
    """Whether click's exit (it turns an interrupt into "Aborted!", exit 1) came from SIGTERM."""
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, Terminated):
            return True
        seen = seen.__context__
    return False


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    """A perfbench warning (a damaged results file skipped, ...) is one line on stderr."""
    if issubclass(category, UserWarning) and category.__module__.startswith("perfbench"):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def main() -> None:
    warnings.showwarning = _one_line_warnings
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        app(standalone_mode=True)
    except SystemExit as exc:
        if _caused_by_sigterm(exc):
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # a writer without its own file_errors block: still one line, exit 2
        print(f"error: {os_error_line(exc, verb='use')}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
