"""Errors the CLI turns into one line on stderr and exit code 2."""

from models.specs import SpecError


class PerfbenchError(Exception):
    """A user-facing failure with a one-line message (bad input, missing GPU, corrupt file...)."""


USER_ERRORS = (PerfbenchError, SpecError)


def exception_line(exc: Exception, width: int = 160) -> str:
    """`Type: first line of the message` (cut to `width`), for a log line about a failure that is
    recorded and passed over rather than raised."""
    text = str(exc).splitlines()[0][:width] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"
