"""Errors the CLI turns into one line on stderr and exit code 2."""

from models.specs import SpecError


class PerfbenchError(Exception):
    """A user-facing failure with a one-line message (bad input, missing GPU, corrupt file...)."""


USER_ERRORS = (PerfbenchError, SpecError)
