"""The `perfbench` command line (typer). Each command lives in perfbench/commands/<name>.py.

Command modules must not import torch at import time: `perfbench predict` runs on a CPU-only
machine in well under a second.
"""

from __future__ import annotations

import sys
import warnings

import typer

from perfbench.errors import USER_ERRORS

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Performance modelling and profiling of SSM, attention and hybrid LMs.")


def _register() -> None:
    from perfbench.commands import COMMANDS

    for name, func in COMMANDS.items():
        app.command(name)(func)


_register()


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    """A perfbench warning (a damaged results file skipped, ...) is one line on stderr."""
    if issubclass(category, UserWarning) and category.__module__.startswith("perfbench"):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def main() -> None:
    warnings.showwarning = _one_line_warnings
    try:
        app(standalone_mode=True)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
